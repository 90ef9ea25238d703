"""necks components."""
