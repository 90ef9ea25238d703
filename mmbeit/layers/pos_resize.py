"""Resizing of position tables: pure torch functions (no SciPy, no NumPy).

They are used on load (a checkpoint made for another size) and in the forward
pass (an input of another size), so a model run at a new size and a model
built for that size from the same checkpoint compute the same thing.

Relative-position tables are resized by unilm's scheme by default (the BEiT
paper's code, ``beit/run_class_finetuning.py``; mmpretrain, mmseg and timm port
it). Along each axis of the (2Wh-1) x (2Ww-1) grid of offsets:

* the source offsets are placed at ``0, ±1, ±(1+q), ±(1+q+q^2), ...``, a
  geometric progression whose ratio q (in [1.01, 1.5]) is found by bisection so
  that the outermost source offset reaches the outermost destination offset;
* the destination offsets stay the integers ``-(W'-1) .. W'-1``;
* the values are interpolated by the not-a-knot cubic spline through the
  source nodes, which is what SciPy's ``interp2d(kind='cubic')`` fitted on that
  grid (``RectBivariateSpline(kx=3, ky=3, s=0)``); targets outside the nodes
  take the edge value, as FITPACK clamps them (this happens only where q = 1.5
  cannot reach the destination: beyond 388 offsets for a 14-patch window,
  beyond 4.75 for a 4-patch test window);
* unilm resizes square tables only; of a non-square resize, an axis that keeps
  its length is kept as it is (q = 1, the nodes are the integers), the other
  follows unilm (timm would stretch the kept axis by q = 1.01).

So the offsets next to zero (the neighbouring patches, which carry most of the
learned bias) keep their learned values and only the far offsets are
stretched. The interpolation is linear in the table, so it is computed as
``A_h @ grid @ A_w^T`` with per-axis weight matrices ``A`` [dst, src] built from
tensor operations only (unilm's bisection as a search over its dyadic
brackets, the spline's tridiagonal system inverted by a Neumann series in
matrix products, both of the model's own static size). Nothing branches in
Python on the destination size, so ``torch.export`` and the ONNX exporter
trace the resize for symbolic input sizes (no ``linalg.solve``, no NumPy).

``mode='bilinear'`` keeps transformers' ``interpolate_pos_encoding`` scheme:
the grid resized bilinearly as an image (``align_corners=False``).
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

NUM_EXTRA_REL_TOKENS = 3  # cls->token, token->cls, cls->cls
REL_POS_RESIZE_MODES = ('unilm', 'bilinear')
# unilm bisects q in [1.01, 1.5] while the interval is wider than 1e-6: 19 halvings
_Q_LOW, _Q_HIGH, _BISECTION_STEPS = 1.01, 1.5, 19

Size = Union[int, torch.SymInt]


def rel_pos_table_size(window_size: Tuple[int, int]) -> int:
    """Rows of a relative-position table for a (Wh, Ww) patch window."""
    return (2 * window_size[0] - 1) * (2 * window_size[1] - 1) + NUM_EXTRA_REL_TOKENS


def infer_square_window(num_rows: int) -> Tuple[int, int]:
    """Window size (Wh, Ww) of a square relative-position table of ``num_rows`` rows."""
    side = math.isqrt(num_rows - NUM_EXTRA_REL_TOKENS)
    if side * side != num_rows - NUM_EXTRA_REL_TOKENS or side % 2 == 0:
        raise ValueError(f'A relative position table of {num_rows} rows is not (2W-1)^2+3 '
                         'for any square window W; cannot infer its window size.')
    return (side + 1) // 2, (side + 1) // 2


def check_rel_pos_resize_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`REL_POS_RESIZE_MODES`, else ValueError."""
    if mode not in REL_POS_RESIZE_MODES:
        raise ValueError(f'unknown relative position resize mode {mode!r}; '
                         f'choose one of {REL_POS_RESIZE_MODES}')
    return mode


def _is_static(sizes: Sequence[Size]) -> bool:
    return not any(isinstance(s, torch.SymInt) for s in sizes)


RelPosWeights = Optional[Tuple[torch.Tensor, torch.Tensor]]


