"""Resizing of position tables: pure tensor functions, no SciPy.

Both functions are used in exactly two places: the state-dict pre-hooks that
fit a loaded checkpoint to the model, and the forward pass when an input of
another size arrives. So a model run at a new size and a model built for that
size from the same checkpoint compute the same thing.
"""
import math
from typing import Tuple

import torch
import torch.nn.functional as F

NUM_EXTRA_REL_TOKENS = 3  # cls->token, token->cls, cls->cls


def rel_pos_table_size(window_size: Tuple[int, int]) -> int:
    """Rows of a relative-position table for a (Wh, Ww) patch window."""
    return (2 * window_size[0] - 1) * (2 * window_size[1] - 1) + NUM_EXTRA_REL_TOKENS


def infer_square_window(num_rows: int) -> Tuple[int, int]:
    """Window size (Wh, Ww) of a square relative-position table of ``num_rows`` rows."""
    side = math.isqrt(num_rows - NUM_EXTRA_REL_TOKENS)
    if side * side != num_rows - NUM_EXTRA_REL_TOKENS or side % 2 == 0:
        raise ValueError(
            f'A relative position table of {num_rows} rows is not (2W-1)^2+3 '
            'for any square window W; cannot infer its window size.')
    return (side + 1) // 2, (side + 1) // 2


def resize_rel_pos_table(table: torch.Tensor, src_window: Tuple[int, int],
                         dst_window: Tuple[int, int]) -> torch.Tensor:
    """Resize a BEiT relative-position bias table to another window.

    The (2Wh-1)x(2Ww-1) grid of relative offsets is resized bilinearly (as
    transformers' ``interpolate_pos_encoding`` does); the three cls rows are
    kept.

    Args:
        table: [(2Wh-1)*(2Ww-1)+3, num_heads]
        src_window: (Wh, Ww) the table was made for.
        dst_window: (Wh', Ww') wanted.

    Returns:
        [(2Wh'-1)*(2Ww'-1)+3, num_heads]
    """
    src_window, dst_window = tuple(src_window), tuple(dst_window)
    if src_window == dst_window:
        return table
    if table.shape[0] != rel_pos_table_size(src_window):
        raise ValueError(f'table has {table.shape[0]} rows, expected '
                         f'{rel_pos_table_size(src_window)} for window {src_window}')
    src_h, src_w = 2 * src_window[0] - 1, 2 * src_window[1] - 1
    dst_h, dst_w = 2 * dst_window[0] - 1, 2 * dst_window[1] - 1
    num_heads = table.shape[1]
    grid = table[:-NUM_EXTRA_REL_TOKENS]  # [src_h*src_w, heads]
    grid = grid.reshape(1, src_h, src_w, num_heads).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=(dst_h, dst_w), mode='bilinear',
                         align_corners=False).to(table.dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(dst_h * dst_w, num_heads)
    return torch.cat([grid, table[-NUM_EXTRA_REL_TOKENS:]], dim=0)


def resize_abs_pos_embed(pos_embed: torch.Tensor, src_grid: Tuple[int, int],
                         dst_grid: Tuple[int, int],
                         num_prefix_tokens: int = 1) -> torch.Tensor:
    """Resize an absolute position embedding [1, prefix + Hs*Ws, C] to another grid (bicubic)."""
    src_grid, dst_grid = tuple(src_grid), tuple(dst_grid)
    if src_grid == dst_grid:
        return pos_embed
    prefix = pos_embed[:, :num_prefix_tokens]
    grid = pos_embed[:, num_prefix_tokens:]
    if grid.shape[1] != src_grid[0] * src_grid[1]:
        raise ValueError(f'pos_embed has {grid.shape[1]} patch positions, '
                         f'expected {src_grid[0]}x{src_grid[1]}')
    dim = grid.shape[-1]
    grid = grid.reshape(1, src_grid[0], src_grid[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=dst_grid, mode='bicubic',
                         align_corners=False).to(pos_embed.dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(1, dst_grid[0] * dst_grid[1], dim)
    return torch.cat([prefix, grid], dim=1)


def infer_square_grid(num_positions: int) -> Tuple[int, int]:
    """(H, W) of a square grid with ``num_positions`` cells."""
    side = math.isqrt(num_positions)
    if side * side != num_positions:
        raise ValueError(f'{num_positions} positions do not form a square grid')
    return side, side
