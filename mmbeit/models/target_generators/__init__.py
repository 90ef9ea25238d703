"""target_generators components."""
