"""Export a classifier or UperNet segmentor to ONNX (torch's dynamo exporter) or to a
``torch.export`` program (pt2), then check the file against PyTorch.

The input of the exported graph is the preprocessed image batch [B, 3, H, W] (fp32,
normalised as the config's ``data_preprocessor`` does); the output is the logits
(classification [B, K]; segmentation [B, K, H, W] at the input size, ``whole`` mode).
With ``dynamic=True`` the batch, height and width are symbolic (H and W multiples
of the patch size): the relative position bias of the input's size is computed in
the graph from the learned tables. With a fixed shape it is computed for that shape
(onnxruntime folds it into a constant).
"""
import importlib
import json
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .wrappers import SegmentorForExport, wrap_for_export

DEPLOY_INSTALL_HINT = 'pip install -e .[deploy]  (installs onnx, onnxruntime and onnxscript)'
FORMATS = ('onnx', 'pt2')
#: metadata keys written into the ONNX file (read back by build_onnx_model)
META_TASK, META_DATASET, META_SHAPE = 'mmbeit.task', 'mmbeit.dataset_meta', 'mmbeit.input_shape'
MAX_DIM = 4096  # the largest symbolic batch / patch-grid side of a dynamic export


class ExportCheckError(RuntimeError):
    """The exported file's output differs from PyTorch's by more than the tolerance."""


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and how well it matched PyTorch.

    ``checks`` holds one ``(input shape, max abs diff)`` per checked input.
    """
    path: str
    fmt: str
    task: str
    input_shape: Tuple[int, int, int, int]
    dynamic: bool
    export_seconds: float
    checks: List[Tuple[Tuple[int, ...], float]] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        return max((d for _, d in self.checks), default=float('nan'))

    def summary(self) -> str:
        lines = [
            f'{self.fmt} {self.task} model written to {self.path} '
            f'(traced at {list(self.input_shape)}, dynamic={self.dynamic}, '
            f'{self.export_seconds:.1f} s)'
        ]
        backend = 'onnxruntime' if self.fmt == 'onnx' else 'torch.export program'
        lines += [
            f'  {backend} vs PyTorch at {list(s)}: max abs diff {d:.3g}' for s, d in self.checks
        ]
        return '\n'.join(lines)


def import_deploy_module(name: str) -> Any:
    """Import an optional deployment dependency, or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(f'{name} is needed for ONNX export and inference: '
                          f'{DEPLOY_INSTALL_HINT}') from e


def _patch_size(model: nn.Module) -> int:
    return int(getattr(getattr(model, 'backbone', None), 'patch_size', 1))


def _default_shape(model: nn.Module) -> Tuple[int, int]:
    size = getattr(getattr(model, 'backbone', None), 'img_size', None)
    if size is None:
        raise ValueError(f'{type(model.backbone).__name__} has no img_size; pass shape=(H, W)')
    return int(size[0]), int(size[1])


def _dynamic_shapes(multiple: int, min_side: int) -> Dict[str, Dict[int, Any]]:
    """Symbolic batch and H, W = multiple * (patch-grid side) for the input ``inputs``."""
    from torch.export import Dim
    batch = Dim('batch', min=1, max=MAX_DIM)
    rows = Dim('patch_rows', min=min_side, max=MAX_DIM)
    cols = Dim('patch_cols', min=min_side, max=MAX_DIM)
    return {'inputs': {0: batch, 2: multiple * rows, 3: multiple * cols}}


def export_module(module: nn.Module,
                  example: torch.Tensor,
                  out: str,
                  fmt: str = 'onnx',
                  dynamic: bool = False,
                  multiple: int = 1,
                  min_side: int = 1,
                  metadata: Optional[Dict[str, str]] = None) -> str:
    """Export ``module(inputs) -> logits`` traced on ``example`` [B, 3, H, W].

    Args:
        module: e.g. from :func:`~mmbeit.deployment.wrap_for_export`, in eval mode.
        example: the traced input.
        out: the file to write.
        fmt: 'onnx' (``torch.onnx.export(dynamo=True)``) or 'pt2' (``torch.export``).
        dynamic: symbolic batch, H and W (H, W multiples of ``multiple``).
        multiple: the patch size.
        min_side: the smallest patch-grid side a dynamic graph accepts.
        metadata: strings stored in the ONNX file's ``metadata_props``.

    Returns:
        ``out``.
    """
    if fmt not in FORMATS:
        raise ValueError(f'unknown export format {fmt!r}; choose one of {FORMATS}')
    dynamic_shapes = _dynamic_shapes(multiple, min_side) if dynamic else None
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    if fmt == 'pt2':
        program = torch.export.export(module, (example, ), dynamic_shapes=dynamic_shapes)
        torch.export.save(program, out)
        return out
    for name in ('onnx', 'onnxscript'):
        import_deploy_module(name)
    program = torch.onnx.export(
        module, (example, ),
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        input_names=['inputs'],
        output_names=['logits'],
        verbose=False)
    for key, value in (metadata or {}).items():
        program.model.metadata_props[key] = value
    program.save(out)
    return out