def rel_pos_resize_weights(src_window: Tuple[int, int],
                           dst_window: Tuple[Size, Size],
                           mode: str = 'unilm',
                           device: Union[str, torch.device, None] = None) -> RelPosWeights:
    """The per-axis weights ``(A_h, A_w)`` that resize a table from one window to another.

    They depend on the two windows only, not on the table, so a model computes them
    once per forward for all its tables (:func:`apply_rel_pos_resize`). None where
    no matrices are needed: the same static window, or ``mode='bilinear'`` (one
    ``F.interpolate`` on the table).

    Args:
        src_window: (Wh, Ww) the table was made for.
        dst_window: (Wh', Ww') wanted (may be symbolic).
        mode: 'unilm' (default) or 'bilinear'.
        device: where to build the weights.

    Returns:
        fp32 ``(A_h [2Wh'-1, 2Wh-1], A_w [2Ww'-1, 2Ww-1])`` or None.
    """
    check_rel_pos_resize_mode(mode)
    src_window, dst_window = tuple(src_window), tuple(dst_window)
    if mode == 'bilinear' or (_is_static(dst_window) and src_window == dst_window):
        return None
    src_h, src_w = 2 * src_window[0] - 1, 2 * src_window[1] - 1
    dst_h, dst_w = 2 * dst_window[0] - 1, 2 * dst_window[1] - 1
    if src_h == src_w:  # a square source (every BEiT checkpoint): both axes in one pass
        a_h, a_w = _unilm_weights(src_h, (dst_h, dst_w), device)
    else:
        (a_h, ), (a_w, ) = (_unilm_weights(src_h, (dst_h, ),
                                           device), _unilm_weights(src_w, (dst_w, ), device))
    return a_h, a_w


def apply_rel_pos_resize(table: torch.Tensor,
                         src_window: Tuple[int, int],
                         dst_window: Tuple[Size, Size],
                         weights: RelPosWeights,
                         mode: str = 'unilm') -> torch.Tensor:
    """Resize ``table`` with the ``weights`` of :func:`rel_pos_resize_weights`.

    ``weights`` must be what ``rel_pos_resize_weights(src_window, dst_window, mode)``
    returned (on the table's device); the result is :func:`resize_rel_pos_table`'s.
    """
    check_rel_pos_resize_mode(mode)
    src_window, dst_window = tuple(src_window), tuple(dst_window)
    if _is_static(dst_window) and src_window == dst_window:
        return table
    if table.shape[0] != rel_pos_table_size(src_window):
        raise ValueError(f'table has {table.shape[0]} rows, expected '
                         f'{rel_pos_table_size(src_window)} for window {src_window}')
    src_h, src_w = 2 * src_window[0] - 1, 2 * src_window[1] - 1
    dst_h, dst_w = 2 * dst_window[0] - 1, 2 * dst_window[1] - 1
    num_heads = table.shape[1]
    grid = table[:-NUM_EXTRA_REL_TOKENS].float()  # [src_h*src_w, heads]
    grid = grid.reshape(src_h, src_w, num_heads).permute(2, 0, 1)  # [heads, src_h, src_w]
    if mode == 'bilinear':
        grid = F.interpolate(
            grid.unsqueeze(0), size=(dst_h, dst_w), mode='bilinear', align_corners=False).squeeze(0)
    else:
        if weights is None:
            raise ValueError(f'unilm resize from {src_window} to {dst_window} needs the '
                             'weights of rel_pos_resize_weights, got None')
        a_h, a_w = weights
        grid = a_h @ grid @ a_w.t()  # [dst_h, src_h] @ [heads, src_h, src_w] @ [src_w, dst_w]
    grid = grid.permute(1, 2, 0).reshape(dst_h * dst_w, num_heads).to(table.dtype)
    return torch.cat([grid, table[-NUM_EXTRA_REL_TOKENS:]], dim=0)


