"""data_preprocessors components."""
