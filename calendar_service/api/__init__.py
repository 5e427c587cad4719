"""HTTP routes of the calendar service, one module per resource."""
