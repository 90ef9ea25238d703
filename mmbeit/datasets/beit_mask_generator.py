"""BEiT's blockwise masking as a data transform.

Blocks (rectangles of patches) are placed one after another as in BEiT's
Algorithm 1 until ``num_masking_patches`` patches are masked: each block
covers at least ``min_num_patches`` patches, its aspect ratio ``h / w`` lies
in ``[min_aspect, max_aspect]``, and it adds at most the patches still
missing (overlapping earlier blocks is allowed).

The count is exact, always, in bounded time. unilm's generator gives up after
10 random misses in a row (the mask comes out short); mmpretrain's retries
forever. Here, after ``max_attempts`` random misses, the next block is found
by searching every placement of every allowed shape for the one that adds the
most of the missing patches; only if no allowed block adds any (the shapes
cannot fit, e.g. ``min_num_patches`` larger than the grid) are the last
patches filled one by one next to the masked region. Blocks also reach the
last row and column, which mmpretrain's ``randint(0, H - h)`` never masks.
"""
import functools
import os
from typing import List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch.utils.data
from mmcv.transforms import BaseTransform

from mmbeit.registry import TRANSFORMS

__all__ = ['BEiTMaskGenerator', 'Block', 'generate_block_mask']


class Block(NamedTuple):
    """A masked rectangle: rows ``top:top+height``, cols ``left:left+width``."""
    top: int
    left: int
    height: int
    width: int


def generate_block_mask(rng: np.random.Generator,
                        input_size: Tuple[int, int],
                        num_masking_patches: int,
                        min_num_patches: int = 16,
                        max_num_patches: Optional[int] = None,
                        min_aspect: float = 0.3,
                        max_aspect: Optional[float] = None,
                        max_attempts: int = 10) -> Tuple[np.ndarray, List[Block], int]:
    """Draw one blockwise mask (a pure function of ``rng``'s state).

    Args:
        rng: the random generator to draw from.
        input_size: (height, width) of the patch grid.
        num_masking_patches: patches to mask, exactly.
        min_num_patches: the least number of patches of a block.
        max_num_patches: the most patches one block may add. Defaults to
            None (``num_masking_patches``).
        min_aspect: the least ``height / width`` of a block.
        max_aspect: the largest; defaults to ``1 / min_aspect``.
        max_attempts: random blocks tried in a row before searching.

    Returns:
        ``(mask, blocks, num_filled)``: a bool array [height, width] with
        exactly ``num_masking_patches`` True, the blocks placed in order, and
        how many patches the last-resort fill added (not part of a block).
    """
    height, width = input_size
    if not 0 <= num_masking_patches <= height * width:
        raise ValueError(f'num_masking_patches must be in [0, {height * width}] for a '
                         f'{height}x{width} grid, got {num_masking_patches}')
    max_num_patches = (num_masking_patches if max_num_patches is None else max_num_patches)
    max_aspect = 1 / min_aspect if max_aspect is None else max_aspect

    placements = _placements(height, width, min_num_patches, float(min_aspect), float(max_aspect))

    mask = np.zeros((height, width), dtype=bool)
    blocks: List[Block] = []
    num_filled = 0
    count = 0
    while count < num_masking_patches:
        budget = min(num_masking_patches - count, max_num_patches)
        block = _random_block(rng, mask, budget, min_num_patches, min_aspect, max_aspect,
                              max_attempts)
        if block is None:
            block = _searched_block(rng, mask, budget, placements)
        if block is None:  # no block of the allowed shapes adds <= budget
            num_filled = num_masking_patches - count
            _fill(rng, mask, num_filled)
            break
        top, left, h, w = block
        count += h * w - int(mask[top:top + h, left:left + w].sum())
        mask[top:top + h, left:left + w] = True
        blocks.append(block)
    return mask, blocks, num_filled


def _random_block(rng: np.random.Generator, mask: np.ndarray, budget: int, min_num_patches: int,
                  min_aspect: float, max_aspect: float, max_attempts: int) -> Optional[Block]:
    """BEiT's Algorithm 1: area uniform, aspect ratio log-uniform.

    The area is at least ``min_num_patches``; near the end a block adds
    fewer new patches than its area by overlapping the masked ones.
    """
    height, width = mask.shape
    log_aspect = (np.log(min_aspect), np.log(max_aspect))
    for _ in range(max_attempts):
        target_area = rng.uniform(min_num_patches, max(min_num_patches, budget))
        aspect = np.exp(rng.uniform(*log_aspect))
        h = int(round(np.sqrt(target_area * aspect)))
        w = int(round(np.sqrt(target_area / aspect)))
        # Rounding may leave the bounds: such a block counts as a miss.
        if not (h * w >= min_num_patches and h <= height and w <= width
                and _aspect_ok(h, w, min_aspect, max_aspect)):
            continue
        top = int(rng.integers(0, height - h + 1))
        left = int(rng.integers(0, width - w + 1))
        num_new = h * w - int(mask[top:top + h, left:left + w].sum())
        if 0 < num_new <= budget:
            return Block(top, left, h, w)
    return None


