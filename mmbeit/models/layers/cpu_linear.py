"""``F.linear`` with an optional oneDNN fast path for CPU inference.

On the CPU, fp32, without autograd (inference), oneDNN's linear with a weight
packed once runs BEiT's GEMMs faster than the default MKL path on current x86
CPUs (benchmark: docs/benchmark.md), and fuses GELU into ``fc1``. The packed
copy is cached per weight and re-made when the weight changes (its
``_version``). The path uses torch's private ``mkldnn`` ops, so it is probed
once and every other case (training, CUDA, other dtypes, torch.compile, a
torch without the ops) falls back to plain ``F.linear``. Results equal
``F.linear`` to float rounding (tested).
"""
import weakref
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

_AVAILABLE: Optional[bool] = None
# id(weight) -> ((data_ptr, _version), packed copy); an entry goes when its weight does
_PACKED: Dict[int, Tuple[tuple, torch.Tensor]] = {}


def _onednn_available() -> bool:
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            w, x = torch.ones(2, 2), torch.ones(1, 2)
            packed = torch.ops.mkldnn._reorder_linear_weight(w, 1)
            y = torch.ops.mkldnn._linear_pointwise(x, packed, None, 'none', [], '')
            _AVAILABLE = bool(torch.backends.mkldnn.is_available() and torch.equal(y, x @ w.t()))
        except (AttributeError, RuntimeError):
            _AVAILABLE = False
    return _AVAILABLE


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (not torch.is_grad_enabled() and x.device.type == 'cpu'
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.compiler.is_compiling() and _onednn_available())


def _packed(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """The packed copy of ``weight``, re-made when its storage or version changes.

    Kept outside the weight (not an attribute), so that pickling and deep copies
    of a model never see it.
    """
    key = (weight.data_ptr(), weight._version)
    entry = _PACKED.get(id(weight))
    if entry is None or entry[0] != key:
        if entry is None:
            weakref.finalize(weight, _PACKED.pop, id(weight), None)
        entry = (key, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows))
        _PACKED[id(weight)] = entry
    return entry[1]


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           gelu: bool = False) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` (then exact GELU if ``gelu``): [..., in] -> [..., out]."""
    if _use_onednn(x, weight):
        rows = x.numel() // x.shape[-1]
        y = torch.ops.mkldnn._linear_pointwise(
            x.reshape(rows, x.shape[-1]), _packed(weight, rows), bias,
            'gelu' if gelu else 'none', [], 'none' if gelu else '')
        return y.view(*x.shape[:-1], weight.shape[0])
    y = F.linear(x, weight, bias)
    return F.gelu(y) if gelu else y
