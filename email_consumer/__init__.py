"""email consumer."""