def _reference(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x)


def check_exported(path: str,
                   module: nn.Module,
                   inputs: Sequence[torch.Tensor],
                   fmt: str = 'onnx') -> List[Tuple[Tuple[int, ...], float]]:
    """Max abs diff between the exported file (onnxruntime, or the loaded pt2 program) and
    ``module`` on each input: ``[(input shape, diff), ...]``."""
    if fmt == 'onnx':
        ort = import_deploy_module('onnxruntime')
        session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
        name = session.get_inputs()[0].name

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    else:
        program = torch.export.load(path).module()

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return program(x)

    checks = []
    for x in inputs:
        ref, got = _reference(module, x), run(x)
        if got.shape != ref.shape:
            raise ExportCheckError(f'{path}: output shape {tuple(got.shape)} at input '
                                   f'{tuple(x.shape)}, PyTorch gives {tuple(ref.shape)}')
        checks.append((tuple(x.shape), float((got.float() - ref.float()).abs().max())))
    return checks


def _json_meta(meta: Optional[dict]) -> str:

    def plain(o: Any) -> Any:
        return o.tolist() if hasattr(o, 'tolist') else list(o)

    return json.dumps(dict(meta or {}), default=plain)


def export_model(model: nn.Module,
                 out: str,
                 shape: Optional[Tuple[int, int]] = None,
                 dynamic: bool = False,
                 fmt: str = 'onnx',
                 check: bool = True,
                 tol: float = 1e-4,
                 seed: int = 0) -> ExportResult:
    """Export a built classifier or segmentor and check the file.

    Args:
        model: an image classifier or mmseg segmentor with its ``.cfg``, e.g.
            ``mmbeit.apis.get_model(config, pretrained=checkpoint)`` (what
            ``tools/deployment/pytorch2onnx.py`` passes); put in eval mode here.
        out: the file to write (``.onnx`` or ``.pt2``).
        shape: traced (H, W); defaults to the backbone's ``img_size``.
        dynamic: symbolic batch, H and W.
        fmt: 'onnx' or 'pt2'.
        check: run the file on the traced input and a second input (with ``dynamic``:
            batch 1 at another, non-square size; else another input of the fixed shape)
            and compare with PyTorch.
        tol: the largest max abs diff the check accepts.
        seed: of the random check inputs.

    Returns:
        :class:`ExportResult`.

    Raises:
        ExportCheckError: a check differs by more than ``tol`` (the file is kept).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f'export_model takes a built model (nn.Module, e.g. from '
                        f'mmbeit.apis.get_model), got {type(model).__name__}')
    module = wrap_for_export(model)
    task = 'segmentation' if isinstance(module, SegmentorForExport) else 'classification'
    multiple = _patch_size(model)
    H, W = tuple(int(s) for s in shape) if shape else _default_shape(model)
    if H % multiple or W % multiple:
        raise ValueError(f'shape {H}x{W} is not a multiple of the patch size {multiple}')
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(2 if dynamic else 1, 3, H, W, generator=gen)
    # a segmentor's 0.5x pyramid level max-pools the patch grid: at least 2 patches a side
    min_side = 2 if task == 'segmentation' else 1
    metadata = {
        META_TASK:
        task,
        META_DATASET:
        _json_meta(getattr(model, 'dataset_meta', None)),
        META_SHAPE:
        json.dumps([None if dynamic else 1, 3, None if dynamic else H, None if dynamic else W])
    }
    start = time.perf_counter()
    export_module(module, example, out, fmt, dynamic, multiple, min_side, metadata)
    result = ExportResult(out, fmt, task, tuple(example.shape), dynamic,
                          time.perf_counter() - start)
    if check:
        if dynamic:  # another batch and a non-square size
            second = torch.randn(
                1, 3, H + 2 * multiple, max(W - 2 * multiple, 2 * multiple), generator=gen)
        else:
            second = torch.randn(example.shape, generator=gen)
        result.checks = check_exported(out, module, [example, second], fmt)
        if result.max_abs_diff > tol:
            raise ExportCheckError(f'{result.summary()}\nmax abs diff {result.max_abs_diff:.3g} '
                                   f'is above the tolerance {tol:g}')
    return result
