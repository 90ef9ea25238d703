"""A pure-PyTorch stand-in for ``mmcv.ops``, used when mmcv's compiled ops are absent.

mmcv-lite (the only mmcv that installs on today's PyTorch) ships the
``mmcv/ops`` sources but not the compiled ``mmcv._ext``, so ``import mmcv.ops``
fails. mmseg 1.2.2 imports two names from it at module level without a guard
(``point_sample`` in ``mmseg.utils`` and ``mmseg.models``, ``sigmoid_focal_loss``
in its focal loss), which breaks ``mmseg.models``, ``mmseg.datasets``,
``mmseg.apis`` and ``mmseg.visualization``. Its other imports from ``mmcv.ops``
are guarded with ``except ModuleNotFoundError``.

This module provides those two names in plain PyTorch, computing what mmcv
computes, and a module object to stand in for ``mmcv.ops`` in which every other
name raises ``ModuleNotFoundError`` (never ``AttributeError``: that would turn
mmseg's guarded ``from mmcv.ops import X`` into an ``ImportError`` it does not
catch). :mod:`mmbeit.compat` installs it; it never fakes ``mmcv._ext``, so
mmengine's ``mmcv_full_available()`` still answers ``False``.
"""
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Optional

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = [
    'point_sample', 'sigmoid_focal_loss', 'MmcvOpsStandin', 'build_mmcv_ops_standin',
    'StandinSubmoduleFinder'
]

STANDIN_NAMES = ('point_sample', 'sigmoid_focal_loss')
FLT_MIN = 1.17549435e-38  # the clamp mmcv's kernels put under log()
_REDUCTIONS = ('none', 'mean', 'sum')


def missing_op_message(name: str) -> str:
    """Explain that ``mmcv.ops.<name>`` needs mmcv's compiled ops."""
    return (f'mmcv.ops.{name} needs the compiled mmcv ops (mmcv._ext), which '
            'this environment lacks (mmcv-lite, or a full mmcv that does not '
            'build on this PyTorch). mmbeit provides only '
            f'{", ".join(STANDIN_NAMES)} in pure PyTorch. Install a full mmcv '
            '(pip install "mmcv>=2.0.0rc4,<2.2.0" built for your torch) to use '
            f'{name}.')


def point_sample(input: torch.Tensor,
                 points: torch.Tensor,
                 align_corners: bool = False,
                 **kwargs) -> torch.Tensor:
    """Sample ``input`` at points given in ``[0, 1] x [0, 1]`` (mmcv's point_sample).

    Args:
        input: Feature map [N, C, H, W].
        points: (x, y) coordinates normalized to [0, 1], [N, P, 2] or
            [N, Hg, Wg, 2].
        align_corners: As in :func:`torch.nn.functional.grid_sample`.
        **kwargs: Passed to :func:`torch.nn.functional.grid_sample`.

    Returns:
        Sampled features, [N, C, P] or [N, C, Hg, Wg].
    """
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)  # [N, P, 1, 2]
    # grid_sample wants coordinates in [-1, 1]
    output = F.grid_sample(input, points * 2.0 - 1.0, align_corners=align_corners, **kwargs)
    if add_dim:
        output = output.squeeze(3)  # [N, C, P]
    return output