def _searched_block(rng: np.random.Generator, mask: np.ndarray, budget: int,
                    placements: np.ndarray) -> Optional[Block]:
    """Among all ``placements`` (rows of top, left, height, width), one that
    adds as many new patches as possible but at most ``budget`` (uniformly at
    random among the best)."""
    if len(placements) == 0:
        return None
    top, left, h, w = placements.T
    # integral image: the masked patches of every placement in one gather
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    covered = (
        integral[top + h, left + w] - integral[top, left + w] - integral[top + h, left] +
        integral[top, left])
    num_new = h * w - covered
    num_new[num_new > budget] = 0
    best = num_new.max()
    if best == 0:
        return None
    candidates = np.flatnonzero(num_new == best)
    return Block(*(int(v) for v in placements[rng.choice(candidates)]))


@functools.lru_cache(maxsize=16)
def _placements(height: int, width: int, min_num_patches: int, min_aspect: float,
                max_aspect: float) -> np.ndarray:
    """Every position of every allowed block shape: [N, 4] (t, l, h, w)."""
    rows = []
    for h in range(1, height + 1):
        for w in range(1, width + 1):
            if h * w >= min_num_patches and _aspect_ok(h, w, min_aspect, max_aspect):
                t, l_ = np.meshgrid(
                    np.arange(height - h + 1), np.arange(width - w + 1), indexing='ij')
                rows.append(
                    np.stack(
                        [t.ravel(), l_.ravel(),
                         np.full(t.size, h),
                         np.full(t.size, w)], axis=1))
    if not rows:
        return np.zeros((0, 4), dtype=np.int64)
    out = np.concatenate(rows).astype(np.int64)
    out.setflags(write=False)
    return out


def _aspect_ok(h: int, w: int, min_aspect: float, max_aspect: float) -> bool:
    # a hair of tolerance: an exact bound such as 1 / 0.3 may not round-trip
    return min_aspect * (1 - 1e-9) <= h / w <= max_aspect * (1 + 1e-9)


def _fill(rng: np.random.Generator, mask: np.ndarray, num: int) -> None:
    """Mask ``num`` more patches one by one, each an unmasked patch with the
    most masked 4-neighbours, so the region grows compactly (the last resort
    when the block shapes cannot add the few patches still missing)."""
    for _ in range(num):
        padded = np.pad(mask, 1).astype(np.int8)
        neighbours = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:])
        score = np.where(mask, -1, neighbours).ravel()
        choices = np.flatnonzero(score == score.max())
        mask.flat[choices[int(rng.integers(len(choices)))]] = True


