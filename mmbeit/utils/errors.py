"""Error classes shared across the layers (here, at the bottom, so that raising one imports
nothing above: the MIM head raises what the engine's hook also raises)."""

__all__ = ['NonFiniteLossError']


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss, or non-finite weights."""