def resize_rel_pos_table(table: torch.Tensor,
                         src_window: Tuple[int, int],
                         dst_window: Tuple[Size, Size],
                         mode: str = 'unilm') -> torch.Tensor:
    """Resize a BEiT relative-position bias table to another window.

    The (2Wh-1)x(2Ww-1) grid of offsets is resized by ``mode`` ('unilm': the
    geometric offsets and cubic spline of the BEiT paper's code, see the module
    docstring; 'bilinear': transformers' ``interpolate_pos_encoding``); the
    three cls rows are kept. The math runs in fp32, the result has the table's
    dtype. ``dst_window`` may be symbolic (``torch.export``). Equals
    :func:`apply_rel_pos_resize` with :func:`rel_pos_resize_weights`.

    Args:
        table: [(2Wh-1)*(2Ww-1)+3, num_heads]
        src_window: (Wh, Ww) the table was made for.
        dst_window: (Wh', Ww') wanted.
        mode: 'unilm' (default) or 'bilinear'.

    Returns:
        [(2Wh'-1)*(2Ww'-1)+3, num_heads]
    """
    check_rel_pos_resize_mode(mode)
    src_window, dst_window = tuple(src_window), tuple(dst_window)
    if _is_static(dst_window) and src_window == dst_window:
        return table
    if table.shape[0] != rel_pos_table_size(src_window):
        raise ValueError(f'table has {table.shape[0]} rows, expected '
                         f'{rel_pos_table_size(src_window)} for window {src_window}')
    weights = rel_pos_resize_weights(src_window, dst_window, mode, table.device)
    return apply_rel_pos_resize(table, src_window, dst_window, weights, mode)