@TRANSFORMS.register_module()
class BEiTMaskGenerator(BaseTransform):
    """Add BEiT's blockwise mask to the results: ``results['mask']``.

    **Added keys:** ``mask`` (bool numpy [H, W], True = masked; mmpretrain's
    ``PackInputs`` puts it in ``data_sample.mask``).

    Randomness: the transform draws from its own ``np.random.Generator``,
    made in each process on first use, so other transforms' draws never shift
    the masks. With ``seed`` it is seeded by ``(seed, rank, dataloader worker
    id)``: reproducible by itself, distinct across workers and ranks (with
    non-persistent workers the sequence restarts every epoch). Without
    ``seed`` it is seeded from the global NumPy RNG, which mmengine seeds
    (``randomness.seed``) in the main process and in every worker.

    :meth:`set_epoch` (``mmbeit.ResumableRandomnessHook`` calls it before
    every epoch) makes the generators of all instances start anew at their
    next use, the epoch added to a ``seed``: the masks then follow the
    training position in the main process too (``num_workers=0``, where the
    generator would otherwise run on across epochs), so a resumed run draws
    the masks of the run that went straight through.

    Args:
        input_size: the patch grid, an int or (height, width). Defaults to 14.
        num_masking_patches: patches to mask, exactly. Defaults to 75.
        min_num_patches: the least patches of a block. Defaults to 16.
        max_num_patches: the most patches one block adds. Defaults to None
            (no limit but the count).
        min_aspect: the least ``height / width`` of a block. Defaults to 0.3.
        max_aspect: the largest; defaults to ``1 / min_aspect``.
        max_attempts: random blocks tried in a row before the exhaustive
            search for the next block. Defaults to 10 (as unilm).
        seed: see above. Defaults to None.
    """

    def __init__(self,
                 input_size: Union[int, Tuple[int, int]] = 14,
                 num_masking_patches: int = 75,
                 min_num_patches: int = 16,
                 max_num_patches: Optional[int] = None,
                 min_aspect: float = 0.3,
                 max_aspect: Optional[float] = None,
                 max_attempts: int = 10,
                 seed: Optional[int] = None) -> None:
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.input_size = tuple(input_size)
        if (len(self.input_size) != 2
                or not all(isinstance(s, int) and s > 0 for s in self.input_size)):
            raise ValueError('BEiTMaskGenerator: input_size must be a '
                             f'positive int or (height, width), got '
                             f'{input_size!r}')
        num_patches = self.input_size[0] * self.input_size[1]
        if not 0 <= num_masking_patches <= num_patches:
            raise ValueError(f'BEiTMaskGenerator: num_masking_patches must be in [0, '
                             f'{num_patches}] for input_size {self.input_size}, got '
                             f'{num_masking_patches}')
        if min_num_patches < 1:
            raise ValueError('BEiTMaskGenerator: min_num_patches must be >= '
                             f'1, got {min_num_patches}')
        if max_num_patches is not None and max_num_patches < 1:
            raise ValueError('BEiTMaskGenerator: max_num_patches must be >= '
                             f'1 or None, got {max_num_patches}')
        max_aspect = 1 / min_aspect if max_aspect is None else max_aspect
        if not 0 < min_aspect <= max_aspect:
            raise ValueError('BEiTMaskGenerator: need 0 < min_aspect <= max_aspect, got '
                             f'min_aspect={min_aspect}, max_aspect={max_aspect}')
        if max_attempts < 1:
            raise ValueError('BEiTMaskGenerator: max_attempts must be >= 1, '
                             f'got {max_attempts}')
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        self.max_num_patches = max_num_patches
        self.min_aspect = min_aspect
        self.max_aspect = max_aspect
        self.max_attempts = max_attempts
        self.seed = seed
        self._rng: Optional[np.random.Generator] = None
        self._rng_owner: Optional[Tuple[int, int, Optional[int]]] = None

    # The epoch given to set_epoch(), shared by every instance; None: never.
    _epoch: Optional[int] = None

    @classmethod
    def set_epoch(cls, epoch: int) -> None:
        """Restart every instance's generator at its next use in ``epoch``.

        Forked dataloader workers made afterwards inherit the epoch.
        """
        cls._epoch = int(epoch)

    def generate(self, rng: np.random.Generator) -> np.ndarray:
        """One mask [H, W] (bool) drawn from ``rng``."""
        mask, _, _ = generate_block_mask(rng, self.input_size, self.num_masking_patches,
                                         self.min_num_patches, self.max_num_patches,
                                         self.min_aspect, self.max_aspect, self.max_attempts)
        return mask

    def transform(self, results: dict) -> dict:
        """Add ``results['mask']``: bool [H, W], True where masked."""
        results['mask'] = self.generate(self._process_rng())
        return results

    def _process_rng(self) -> np.random.Generator:
        # A generator per (process, worker, epoch): copies forked into
        # dataloader workers must not replay the same masks, and a new epoch
        # (set_epoch) starts from its own position, not where the last ended.
        owner = (os.getpid(), _worker_id(), self._epoch)
        if self._rng is None or self._rng_owner != owner:
            if self.seed is None:
                entropy = [int(v) for v in np.random.randint(0, 2**32, size=4, dtype=np.uint64)]
            else:
                entropy = [self.seed, _rank(), owner[1] + 1]
                if self._epoch is not None:
                    entropy.append(self._epoch)
            self._rng = np.random.default_rng(np.random.SeedSequence(entropy))
            self._rng_owner = owner
        return self._rng

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(input_size={self.input_size}, '
                f'num_masking_patches={self.num_masking_patches}, '
                f'min_num_patches={self.min_num_patches}, '
                f'max_num_patches={self.max_num_patches}, '
                f'min_aspect={self.min_aspect}, '
                f'max_aspect={self.max_aspect}, seed={self.seed})')


def _worker_id() -> int:
    """The dataloader worker id, -1 in the main process."""
    info = torch.utils.data.get_worker_info()
    return -1 if info is None else info.id


def _rank() -> int:
    # Set by torchrun and by mmengine's slurm/mpi launchers.
    return int(os.environ.get('RANK', 0))
