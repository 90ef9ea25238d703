"""BEiT's blockwise mask generator: count, block shapes, reproducibility."""
import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmengine.dataset import worker_init_fn

from mmbeit.datasets.beit_mask_generator import BEiTMaskGenerator, generate_block_mask
from mmbeit.registry import TRANSFORMS

ASPECT_TOL = 1e-9


def check_blocks(mask, blocks, num_filled, num_masking_patches, min_num_patches, max_num_patches,
                 min_aspect, max_aspect):
    """Every invariant a mask and its blocks must satisfy."""
    height, width = mask.shape
    assert mask.dtype == bool
    assert mask.sum() == num_masking_patches
    replay = np.zeros_like(mask)
    limit = num_masking_patches if max_num_patches is None else max_num_patches
    for top, left, h, w in blocks:
        assert 0 <= top and top + h <= height and 0 <= left
        assert left + w <= width
        assert h * w >= min_num_patches
        assert min_aspect * (1 - ASPECT_TOL) <= h / w
        assert h / w <= max_aspect * (1 + ASPECT_TOL)
        num_new = h * w - replay[top:top + h, left:left + w].sum()
        assert 0 < num_new <= limit
        replay[top:top + h, left:left + w] = True
    # the blocks and the fill make the mask, nothing else
    assert not (replay & ~mask).any()
    assert (mask & ~replay).sum() == num_filled
    if num_filled:
        # the fill ran only because no allowed block could add between 1
        # and the missing patches (brute force over all placements)
        budget = min(num_filled, limit)
        for h in range(1, height + 1):
            for w in range(1, width + 1):
                if h * w < min_num_patches or not (min_aspect *
                                                   (1 - ASPECT_TOL) <= h / w <= max_aspect *
                                                   (1 + ASPECT_TOL)):
                    continue
                for top in range(height - h + 1):
                    for left in range(width - w + 1):
                        num_new = h * w - replay[top:top + h, left:left + w].sum()
                        assert not 0 < num_new <= budget, (top, left, h, w)


@pytest.mark.parametrize('seed', range(200))
def test_default_config(seed):
    """14x14 patches, 75 masked, blocks of >= 16, aspect in [0.3, 1/0.3]."""
    mask, blocks, num_filled = generate_block_mask(np.random.default_rng(seed), (14, 14), 75, 16)
    check_blocks(mask, blocks, num_filled, 75, 16, None, 0.3, 1 / 0.3)


def test_fill_is_rare_and_small():
    """The last-resort fill (patches outside any block) almost never runs."""
    rng = np.random.default_rng(0)
    fills = np.array([generate_block_mask(rng, (14, 14), 75, 16)[2] for _ in range(500)])
    assert (fills > 0).mean() < 0.05
    assert fills.max() <= 3


def test_every_patch_reachable_and_symmetric():
    """mmpretrain's generator never masks the last row and column."""
    rng = np.random.default_rng(0)
    freq = np.mean([generate_block_mask(rng, (14, 14), 75, 16)[0] for _ in range(1000)], axis=0)
    assert freq.min() > 0.01
    assert abs(freq[-1].mean() - freq[0].mean()) < 0.03
    assert abs(freq[:, -1].mean() - freq[:, 0].mean()) < 0.03
    assert abs(freq.mean() - 75 / 196) < 1e-9


