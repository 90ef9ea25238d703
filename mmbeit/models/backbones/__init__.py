"""backbones components."""
