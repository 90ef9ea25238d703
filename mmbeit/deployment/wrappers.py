"""The tensor-in, tensor-out forward that is exported: preprocessed images -> logits.

Preprocessing (normalisation, BGR->RGB) stays outside the graph, in the config's
``data_preprocessor``, as mmdeploy does; :class:`~mmbeit.deployment.ONNXModel` runs it.
"""
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


class ClassifierForExport(nn.Module):
    """An mmpretrain ``ImageClassifier``: images [B, 3, H, W] -> class logits [B, K]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs, mode='tensor')  # head(backbone(x)), before softmax


def _adaptive_pool_matrix(out_size: int, in_size: Any, like: torch.Tensor) -> torch.Tensor:
    """[out_size, in_size] averaging weights of adaptive pooling: bin i averages
    ``floor(i * L / s) .. ceil((i + 1) * L / s) - 1``, as ``F.adaptive_avg_pool2d``."""
    i = torch.arange(out_size, device=like.device)
    start = (i * in_size) // out_size
    end = ((i + 1) * in_size + out_size - 1) // out_size
    j = torch.arange(in_size, device=like.device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


class ExportableAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` whose export holds for any input size.

    torch's decomposition of adaptive pooling gathers windows computed for the traced
    size (onnxruntime then fails with "invalid index" at other sizes); while exporting,
    the same average is taken as ``P_h @ x @ P_w^T`` with the bins built from the
    symbolic size. Eager calls ``F.adaptive_avg_pool2d`` unchanged.
    """

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        size = (output_size, output_size) if isinstance(output_size, int) else output_size
        self.output_size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_exporting() or None in self.output_size:
            return F.adaptive_avg_pool2d(x, self.output_size)
        rows = _adaptive_pool_matrix(self.output_size[0], x.shape[2], x)  # [s_h, H]
        cols = _adaptive_pool_matrix(self.output_size[1], x.shape[3], x)  # [s_w, W]
        return rows @ x @ cols.t()  # [B, C, s_h, s_w]


def make_pooling_exportable_(model: nn.Module) -> nn.Module:
    """Replace every ``nn.AdaptiveAvgPool2d`` in ``model`` (mmseg's PPM) in place by
    :class:`ExportableAdaptiveAvgPool2d` (no parameters, the same eager output)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.AdaptiveAvgPool2d):
            setattr(model, name, ExportableAdaptiveAvgPool2d(child.output_size))
        else:
            make_pooling_exportable_(child)
    return model


class SegmentorForExport(nn.Module):
    """An mmseg ``EncoderDecoder`` in ``whole`` mode: images [B, 3, H, W] -> logits [B, K, H, W].

    backbone -> neck -> decode head, then the bilinear resize to the input size that
    mmseg's ``decode_head.predict_by_feat`` does (the auxiliary head is training only).
    The model's adaptive pooling layers are made exportable in place
    (:func:`make_pooling_exportable_`).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = make_pooling_exportable_(model)
        self.align_corners = bool(model.decode_head.align_corners)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.model.decode_head(self.model.extract_feat(inputs))  # [B, K, h, w]
        return F.interpolate(
            logits, size=inputs.shape[2:], mode='bilinear', align_corners=self.align_corners)


def wrap_for_export(model: nn.Module) -> nn.Module:
    """The exportable forward of a classifier or segmentor, in eval mode.

    Raises:
        TypeError: a model that is neither (e.g. a masked-image-modeling algorithm).
    """
    if hasattr(model, 'decode_head') and hasattr(model, 'extract_feat'):
        return SegmentorForExport(model).eval()
    if hasattr(model, 'head') and hasattr(model, 'extract_feat'):
        return ClassifierForExport(model).eval()
    raise TypeError(f'cannot export a {type(model).__name__}: only image classifiers '
                    '(mmpretrain ImageClassifier) and segmentors (mmseg EncoderDecoder)')