class _SigmoidFocalLoss(torch.autograd.Function):
    """mmcv's sigmoid focal loss kernels, element for element."""

    @staticmethod
    def forward(ctx, input: torch.Tensor, target: torch.Tensor, gamma: float, alpha: float,
                weight: Optional[torch.Tensor], reduction: str) -> torch.Tensor:
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        pos = _positive_mask(target, x)  # [N, C], 1 where target == class
        p = x.sigmoid()
        term_p = (1 - p).pow(gamma) * p.clamp(min=FLT_MIN).log()
        term_n = p.pow(gamma) * (1 - p).clamp(min=FLT_MIN).log()
        loss = -pos * alpha * term_p - (1 - pos) * (1 - alpha) * term_n
        sample_weight = _sample_weight(weight, target, x)
        if sample_weight is not None:
            loss = loss * sample_weight
        ctx.gamma, ctx.alpha, ctx.reduction = gamma, alpha, reduction
        ctx.save_for_backward(input, target, weight)
        return _reduce(loss, reduction, input.size(0)).to(input.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        input, target, weight = ctx.saved_tensors
        gamma, alpha = ctx.gamma, ctx.alpha
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        pos = _positive_mask(target, x)
        p = x.sigmoid()
        # d/dx of the terms above, as mmcv's backward kernel writes them
        term_p = (1 - p).pow(gamma) * (1 - p - gamma * p * p.clamp(min=FLT_MIN).log())
        term_n = p.pow(gamma) * (gamma * (1 - p) * (1 - p).clamp(min=FLT_MIN).log() - p)
        grad = -pos * alpha * term_p - (1 - pos) * (1 - alpha) * term_n
        sample_weight = _sample_weight(weight, target, x)
        if sample_weight is not None:
            grad = grad * sample_weight
        grad = grad * grad_output
        if ctx.reduction == 'mean':
            grad = grad / input.size(0)
        return grad.to(input.dtype), None, None, None, None, None


def _positive_mask(target: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    classes = torch.arange(x.size(1), device=x.device)
    return (target[:, None] == classes[None, :]).to(x.dtype)  # [N, C]


def _sample_weight(weight: Optional[torch.Tensor], target: torch.Tensor,
                   x: torch.Tensor) -> Optional[torch.Tensor]:
    if weight is None:
        return None
    # weight[target]; the background index C gets 1 (mmcv reads past the end)
    padded = torch.cat([weight.to(x.dtype), weight.new_ones(1, dtype=x.dtype)])
    return padded[target][:, None]  # [N, 1]


def _reduce(loss: torch.Tensor, reduction: str, num_samples: int) -> torch.Tensor:
    if reduction == 'mean':
        return loss.sum() / num_samples
    if reduction == 'sum':
        return loss.sum()
    return loss


def sigmoid_focal_loss(input: torch.Tensor,
                       target: torch.Tensor,
                       gamma: float = 2.0,
                       alpha: float = 0.25,
                       weight: Optional[torch.Tensor] = None,
                       reduction: str = 'mean') -> torch.Tensor:
    """Sigmoid focal loss with mmcv's semantics (``mmcv.ops.sigmoid_focal_loss``).

    Args:
        input: Logits [N, C].
        target: Class indices [N] (int64) in ``[0, C]``; ``C`` is background,
            a negative for every class.
        gamma: Focusing parameter. Defaults to 2.0.
        alpha: Weight of the positives; negatives get ``1 - alpha``.
            Defaults to 0.25.
        weight: Optional per-class weight [C], applied by each sample's target.
        reduction: ``'none'`` ([N, C]), ``'mean'`` (sum divided by N, as mmcv
            does) or ``'sum'``. Defaults to ``'mean'``.

    Returns:
        The loss, [N, C] or a scalar.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f'reduction must be one of {_REDUCTIONS}, got {reduction!r}')
    if input.dim() != 2 or target.dim() != 1 or input.size(0) != target.size(0):
        raise ValueError('sigmoid_focal_loss expects input [N, C] and target [N], '
                         f'got {tuple(input.shape)} and {tuple(target.shape)}')
    if target.dtype != torch.long:
        raise ValueError(f'target must be int64 class indices, got {target.dtype}')
    if weight is not None and weight.shape != (input.size(1), ):
        raise ValueError(f'weight must have shape ({input.size(1)},), '
                         f'got {tuple(weight.shape)}')
    return _SigmoidFocalLoss.apply(input, target, float(gamma), float(alpha), weight, reduction)


class MmcvOpsStandin(types.ModuleType):
    """The module installed as ``sys.modules['mmcv.ops']``.

    Known names are plain attributes; any other public name raises
    ``ModuleNotFoundError`` naming the compiled mmcv. Dunder lookups raise
    ``AttributeError`` as the import machinery and ``hasattr`` expect.
    """

    def __getattr__(self, name: str):
        if name.startswith('__') and name.endswith('__'):
            raise AttributeError(f"module 'mmcv.ops' has no attribute {name!r}")
        raise ModuleNotFoundError(missing_op_message(name), name='mmcv._ext')


class StandinSubmoduleFinder(importlib.abc.MetaPathFinder):
    """Turns ``import mmcv.ops.<sub>`` into a helpful ``ModuleNotFoundError``.

    Active only while the stand-in is ``sys.modules['mmcv.ops']``.
    """

    def find_spec(self, fullname, path=None, target=None):
        if (fullname.startswith('mmcv.ops.')
                and isinstance(sys.modules.get('mmcv.ops'), MmcvOpsStandin)):
            raise ModuleNotFoundError(
                missing_op_message(fullname[len('mmcv.ops.'):]), name=fullname)
        return None


def build_mmcv_ops_standin() -> MmcvOpsStandin:
    """A fresh stand-in module for ``mmcv.ops`` holding :data:`STANDIN_NAMES`."""
    module = MmcvOpsStandin(
        'mmcv.ops', 'Pure-PyTorch stand-in for mmcv.ops installed by mmbeit '
        '(mmcv._ext is absent); see mmbeit.utils.mmcv_ops_fallback.')
    module.__file__ = __file__
    module.__spec__ = importlib.machinery.ModuleSpec(
        'mmcv.ops', None, origin=__file__, is_package=True)
    module.__path__ = []  # a package, so submodule imports reach the finder
    module.__all__ = list(STANDIN_NAMES)
    module.point_sample = point_sample
    module.sigmoid_focal_loss = sigmoid_focal_loss
    return module
