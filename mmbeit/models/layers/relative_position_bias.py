"""BEiT's learned relative position bias (shared or per layer)."""
from typing import Dict, Tuple

import torch
import torch.nn as nn

from ..utils.pos_resize import (check_rel_pos_resize_mode, infer_square_window,
                                rel_pos_table_size, resize_rel_pos_table)


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


class RelativePositionBias(nn.Module):
    """A learned table of per-head biases indexed by relative patch offset.

    The table is made for ``window_size``; any other window (an input of
    another size) gets the table resized by
    :func:`~mmbeit.models.utils.pos_resize.resize_rel_pos_table` with
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

    def __init__(self, window_size: Tuple[int, int], num_heads: int,
                 resize_mode: str = 'unilm') -> None:
        super().__init__()
        self.window_size = tuple(window_size)
        self.num_heads = num_heads
        self.resize_mode = check_rel_pos_resize_mode(resize_mode)
        self.table = nn.Parameter(torch.zeros(rel_pos_table_size(self.window_size), num_heads))
        self.register_buffer('index', relative_position_index(self.window_size), persistent=False)
        self._index_cache: Dict[Tuple[int, int], torch.Tensor] = {}
        self._bias_cache: Dict[tuple, torch.Tensor] = {}

    def _index_for(self, window_size: Tuple[int, int]) -> torch.Tensor:
        if window_size == self.window_size:
            return self.index
        index = self._index_cache.get(window_size)
        if index is None or index.device != self.table.device:
            index = relative_position_index(window_size).to(self.table.device)
            self._index_cache[window_size] = index
        return index

    def forward(self, window_size: Tuple[int, int]) -> torch.Tensor:
        """Bias for a (Wh, Ww) window: [num_heads, Wh*Ww+1, Wh*Ww+1]."""
        window_size = tuple(window_size)
        if any(isinstance(s, torch.SymInt) for s in window_size):
            # traced for any input size (torch.export): no Python branch on the size
            return self._bias(resize_rel_pos_table(self.table, self.window_size, window_size,
                                                   self.resize_mode),
                              relative_position_index(window_size).to(self.table.device))
        cacheable = not torch.is_grad_enabled() and not torch.compiler.is_compiling()
        if cacheable:
            # _version changes on every in-place update (optimizer step, load).
            key = (window_size, self.table.device, self.table.dtype, self.table._version)
            bias = self._bias_cache.get(key)
            if bias is not None:
                return bias
        table = resize_rel_pos_table(self.table, self.window_size, window_size, self.resize_mode)
        bias = self._bias(table, self._index_for(window_size))
        if cacheable:
            self._bias_cache.clear()
            self._bias_cache[key] = bias
        return bias

    @staticmethod
    def _bias(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Gather a table [rows, heads] by an index [N+1, N+1] into [heads, N+1, N+1]."""
        num_tokens = index.shape[0]
        bias = table[index.view(-1)].view(num_tokens, num_tokens, -1)
        return bias.permute(2, 0, 1).contiguous()

    def extra_repr(self) -> str:
        return (f'window_size={self.window_size}, num_heads={self.num_heads}, '
                f'resize_mode={self.resize_mode!r}')
