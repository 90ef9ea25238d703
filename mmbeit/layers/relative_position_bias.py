"""BEiT's learned relative position bias (shared or per layer)."""
import weakref
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn

from .pos_resize import (RelPosWeights, apply_rel_pos_resize, check_rel_pos_resize_mode,
                         rel_pos_resize_weights, rel_pos_table_size)


def relative_position_index(window_size: Tuple[int, int]) -> torch.Tensor:
    """Index into the bias table for every (query, key) pair, cls token first.

    Returns:
        LongTensor [Wh*Ww+1, Wh*Ww+1]
    """
    wh, ww = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing='ij'))
    coords = coords.flatten(1)  # [2, N]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # [N, N, 2]
    rel[:, :, 0] += wh - 1
    rel[:, :, 1] += ww - 1
    rel[:, :, 0] *= 2 * ww - 1
    num_rows = rel_pos_table_size(window_size)
    index = torch.zeros(wh * ww + 1, wh * ww + 1, dtype=torch.long)
    index[1:, 1:] = rel.sum(-1)
    index[0, 0:] = num_rows - 3  # cls -> token
    index[0:, 0] = num_rows - 2  # token -> cls
    index[0, 0] = num_rows - 1  # cls -> cls
    return index


# window size -> the one CPU index that every bias of that window holds as its buffer
_SHARED_INDEX: 'weakref.WeakValueDictionary[Tuple[int, int], torch.Tensor]' = (
    weakref.WeakValueDictionary())


def shared_relative_position_index(window_size: Tuple[int, int]) -> torch.Tensor:
    """:func:`relative_position_index` of a window, made once while a module holds it.

    Every layer of a model has the same window, so its layers share one index instead of
    one each (24 x 20 MiB for BEiT-L at 640). Read-only by convention: nothing writes it.

    Returns:
        LongTensor [Wh*Ww+1, Wh*Ww+1] on the CPU.
    """
    window_size = tuple(int(s) for s in window_size)
    index = _SHARED_INDEX.get(window_size)
    if index is None:
        index = relative_position_index(window_size)
        _SHARED_INDEX[window_size] = index
    return index


class RelPosWindow:
    """What every relative position bias of one forward shares: the input's window.

    The relative position index and the resize weights depend on the window sizes
    only, not on a table, so a backbone makes one of these per forward and passes it
    to every layer: each is computed on first use and then reused by the other
    layers (in a traced graph, once instead of once per layer). Nothing is computed
    where every bias comes from a cache.

    Args:
        window_size: (Wh, Ww) of the input (may be symbolic).
        device: where the index and weights are built.
    """

    def __init__(self, window_size: Tuple, device: Union[str, torch.device, None] = None) -> None:
        self.window_size = tuple(window_size)
        self.device = device
        self._index: Optional[torch.Tensor] = None
        self._weights: Dict[tuple, RelPosWeights] = {}

    def index(self) -> torch.Tensor:
        """:func:`relative_position_index` of the window: [N+1, N+1]."""
        if self._index is None:
            self._index = relative_position_index(self.window_size).to(self.device)
        return self._index

    def resize_weights(self, src_window: Tuple[int, int], mode: str) -> RelPosWeights:
        """:func:`~mmbeit.layers.pos_resize.rel_pos_resize_weights` from ``src_window``."""
        key = (tuple(src_window), mode)
        if key not in self._weights:
            self._weights[key] = rel_pos_resize_weights(src_window, self.window_size, mode,
                                                        self.device)
        return self._weights[key]


class RelativePositionBias(nn.Module):
    """A learned table of per-head biases indexed by relative patch offset.

    The table is made for ``window_size``; any other window (an input of
    another size) gets the table resized by
    :func:`~mmbeit.layers.pos_resize.resize_rel_pos_table` with
    ``resize_mode``, and a checkpoint table of another size is resized on load
    by the same function (unilm's scheme). At inference the bias is cached per
    window size. Symbolic window sizes (``torch.export``) skip the caches.

    Args:
        window_size: (Wh, Ww) patch grid the table is made for.
        num_heads: attention heads.
        resize_mode: how the table is resized for another input size at run
            time: 'unilm' (the BEiT paper's geometric offsets and cubic
            spline, default) or 'bilinear' (transformers' ``interpolate_pos_encoding``).
    """

    def __init__(self,
                 window_size: Tuple[int, int],
                 num_heads: int,
                 resize_mode: str = 'unilm') -> None:
        super().__init__()
        self.window_size = tuple(window_size)
        self.num_heads = num_heads
        self.resize_mode = check_rel_pos_resize_mode(resize_mode)
        self.table = nn.Parameter(torch.zeros(rel_pos_table_size(self.window_size), num_heads))
        # one tensor shared by every bias of this window (not in the state dict)
        self.register_buffer(
            'index', shared_relative_position_index(self.window_size), persistent=False)
        self._index_cache: Dict[Tuple[int, int], torch.Tensor] = {}
        self._bias_cache: Dict[tuple, torch.Tensor] = {}

    def forward(self,
                window_size: Tuple[int, int],
                window: Optional[RelPosWindow] = None) -> torch.Tensor:
        """Bias for a (Wh, Ww) window: [num_heads, Wh*Ww+1, Wh*Ww+1].

        ``window``: the forward's shared :class:`RelPosWindow` of ``window_size``
        (index and resize weights made once for all layers); None makes a private one.
        """
        window_size = tuple(window_size)
        if window is None or window.device != self.table.device:
            window = RelPosWindow(window_size, self.table.device)
        if any(isinstance(s, torch.SymInt) for s in window_size):
            # traced for any input size (torch.export): no Python branch on the size
            return self._bias(self._resized(window), window.index())
        cacheable = not torch.is_grad_enabled() and not torch.compiler.is_compiling()
        if cacheable:
            # _version changes on every in-place update (optimizer step, load).
            key = (window_size, self.table.device, self.table.dtype, self.table._version)
            bias = self._bias_cache.get(key)
            if bias is not None:
                return bias
        bias = self._bias(self._resized(window), self._index_for(window_size, window))
        if cacheable:
            self._bias_cache.clear()
            self._bias_cache[key] = bias
        return bias

    def _resized(self, window: RelPosWindow) -> torch.Tensor:
        """The table resized to ``window`` with its shared weights."""
        weights = window.resize_weights(self.window_size, self.resize_mode)
        return apply_rel_pos_resize(self.table, self.window_size, window.window_size, weights,
                                    self.resize_mode)

    def _index_for(self, window_size: Tuple[int, int], window: RelPosWindow) -> torch.Tensor:
        if window_size == self.window_size:
            return self.index
        index = self._index_cache.get(window_size)
        if index is None or index.device != self.table.device:
            index = window.index()
            if not torch.compiler.is_exporting():  # an export must not assign module state
                self._index_cache[window_size] = index
        return index

    @staticmethod
    def _bias(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Gather a table [rows, heads] by an index [N+1, N+1] into [heads, N+1, N+1]."""
        num_tokens = index.shape[0]
        bias = table[index.view(-1)].view(num_tokens, num_tokens, -1)
        return bias.permute(2, 0, 1).contiguous()

    def extra_repr(self) -> str:
        return (f'window_size={self.window_size}, num_heads={self.num_heads}, '
                f'resize_mode={self.resize_mode!r}')
