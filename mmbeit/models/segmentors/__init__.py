"""segmentors components."""
