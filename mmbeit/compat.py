"""Compatibility fixes for the OpenMMLab stack on today's PyTorch.

Placeholder: filled in by the foundation work (mmcv.ops stand-in, safe
``torch.load`` allowlist).
"""


def apply_compat() -> None:
    """Apply every fix that the current environment needs (idempotent)."""
