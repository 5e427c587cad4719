"""calendar service."""
