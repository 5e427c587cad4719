"""push consumer."""
