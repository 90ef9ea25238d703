"""One generic test over BEiT's arch table x position options x out_type x out_indices (as timm's
tests/test_models.py runs the same checks over every registered model).

Every arch of ``ARCH_ZOO`` keeps its widths, heads and MLP ratio; the three big ones run at a depth
of 2 (the depth is a loop: the widths are what differs). The full grid runs on tiny, small runs
every position option and out_type, and base and large (whose builds cost most) every position
option; out_indices include the last layer, so that every layer must get a gradient. Each case
checks the output shapes, that every trainable parameter gets a gradient, and a checkpoint round
trip in mmbeit's own format through :func:`mmbeit.converters.load_pretrained` (strict).
"""
import copy
import itertools

import pytest
import torch

from mmbeit.converters import load_pretrained
from mmbeit.models.backbones.beit import ARCH_ZOO, OUT_TYPES, BEiT
from helpers import randomize_

IMG, PATCH, BATCH = 32, 16, 2  # 2 x 2 patches
GRID = (IMG // PATCH, IMG // PATCH)
DEPTH = 2  # of small, base and large

POS_OPTIONS = {
    'rel-per-layer':
    dict(use_rel_pos_bias=True, use_shared_rel_pos_bias=False, use_abs_pos_emb=False),
    'rel-shared': dict(use_rel_pos_bias=False, use_shared_rel_pos_bias=True, use_abs_pos_emb=False),
    'abs': dict(use_rel_pos_bias=False, use_shared_rel_pos_bias=False, use_abs_pos_emb=True),
    'none': dict(use_rel_pos_bias=False, use_shared_rel_pos_bias=False, use_abs_pos_emb=False),
}
OUT_INDICES = {'last': (-1, ), 'first+last': (0, -1)}  # the last layer, so every layer is trained


def arch_for_test(name: str) -> dict:
    arch = dict(ARCH_ZOO[name])
    if name != 'tiny':
        arch['num_layers'] = DEPTH
    return arch


def expected_shape(out_type: str, embed_dims: int) -> tuple:
    return {
        'raw': (BATCH, 1 + GRID[0] * GRID[1], embed_dims),
        'cls_token': (BATCH, embed_dims),
        'featmap': (BATCH, embed_dims, *GRID),
        'avg_featmap': (BATCH, embed_dims),
    }[out_type]


def build(arch: dict, pos: str, out_type: str, out_indices: tuple, seed: int) -> BEiT:
    torch.manual_seed(seed)
    return BEiT(
        arch=arch,
        img_size=IMG,
        patch_size=PATCH,
        out_type=out_type,
        out_indices=out_indices,
        **POS_OPTIONS[pos])


CASES = (
    list(itertools.product(['tiny'], POS_OPTIONS, OUT_TYPES, OUT_INDICES)) +
    list(itertools.product(['small'], POS_OPTIONS, OUT_TYPES, ['first+last'])) +
    list(itertools.product(['base', 'large'], POS_OPTIONS, ['featmap'], ['first+last'])))


def test_the_grid_covers_the_tables():
    assert set(ARCH_ZOO) == {'tiny', 'small', 'base', 'large'}
    assert set(OUT_TYPES) == {'raw', 'cls_token', 'featmap', 'avg_featmap'}
    assert {case[0] for case in CASES} == set(ARCH_ZOO)


@pytest.mark.parametrize('arch_name,pos,out_type,indices', CASES)
def test_arch(arch_name, pos, out_type, indices, tmp_path):
    arch = arch_for_test(arch_name)
    out_indices = OUT_INDICES[indices]
    model = build(arch, pos, out_type, out_indices, seed=0)
    randomize_(model)  # zero-initialised biases and tables would hide unused parameters
    model.train()
    x = torch.randn(BATCH, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))

    # forward: one output per out index, of the out_type's shape
    outs = model(x)
    assert isinstance(outs, tuple) and len(outs) == len(out_indices)
    for out in outs:
        assert out.shape == expected_shape(out_type, arch['embed_dims'])
        assert torch.isfinite(out).all()

    # backward: every trainable parameter gets a non-zero gradient
    sum(out.float().pow(2).mean() for out in outs).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    no_grad = [n for n, p in trainable.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f'parameters without a gradient: {no_grad}'

    # round trip in mmbeit's format: a model with other weights loads the file strictly
    model.eval()
    with torch.no_grad():
        ref = model(x)
    checkpoint = dict(state_dict=model.state_dict(), meta=dict(arch=arch_name))
    if arch_name == 'tiny':  # through a file too (read_checkpoint's path)
        torch.save(checkpoint, tmp_path / 'beit.pth')
        checkpoint = str(tmp_path / 'beit.pth')
    other = randomize_(copy.deepcopy(model), seed=1)
    with torch.no_grad():
        assert not torch.allclose(other(x)[-1], ref[-1])
    load_pretrained(other, checkpoint)
    with torch.no_grad():
        for a, b in zip(other(x), ref):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
