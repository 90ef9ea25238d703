"""Pure helpers used by the models."""