def unilm_axis_weights(src_len: int,
                       dst_len: Size,
                       device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """Interpolation weights of unilm's resize along one axis of offsets.

    Row i holds the weights of the ``src_len`` source values that give the
    destination offset ``i - dst_len // 2``, so ``out = A @ values``. An axis
    that keeps its length gets the identity (q = 1: the nodes are the
    integers; unilm resizes square tables only and never meets this case).

    Args:
        src_len: source offsets 2W-1 (odd, static).
        dst_len: destination offsets 2W'-1 (odd; may be symbolic).
        device: where to build the weights.

    Returns:
        fp32 [dst_len, src_len]
    """
    return _unilm_weights(src_len, (dst_len, ), device)[0]


def _unilm_weights(src_len: int, dst_lens: Sequence[Size],
                   device: Union[str, torch.device, None]) -> List[torch.Tensor]:
    """:func:`unilm_axis_weights` for k destination lengths, the node and spline work batched."""
    src_half = src_len // 2
    # destination offsets -T .. T of each axis, and every T as a tensor for the comparisons
    targets = [torch.arange(d, dtype=torch.float32, device=device) - (d // 2) for d in dst_lens]
    if src_half == 0:  # a 1-offset axis: its one value everywhere
        return [torch.ones(t.shape[0], 1, device=device) for t in targets]
    dst_half = torch.stack([t[-1] for t in targets])  # [k]
    powers = torch.arange(src_half, dtype=torch.float32, device=device)  # 0 .. n-1
    q = _bisect_ratio(powers, dst_half)  # [k]
    q = torch.where(dst_half == src_half, torch.ones_like(q), q)
    dis = torch.cumsum(q[:, None]**powers, 1)  # [k, n]: 1, 1+q, 1+q+q^2, ...
    nodes = torch.cat([-dis.flip(1), dis.new_zeros(len(targets), 1), dis], 1)  # [k, src_len]
    slopes = _not_a_knot_slopes(nodes) if src_len > 3 else [None] * len(targets)
    return [_spline_weights(nodes[i], targets[i], slopes[i]) for i in range(len(targets))]


def _bisect_ratio(powers: torch.Tensor, dst_half: torch.Tensor) -> torch.Tensor:
    """unilm's q: the ratio whose progression ``1 + q + ... + q^(n-1)`` reaches ``dst_half``.

    unilm bisects [1.01, 1.5] 19 times (while the bracket is wider than 1e-6)
    and keeps the last midpoint: the middle of the dyadic bracket of width
    0.49 / 2^18 that holds the root. The same bracket is found here without a
    loop, by counting the bracket points whose progression stays <= dst_half
    (it grows with q), first every 512th point, then the 511 points after the
    last one below: two tensor steps instead of 19, the same q up to fp32
    rounding (rarely one bracket, 1.9e-6, apart).

    Args:
        powers: [n] exponents 0 .. n-1 (n = src_len // 2).
        dst_half: [k] outermost destination offsets.

    Returns:
        [k] q.
    """
    halvings = _BISECTION_STEPS - 1
    width = (_Q_HIGH - _Q_LOW) / 2**halvings  # of the last bracket
    fine = 2**(halvings // 2)
    coarse = 2**halvings // fine
    steps = torch.arange(1, coarse, dtype=torch.float32, device=powers.device)
    reach = ((_Q_LOW + steps * fine * width)[:, None]**powers).sum(1)  # [coarse-1]
    base = (reach[None] <= dst_half[:, None]).sum(1) * fine  # [k] bracket points below
    index = base[:, None] + torch.arange(1, fine, dtype=torch.float32, device=powers.device)
    reach = ((_Q_LOW + index * width)[..., None]**powers).sum(-1)  # [k, fine-1]
    low = base + (reach <= dst_half[:, None]).sum(1)  # [k] the bracket [low, low+1]
    return _Q_LOW + (low + 0.5) * width


def _spline_weights(nodes: torch.Tensor,
                    targets: torch.Tensor,
                    slopes: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Weights of the not-a-knot cubic spline through ``nodes`` evaluated at ``targets``.

    ``spline(targets) = W @ values`` for the spline that interpolates
    ``values`` at ``nodes`` (SciPy's ``CubicSpline(bc_type='not-a-knot')``,
    which equals FITPACK's interpolating spline ``s=0, k=3``). Targets outside
    the nodes are clamped to the end nodes. Three nodes give the parabola
    through them (as SciPy's not-a-knot spline does).

    Args:
        nodes: [n] increasing (n >= 3 static).
        targets: [m]
        slopes: [n, n] :func:`_not_a_knot_slopes` of the nodes, if made already.

    Returns:
        [m, n]
    """
    n = nodes.shape[0]
    cols = torch.arange(n, device=nodes.device)
    t = torch.minimum(torch.maximum(targets, nodes[0]), nodes[-1])  # [m]
    if n == 3:
        x0, x1, x2 = nodes[0], nodes[1], nodes[2]
        return torch.stack([(t - x1) * (t - x2) / ((x0 - x1) * (x0 - x2)),
                            (t - x0) * (t - x2) / ((x1 - x0) * (x1 - x2)),
                            (t - x0) * (t - x1) / ((x2 - x0) * (x2 - x1))],
                           dim=1)
    if slopes is None:
        slopes = _not_a_knot_slopes(nodes[None])[0]
    # interval [nodes[j], nodes[j+1]] of each target, j in 0 .. n-2
    j = (t[:, None] >= nodes[None, 1:-1]).sum(1)  # [m]
    left = (cols[None, :] == j[:, None]).to(nodes.dtype)  # [m, n] one-hot of node j
    right = (cols[None, :] == j[:, None] + 1).to(nodes.dtype)  # of node j+1
    h = nodes[1:] - nodes[:-1]  # [n-1]
    width = h[j]  # [m]
    u = (t - nodes[j]) / width  # [m] in [0, 1]
    # cubic Hermite basis on the interval: values at both ends, slopes at both ends
    h00 = (1 + 2 * u) * (1 - u)**2
    h01 = u * u * (3 - 2 * u)
    h10 = u * (1 - u)**2 * width
    h11 = u * u * (u - 1) * width
    values = left * h00[:, None] + right * h01[:, None]
    return values + (left * h10[:, None] + right * h11[:, None]) @ slopes


def _not_a_knot_slopes(nodes: torch.Tensor, squarings: int = 6) -> torch.Tensor:
    """Matrices S with ``S @ values`` = the not-a-knot spline's slopes at the nodes.

    The slopes solve SciPy's tridiagonal system (``CubicSpline``): continuity of
    the second derivative at the inner nodes; at the ends, continuity of the
    third derivative at the second and last-but-one node (not-a-knot). The
    first row minus the second (and the last minus the one before) drops the
    end slopes, leaving a tridiagonal system M for the inner slopes whose
    off-diagonal part is at most 0.6 of its diagonal in every row (0.5 inside,
    q / (1 + q) at the ends). So ``M^-1 = (I - N)^-1 D^-1`` with the Jacobi matrix
    ``N = -D^-1 (M - D)``, and ``(I - N)^-1 = (I + N)(I + N^2)(I + N^4)...``:
    ``squarings`` = 6 reaches N^127, an error below 0.6^128 (far under fp32
    rounding; verified against SciPy for end intervals up to 30x their
    neighbour). Matrix products only, no ``linalg.solve`` (which has no ONNX
    op) and no loop over n. The end slopes follow from the first and last rows.

    Args:
        nodes: [k, n] increasing along n (n >= 4 static).

    Returns:
        [k, n, n]
    """
    k, n = nodes.shape
    h = nodes[:, 1:] - nodes[:, :-1]  # [k, n-1] interval widths
    eye = torch.eye(n, dtype=nodes.dtype, device=nodes.device)
    delta = (eye[1:] - eye[:-1]) / h[:, :, None]  # [k, n-1, n]: divided differences
    h0, h1, h_2, h_1 = h[:, :1], h[:, 1:2], h[:, -2:-1], h[:, -1:]  # [k, 1] each
    d0, d1 = h0 + h1, h_2 + h_1
    # right-hand sides of the n rows, each a row vector over the values: [k, n]
    first = ((h0 + 2 * d0) * h1 * delta[:, 0] + h0**2 * delta[:, 1]) / d0
    last = (h_1**2 * delta[:, -2] + (2 * d1 + h_1) * h_2 * delta[:, -1]) / d1
    inner = 3 * (h[:, 1:, None] * delta[:, :-1] + h[:, :-1, None] * delta[:, 1:])  # [k, n-2, n]
    # the system of the inner slopes s_1 .. s_{n-2}: row i reads
    # sub_i s_{i-1} + diag_i s_i + sup_i s_{i+1}, the end rows made by the row differences
    rhs = torch.cat([(inner[:, 0] - first)[:, None], inner[:, 1:-1],
                     (inner[:, -1] - last)[:, None]], 1)  # [k, m, n]
    m = n - 2
    diag = torch.cat([d0, 2 * (h[:, 1:-2] + h[:, 2:-1]), d1], 1)  # [k, m]
    zero = h.new_zeros(k, 1)
    sub = torch.cat([zero, h[:, 2:]], 1)  # [k, m]: rows 2 .. n-2 have h_i left of the diagonal
    sup = torch.cat([h[:, :-2], zero], 1)  # [k, m]: rows 1 .. n-3 have h_{i-1} right of it
    rows = torch.arange(m, device=nodes.device)
    below = (rows[None, :] == rows[:, None] - 1).to(nodes.dtype)  # [m, m] (r, r-1)
    above = (rows[None, :] == rows[:, None] + 1).to(nodes.dtype)  # [m, m] (r, r+1)
    jacobi = -(sub[:, :, None] * below + sup[:, :, None] * above) / diag[:, :, None]  # [k, m, m]
    inverse = torch.eye(m, dtype=nodes.dtype, device=nodes.device) + jacobi
    power = jacobi
    for _ in range(squarings):  # (I + N)(I + N^2)...: the Neumann series up to N^(2^(i+1)-1)
        power = power @ power
        inverse = inverse + inverse @ power
    inner_slopes = inverse @ (rhs / diag[:, :, None])  # [k, m, n]
    first_slope = (first - d0 * inner_slopes[:, 0]) / h1  # [k, n]
    last_slope = (last - d1 * inner_slopes[:, -1]) / h_2
    return torch.cat([first_slope[:, None], inner_slopes, last_slope[:, None]], 1)


def resize_abs_pos_embed(pos_embed: torch.Tensor,
                         src_grid: Tuple[int, int],
                         dst_grid: Tuple[Size, Size],
                         num_prefix_tokens: int = 1) -> torch.Tensor:
    """Resize an absolute position embedding [1, prefix + Hs*Ws, C] to another grid (bicubic).

    ``dst_grid`` may be symbolic (``torch.export``).
    """
    src_grid, dst_grid = tuple(src_grid), tuple(dst_grid)
    if _is_static(dst_grid) and src_grid == dst_grid:
        return pos_embed
    prefix = pos_embed[:, :num_prefix_tokens]
    grid = pos_embed[:, num_prefix_tokens:]
    if grid.shape[1] != src_grid[0] * src_grid[1]:
        raise ValueError(f'pos_embed has {grid.shape[1]} patch positions, '
                         f'expected {src_grid[0]}x{src_grid[1]}')
    dim = grid.shape[-1]
    grid = grid.reshape(1, src_grid[0], src_grid[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid.float(), size=dst_grid, mode='bicubic', align_corners=False).to(pos_embed.dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(1, dst_grid[0] * dst_grid[1], dim)
    return torch.cat([prefix, grid], dim=1)


def infer_square_grid(num_positions: int) -> Tuple[int, int]:
    """(H, W) of a square grid with ``num_positions`` cells."""
    side = math.isqrt(num_positions)
    if side * side != num_positions:
        raise ValueError(f'{num_positions} positions do not form a square grid')
    return side, side
