"""Pure helpers used by the models (position-table resizing); they register nothing."""
