"""Property tests (hypothesis): position-table resizing and the converters' round trips.

The mask generator's properties are in helper-3's MIM tests (not repeated here).
"""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmbeit.layers.pos_resize import (NUM_EXTRA_REL_TOKENS, infer_square_window, rel_pos_table_size,
                                      resize_abs_pos_embed, resize_rel_pos_table)

windows = st.tuples(st.integers(1, 12), st.integers(1, 12))
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _table(window, heads, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rel_pos_table_size(window), heads, generator=g)


@FAST
@given(window=windows, heads=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_rel_pos_resize_to_the_same_window_is_identity(window, heads, seed):
    table = _table(window, heads, seed)
    assert torch.equal(resize_rel_pos_table(table, window, window), table)


@FAST
@given(
    src=windows,
    dst=windows,
    heads=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(['unilm', 'bilinear']))
def test_rel_pos_resize_shape_and_cls_rows(src, dst, heads, seed, mode):
    table = _table(src, heads, seed)
    out = resize_rel_pos_table(table, src, dst, mode)
    assert out.shape == (rel_pos_table_size(dst), heads)
    assert torch.equal(out[-NUM_EXTRA_REL_TOKENS:], table[-NUM_EXTRA_REL_TOKENS:])
    grid, new = table[:-NUM_EXTRA_REL_TOKENS], out[:-NUM_EXTRA_REL_TOKENS]
    if mode == 'bilinear':  # bilinear interpolation never leaves the range of its grid
        assert new.min() >= grid.min() - 1e-5 and new.max() <= grid.max() + 1e-5


def _grid(table, window):
    return table[:-NUM_EXTRA_REL_TOKENS].reshape(2 * window[0] - 1, 2 * window[1] - 1, -1)


@FAST
@given(src=windows, dst=windows, heads=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_unilm_resize_keeps_the_offsets_next_to_zero(src, dst, heads, seed):
    """unilm's source nodes 0 and +-1 stay at 0 and +-1: those biases are kept exactly."""
    table = _table(src, heads, seed)
    a, b = _grid(table, src), _grid(resize_rel_pos_table(table, src, dst), dst)
    rh, rw = min(src[0], dst[0], 2) - 1, min(src[1], dst[1], 2) - 1  # offsets |d| <= 1 in both
    assert torch.equal(b[dst[0] - 1 - rh:dst[0] + rh, dst[1] - 1 - rw:dst[1] + rw],
                       a[src[0] - 1 - rh:src[0] + rh, src[1] - 1 - rw:src[1] + rw])


@FAST
@given(
    src=windows,
    dst=windows,
    value=st.floats(-10, 10, allow_nan=False),
    mode=st.sampled_from(['unilm', 'bilinear']))
def test_rel_pos_resize_of_a_constant_table_is_constant(src, dst, value, mode):
    table = torch.full((rel_pos_table_size(src), 3), value)
    out = resize_rel_pos_table(table, src, dst, mode)
    torch.testing.assert_close(out, torch.full_like(out, value), rtol=0, atol=1e-5)


@FAST
@given(w=st.integers(1, 30))
def test_square_window_round_trip(w):
    assert infer_square_window(rel_pos_table_size((w, w))) == (w, w)


@FAST
@given(src=windows, dst=windows, dim=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_abs_pos_resize_keeps_prefix_and_is_identity_at_same_size(src, dst, dim, seed):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(1, 1 + src[0] * src[1], dim, generator=g)
    assert torch.equal(resize_abs_pos_embed(pos, src, src), pos)
    out = resize_abs_pos_embed(pos, src, dst)
    assert out.shape == (1, 1 + dst[0] * dst[1], dim)
    assert torch.equal(out[:, :1], pos[:, :1])


# --------------------------------------------------------------------------- converters


def _random_state(model, seed):
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
        for k, v in model.state_dict().items()
    }


@pytest.fixture(scope='module')
def classifier():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='mmbeit.BEiT', arch='tiny', img_size=32, patch_size=16,
                final_norm=False),  # as BEiT fine-tunes: fc_norm after mean pooling
            head=dict(type='LinearClsHead', num_classes=5, in_channels=64)))


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16))
def test_mmbeit_to_transformers_and_back_is_identity(classifier, seed):
    from mmbeit.converters import convert_checkpoint, detect_format, to_transformers
    state = _random_state(classifier, seed)
    hf_state, _ = to_transformers(state, 'classification', img_size=32)
    assert detect_format(hf_state) == 'transformers'
    back = convert_checkpoint(hf_state, target='classifier')
    assert back.keys() == state.keys()
    for k in state:
        assert torch.equal(back[k], state[k]), k
