"""heads components."""
