"""Relative-position tables are resized as the BEiT paper's code (unilm) resizes them.

The reference is unilm's algorithm written out here with NumPy and SciPy
(``beit/run_class_finetuning.py``: geometric source offsets found by bisection,
``interp2d(kind='cubic')``, which on that grid is
``RectBivariateSpline(kx=3, ky=3, s=0)``; interp2d itself is gone since SciPy
1.14). timm's port (``resize_rel_pos_bias_table``) interpolates linearly
between the same offsets unless TIMM_USE_SCIPY_INTERP is set, and its SciPy
path calls interp2d: it is compared at the tolerance that linear vs cubic
interpolation honestly allows, and exactly where both must agree.
"""
import numpy as np
import pytest
import torch

from mmbeit.layers.pos_resize import (NUM_EXTRA_REL_TOKENS, rel_pos_table_size,
                                      resize_rel_pos_table, unilm_axis_weights)
from mmbeit.layers.relative_position_bias import RelativePositionBias, relative_position_index
from mmbeit.models.backbones.beit import BEiT

TOL = 1e-4
SRC = (14, 14)  # a 224 model, patch 16
DSTS = [(24, 24), (32, 32), (40, 40), (24, 40)]  # 384, 512, 640, 384x640


# ------------------------------------------------------------------ references
def unilm_offsets(src_len: int, dst_len: int) -> np.ndarray:
    """unilm's source offsets, line by line (float64): bisection of q, then the progression."""

    def geometric_progression(a, r, n):
        return a * (1.0 - r**n) / (1.0 - r)

    left, right = 1.01, 1.5
    while right - left > 1e-6:
        q = (left + right) / 2.0
        gp = geometric_progression(1, q, src_len // 2)
        if gp > dst_len // 2:
            right = q
        else:
            left = q
    dis, cur = [], 1
    for i in range(src_len // 2):
        dis.append(cur)
        cur += q**(i + 1)
    return np.array([-d for d in reversed(dis)] + [0] + dis, dtype=np.float64)


def unilm_reference(table: torch.Tensor, src: tuple, dst: tuple) -> torch.Tensor:
    """unilm's resize per head with SciPy (float64), per axis for non-square windows."""
    from scipy.interpolate import RectBivariateSpline
    src_h, src_w, dst_h, dst_w = 2 * src[0] - 1, 2 * src[1] - 1, 2 * dst[0] - 1, 2 * dst[1] - 1
    y, x = unilm_offsets(src_h, dst_h), unilm_offsets(src_w, dst_w)
    dy = np.arange(-(dst_h // 2), dst_h // 2 + 0.1, 1.0)
    dx = np.arange(-(dst_w // 2), dst_w // 2 + 0.1, 1.0)
    grid = table[:-NUM_EXTRA_REL_TOKENS].double().numpy()
    heads = [
        RectBivariateSpline(y, x, grid[:, i].reshape(src_h, src_w), kx=3, ky=3, s=0)(dy, dx)
        for i in range(grid.shape[1])
    ]
    out = torch.from_numpy(np.stack(heads, -1).reshape(dst_h * dst_w, -1)).float()
    return torch.cat([out, table[-NUM_EXTRA_REL_TOKENS:]])


def smooth_table(window: tuple, heads: int, seed: int = 0, scale: float = 3.8) -> torch.Tensor:
    """A learned-looking table: a peak at offset 0 and random smooth waves, max abs = scale."""
    g = torch.Generator().manual_seed(seed)
    h, w = 2 * window[0] - 1, 2 * window[1] - 1
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing='ij')
    cols = []
    for _ in range(heads):
        a = torch.randn(5, generator=g)
        cols.append(3 * torch.exp(-(a[0].abs() + 1) * 4 * (yy**2 + xx**2)) +
                    a[1] * torch.sin(2 * yy + a[2]) * torch.cos(1.5 * xx + a[3]) +
                    0.3 * a[4] * xx * yy)
    grid = torch.stack(cols, -1).reshape(h * w, heads)
    grid = grid / grid.abs().max() * scale
    return torch.cat([grid, torch.randn(NUM_EXTRA_REL_TOKENS, heads, generator=g)])


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def _grid(table: torch.Tensor, window: tuple) -> torch.Tensor:
    return table[:-NUM_EXTRA_REL_TOKENS].reshape(2 * window[0] - 1, 2 * window[1] - 1, -1)


# ---------------------------------------------------------------- the function
@pytest.mark.parametrize('dst', DSTS + [(7, 7), (14, 24)])
def test_equals_unilm_reference(dst):
    """14 -> 24, 32, 40, (24, 40) as the issue asks; a smaller window (unilm's bisection then
    stays at q = 1.01); an axis that keeps its length is kept as it is (unilm resizes square
    tables only), the other axis follows unilm."""
    table = smooth_table(SRC, heads=4)
    got = resize_rel_pos_table(table, SRC, dst)
    assert got.shape == (rel_pos_table_size(dst), 4) and got.dtype == table.dtype
    if dst[0] == SRC[0]:
        # every row resized along w only: unilm's offsets and SciPy's not-a-knot cubic spline
        from scipy.interpolate import CubicSpline
        x = unilm_offsets(2 * SRC[1] - 1, 2 * dst[1] - 1)
        dx = np.clip(np.arange(-(dst[1] - 1), dst[1], 1.0), x[0], x[-1])
        rows = _grid(table, SRC).double().numpy()  # [h, w, heads]
        want = CubicSpline(x, rows, axis=1, bc_type='not-a-knot')(dx)
        assert max_diff(_grid(got, dst), torch.from_numpy(want)) <= TOL
        assert torch.equal(
            unilm_axis_weights(2 * SRC[0] - 1, 2 * dst[0] - 1), torch.eye(2 * SRC[0] - 1))
    else:
        assert max_diff(got, unilm_reference(table, SRC, dst)) <= TOL


@pytest.mark.parametrize('mode', ['unilm', 'bilinear'])
def test_weights_once_per_forward_give_the_same_model(mode, monkeypatch):
    """resize_rel_pos_table == rel_pos_resize_weights + apply_rel_pos_resize, and a backbone
    forward at another size makes the resize weights and the index once for all its layers."""
    from mmbeit.layers import relative_position_bias as rpb
    from mmbeit.layers.pos_resize import apply_rel_pos_resize, rel_pos_resize_weights
    table = smooth_table((4, 4), heads=2)
    for dst in [(6, 6), (5, 3), (4, 4)]:
        weights = rel_pos_resize_weights((4, 4), dst, mode)
        assert torch.equal(
            apply_rel_pos_resize(table, (4, 4), dst, weights, mode),
            resize_rel_pos_table(table, (4, 4), dst, mode))
    model = BEiT(
        arch='tiny', img_size=32, patch_size=8, rel_pos_resize=mode,
        use_shared_rel_pos_bias=True)  # 4 per-layer tables and a shared one
    calls = {'weights': 0, 'index': 0}

    def counted(name, fn):

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(rpb, 'rel_pos_resize_weights', counted('weights',
                                                               rpb.rel_pos_resize_weights))
    monkeypatch.setattr(rpb, 'relative_position_index', counted('index',
                                                                rpb.relative_position_index))
    model(torch.randn(1, 3, 48, 24))  # grad enabled: no bias cache
    assert calls == {'weights': 1, 'index': 1}


def test_half_precision_table_is_resized_in_fp32_and_cast_back():
    table = smooth_table(SRC, heads=2)
    got = resize_rel_pos_table(table.bfloat16(), SRC, (24, 24))
    assert got.dtype == torch.bfloat16
    assert max_diff(got, unilm_reference(table.bfloat16().float(), SRC, (24, 24))) <= 0.02


def test_neighbour_bias_keeps_its_learned_value():
    """The issue's check, 224 -> 640: unilm keeps the bias of the patch next door; the bilinear
    resize over a uniform grid (transformers' scheme) moves it and the whole table."""
    table = smooth_table(SRC, heads=4)
    src_grid = _grid(table, SRC)
    unilm = _grid(resize_rel_pos_table(table, SRC, (40, 40)), (40, 40))
    bilinear = _grid(resize_rel_pos_table(table, SRC, (40, 40), mode='bilinear'), (40, 40))
    c, d = SRC[0] - 1, 39  # offset 0 in the source and in the destination grid
    for dy, dx in [(0, 1), (1, 0), (-1, 0), (0, -1), (1, 1), (0, 0)]:
        assert torch.equal(unilm[d + dy, d + dx], src_grid[c + dy, c + dx])
    assert (bilinear[d, d + 1] - src_grid[c, c + 1]).abs().max() > 0.1
    assert (bilinear - unilm).abs().mean() > 0.1  # the issue measured 0.48


def test_timm_port_uses_the_same_offsets():
    """timm's default path interpolates linearly between unilm's offsets. On a table that is
    bilinear in the source offsets both interpolations are exact, so timm and mmbeit agree
    to fp32 rounding: the geometric offsets are the same."""
    from timm.layers.pos_embed_rel import resize_rel_pos_bias_table
    for dst in DSTS:
        y = torch.from_numpy(unilm_offsets(2 * SRC[0] - 1, 2 * dst[0] - 1)).float()
        x = torch.from_numpy(unilm_offsets(2 * SRC[1] - 1, 2 * dst[1] - 1)).float()
        heads = [
            a + b * y[:, None] + c * x[None, :] + d * y[:, None] * x[None, :]
            for a, b, c, d in [(0.5, 0.1, -0.2, 0.01), (-1.0, 0.03, 0.07, -0.004)]
        ]
        table = torch.cat([torch.stack(heads, -1).reshape(-1, 2), torch.randn(3, 2)])
        ours = resize_rel_pos_table(table, SRC, dst)
        theirs = resize_rel_pos_bias_table(
            table, dst, (rel_pos_table_size(dst), 2), old_window_size=SRC)
        assert max_diff(ours, theirs) <= TOL
        ty = torch.arange(-(dst[0] - 1), dst[0], dtype=torch.float32)
        tx = torch.arange(-(dst[1] - 1), dst[1], dtype=torch.float32)
        exact = [
            a + b * ty[:, None] + c * tx[None, :] + d * ty[:, None] * tx[None, :]
            for a, b, c, d in [(0.5, 0.1, -0.2, 0.01), (-1.0, 0.03, 0.07, -0.004)]
        ]
        assert max_diff(_grid(ours, dst), torch.stack(exact, -1)) <= TOL


@pytest.mark.parametrize('dst', DSTS)
def test_timm_port_on_a_smooth_table(dst):
    """On a smooth table (scale 3.8) timm's linear interpolation between the same offsets stays
    within 0.05 of unilm's cubic one (measured: max 0.014-0.019, mean 0.003-0.004; the bilinear
    uniform-grid resize is 0.48 away on average). Closer agreement is not expected: it is the
    difference between linear and cubic interpolation, not an error."""
    from timm.layers.pos_embed_rel import resize_rel_pos_bias_table
    table = smooth_table(SRC, heads=4)
    ours = resize_rel_pos_table(table, SRC, dst)
    theirs = resize_rel_pos_bias_table(
        table, dst, (rel_pos_table_size(dst), 4), old_window_size=SRC)
    assert max_diff(ours, theirs) <= 0.05
    assert max_diff(ours, unilm_reference(table, SRC, dst)) <= TOL


def test_timm_scipy_path_needs_the_removed_interp2d(monkeypatch):
    """TIMM_USE_SCIPY_INTERP runs unilm's original interp2d; on SciPy >= 1.14 it raises, so the
    RectBivariateSpline reference above stands in for it. Where it still runs it must agree."""
    import timm.layers.pos_embed_rel as timm_rel
    monkeypatch.setattr(timm_rel, '_USE_SCIPY', True)
    table = smooth_table(SRC, heads=2)
    try:
        theirs = timm_rel.resize_rel_pos_bias_table(table, (24, 24), (rel_pos_table_size(
            (24, 24)), 2))
    except NotImplementedError as e:
        assert 'interp2d' in str(e)
    else:
        assert max_diff(resize_rel_pos_table(table, SRC, (24, 24)), theirs) <= TOL


def test_bad_mode_lists_the_allowed_ones():
    table = smooth_table((4, 4), heads=1)
    with pytest.raises(ValueError, match=r"'bicubic'.*\('unilm', 'bilinear'\)"):
        resize_rel_pos_table(table, (4, 4), (6, 6), mode='bicubic')
    with pytest.raises(ValueError, match=r"'nearest'.*\('unilm', 'bilinear'\)"):
        BEiT(arch='tiny', img_size=64, rel_pos_resize='nearest')


# ------------------------------------------------------------------- run time
def _tiny_224(**kwargs) -> BEiT:
    torch.manual_seed(0)
    model = BEiT(arch='tiny', img_size=224, **kwargs).eval()
    heads = model.num_heads
    with torch.no_grad():
        for i, m in enumerate(model.modules()):
            if isinstance(m, RelativePositionBias):
                m.table.copy_(smooth_table(m.window_size, heads, seed=i))
    return model


@pytest.mark.parametrize('mode', ['unilm', 'bilinear'])
def test_option_reaches_every_table(mode):
    model = _tiny_224(use_shared_rel_pos_bias=True, use_rel_pos_bias=True, rel_pos_resize=mode)
    tables = [m for m in model.modules() if isinstance(m, RelativePositionBias)]
    assert len(tables) == model.num_layers + 1
    assert all(m.resize_mode == mode for m in tables)


def test_runtime_bias_equals_reference_resized_table():
    """A window-14 model fed 384 pixels: every layer's bias is unilm's resized table, gathered."""
    model = _tiny_224(use_shared_rel_pos_bias=True, use_rel_pos_bias=True)
    biases = {}
    for name, m in model.named_modules():
        if isinstance(m, RelativePositionBias):
            m.register_forward_hook(lambda mod, args, out, name=name: biases.__setitem__(name, out))
    with torch.no_grad():
        model(torch.randn(1, 3, 384, 384))
    assert len(biases) == model.num_layers + 1
    index = relative_position_index((24, 24))
    for name, m in model.named_modules():
        if isinstance(m, RelativePositionBias):
            table = unilm_reference(m.table.detach(), SRC, (24, 24))
            want = table[index.view(-1)].view(*index.shape, -1).permute(2, 0, 1)
            assert max_diff(biases[name], want) <= TOL, name


def test_224_model_at_640_equals_640_model_from_its_resized_weights():
    src = _tiny_224(out_type='featmap')
    sd = {
        k: (resize_rel_pos_table(v, SRC, (40, 40)) if k.endswith('rel_pos_bias.table') else v)
        for k, v in src.state_dict().items()
    }
    dst = BEiT(arch='tiny', img_size=640, out_type='featmap').eval()
    dst.load_state_dict(sd)
    x = torch.randn(1, 3, 640, 640, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = src(x)[0], dst(x)[0]
    assert a.shape == (1, 64, 40, 40)
    assert max_diff(a, b) <= 1e-5 and a.abs().max() > 1e-2


def test_export_with_symbolic_input_size():
    """The run-time resize traces with symbolic window sizes (no Python branch on them):
    exported once, the program matches eager at two other sizes."""

    class Bias(torch.nn.Module):  # the window comes from an input's shape, as in the backbone

        def __init__(self) -> None:
            super().__init__()
            self.bias = RelativePositionBias(SRC, num_heads=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias((x.shape[0], x.shape[1]))

    module = Bias().eval()
    with torch.no_grad():
        module.bias.table.copy_(smooth_table(SRC, heads=2))
    dims = {'x': {0: torch.export.Dim('h', min=2, max=64), 1: torch.export.Dim('w', min=2, max=64)}}
    program = torch.export.export(module, (torch.zeros(20, 20), ), dynamic_shapes=dims)
    for size in [(24, 40), (32, 32), (14, 14)]:
        with torch.no_grad():
            want = module(torch.zeros(size))
        assert max_diff(program.module()(torch.zeros(size)), want) <= TOL
