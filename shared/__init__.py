"""Code the services share: message contracts, the consumer runtime, settings helpers."""