@settings(max_examples=300, deadline=None)
@given(
    height=st.integers(1, 16),
    width=st.integers(1, 16),
    data=st.data(),
    min_num_patches=st.integers(1, 40),
    min_aspect=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_properties(height, width, data, min_num_patches, min_aspect, seed):
    num = data.draw(st.integers(0, height * width), label='num')
    max_num_patches = data.draw(st.one_of(st.none(), st.integers(1, max(1, num))), label='max')
    mask, blocks, num_filled = generate_block_mask(
        np.random.default_rng(seed), (height, width), num, min_num_patches, max_num_patches,
        min_aspect)
    check_blocks(mask, blocks, num_filled, num, min_num_patches, max_num_patches, min_aspect,
                 1 / min_aspect)


def test_infeasible_blocks_fill_exact():
    # no 3x3 block fits a 2x5 grid: the count is still met
    mask, blocks, num_filled = generate_block_mask(np.random.default_rng(0), (2, 5), 7, 9)
    assert mask.sum() == 7 and blocks == [] and num_filled == 7


def test_transform_output_and_packing():
    from mmpretrain.datasets.transforms import PackInputs
    gen = TRANSFORMS.build(
        dict(
            type='BEiTMaskGenerator',
            input_size=(14, 14),
            num_masking_patches=75,
            min_num_patches=16,
            seed=0))
    results = gen(dict(img=np.zeros((16, 16, 3), np.uint8)))
    mask = results['mask']
    assert mask.shape == (14, 14) and mask.dtype == bool
    assert mask.sum() == 75
    packed = PackInputs()(results)
    assert packed['data_samples'].mask.dtype == torch.bool
    assert torch.equal(packed['data_samples'].mask, torch.from_numpy(mask))


def test_seeded_reproducible():
    a = BEiTMaskGenerator(seed=3)
    b = BEiTMaskGenerator(seed=3)
    c = BEiTMaskGenerator(seed=4)
    masks_a = [a({})['mask'] for _ in range(5)]
    masks_b = [b({})['mask'] for _ in range(5)]
    masks_c = [c({})['mask'] for _ in range(5)]
    assert all(np.array_equal(x, y) for x, y in zip(masks_a, masks_b))
    assert not all(np.array_equal(x, y) for x, y in zip(masks_a, masks_c))
    # successive masks differ
    assert not np.array_equal(masks_a[0], masks_a[1])


def test_unseeded_follows_global_seed_not_other_draws():
    """Without ``seed``: reproducible under mmengine's seeding, and the
    global draws of other transforms in between do not shift the masks."""
    from mmengine.runner import set_random_seed

    set_random_seed(0)
    gen = BEiTMaskGenerator()
    first = [gen({})['mask'] for _ in range(3)]

    set_random_seed(0)
    gen = BEiTMaskGenerator()
    second = []
    for _ in range(3):
        second.append(gen({})['mask'])
        np.random.uniform(size=7)  # e.g. a ColorJitter
    assert all(np.array_equal(x, y) for x, y in zip(first, second))

    set_random_seed(1)
    gen = BEiTMaskGenerator()
    third = [gen({})['mask'] for _ in range(3)]
    assert not all(np.array_equal(x, y) for x, y in zip(first, third))


class _MaskDataset(torch.utils.data.Dataset):

    def __init__(self, seed):
        self.gen = BEiTMaskGenerator(seed=seed)

    def __len__(self):
        return 8

    def __getitem__(self, idx):
        return torch.from_numpy(self.gen({})['mask'])


@pytest.mark.parametrize('seed', [None, 5])
def test_dataloader_workers(seed):
    """Forked workers draw different masks, reproducibly run to run."""

    def run():
        torch.manual_seed(0)
        loader = torch.utils.data.DataLoader(
            _MaskDataset(seed),
            batch_size=1,
            num_workers=2,
            worker_init_fn=functools.partial(worker_init_fn, num_workers=2, rank=0, seed=0))
        return torch.cat(list(loader))  # [8, 14, 14]

    first, second = run(), run()
    assert torch.equal(first, second)
    assert (first.flatten(1).sum(1) == 75).all()
    # worker 0 loads samples 0, 2, ...; worker 1 loads 1, 3, ...
    assert not torch.equal(first[0], first[1])
    assert len({tuple(m.flatten().tolist()) for m in first}) == 8


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_masking_patches=197), r'num_masking_patches must be in \[0, '
     r'196\]'),
    (dict(input_size=(14, 0)), 'input_size'),
    (dict(min_num_patches=0), 'min_num_patches'),
    (dict(max_num_patches=0), 'max_num_patches'),
    (dict(min_aspect=2.0, max_aspect=1.0), 'min_aspect <= max_aspect'),
    (dict(max_attempts=0), 'max_attempts'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BEiTMaskGenerator(**kwargs)


def test_set_epoch_reseeds_masks_per_epoch():
    """Resume exactness: masks depend on (seed, epoch), not on how many epochs this process ran."""

    def masks(seed, epoch, n=3):
        BEiTMaskGenerator.set_epoch(epoch)
        gen = BEiTMaskGenerator(
            input_size=(8, 8), num_masking_patches=24, min_num_patches=4, seed=seed)
        return [gen.transform({})['mask'].copy() for _ in range(n)]

    try:
        a, b, c = masks(0, 2), masks(0, 2), masks(0, 3)
        assert all((x == y).all() for x, y in zip(a, b))
        assert any((x != y).any() for x, y in zip(a, c))
        # unseeded: follows the global numpy state set (by the hook) before the epoch
        np.random.seed(5)
        d = masks(None, 1)
        np.random.seed(5)
        e = masks(None, 1)
        assert all((x == y).all() for x, y in zip(d, e))
    finally:
        BEiTMaskGenerator._epoch = None
