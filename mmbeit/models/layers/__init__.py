"""layers components."""
