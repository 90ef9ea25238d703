"""An exported ONNX file as an mmengine model: the config's data preprocessor, onnxruntime
for the network, and mmpretrain's / mmseg's post-processing, so ``test_step`` gives the
same ``DataSample`` / ``SegDataSample`` as the PyTorch model.

Not supported (they stay in PyTorch): sliding-window segmentation (``test_cfg.mode='slide'``)
and test-time augmentation.
"""
import copy
import json
import os
import os.path as osp
import types
from typing import Any, List, Optional, Union

import torch
from mmengine.config import Config
from mmengine.model import BaseModel

from .export import META_DATASET, META_TASK, import_deploy_module

ConfigLike = Union[str, os.PathLike, Config]


def _load_config(config: ConfigLike) -> Config:
    if isinstance(config, Config):
        return copy.deepcopy(config)
    path = os.fspath(config)
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    return Config.fromfile(path)


def _task(cfg: Config) -> str:
    return 'segmentation' if cfg.get('default_scope') == 'mmseg' else 'classification'


def _build_data_preprocessor(cfg: Config, task: str) -> torch.nn.Module:
    from mmengine.registry import MODELS, DefaultScope

    import mmbeit.models  # noqa: F401  (registers mmbeit.* components)
    dp = copy.deepcopy(cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {})
    scope = 'mmseg' if task == 'segmentation' else (cfg.get('default_scope') or 'mmpretrain')
    dp.setdefault('type',
                  'SegDataPreProcessor' if task == 'segmentation' else 'ClsDataPreprocessor')
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(dp)


def _dataset_meta_from_config(cfg: Config) -> dict:
    """Classes (and palette) of the config's test dataset, when it names them."""
    for key in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(key) or {}).get('dataset') or {}
        meta = dict(dataset.get('metainfo') or {})
        classes = dataset.get('classes') or meta.get('classes')
        if classes:
            out = dict(classes=tuple(classes))
            if meta.get('palette'):
                out['palette'] = meta['palette']
            return out
    return {}


class ONNXModel(BaseModel):
    """An ONNX file from :func:`~mmbeit.deployment.export_model` with its config.

    Attributes:
        cfg: the config. ``dataset_meta``: classes (and palette) stored in the file at
        export, else the config's. ``task``: 'classification' or 'segmentation'.
        ``session``: the onnxruntime ``InferenceSession``.

    Args:
        onnx_path: the exported file.
        cfg: its config (preprocessing and post-processing are read from it).
        num_threads: onnxruntime intra-op threads; None lets onnxruntime choose.
    """

    def __init__(self, onnx_path: str, cfg: Config, num_threads: Optional[int] = None) -> None:
        ort = import_deploy_module('onnxruntime')
        if not osp.isfile(onnx_path):
            raise FileNotFoundError(f'ONNX file not found: {onnx_path}')
        task = _task(cfg)
        test_cfg = cfg.model.get('test_cfg') or {}
        if task == 'segmentation' and test_cfg.get('mode', 'whole') != 'whole':
            raise NotImplementedError(
                f"the config tests in {test_cfg.get('mode')!r} mode; an ONNX model runs "
                "whole images only (slide inference stays in PyTorch). Set "
                "model.test_cfg=dict(mode='whole') in the config to run it on whole images.")
        super().__init__(data_preprocessor=_build_data_preprocessor(cfg, task))
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        self.session = ort.InferenceSession(onnx_path, options, providers=['CPUExecutionProvider'])
        self.onnx_path = onnx_path
        self.cfg = cfg
        self.task = task
        props = self.session.get_modelmeta().custom_metadata_map
        if props.get(META_TASK, task) != task:
            raise ValueError(f'{onnx_path} was exported from a {props[META_TASK]} model, but the '
                             f'config describes {task}')
        stored = json.loads(props[META_DATASET]) if META_DATASET in props else {}
        meta = stored or _dataset_meta_from_config(cfg)
        if meta.get('classes'):
            meta['classes'] = tuple(meta['classes'])
        self.dataset_meta = meta
        self._input = self.session.get_inputs()[0]
        # exported models take sides that are multiples of the patch size (inference_model
        # pads segmentation inputs to them, as it does for the PyTorch model)
        self.patch_size = int((cfg.model.get('backbone') or {}).get('patch_size', 16))
        if task == 'segmentation':
            head = cfg.model.decode_head
            # what mmseg's BaseSegmentor.postprocess_result reads from the segmentor
            self._seg_view = types.SimpleNamespace(
                align_corners=bool(head.get('align_corners', False)),
                decode_head=types.SimpleNamespace(threshold=head.get('threshold') or 0.3))

    def run(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits of a preprocessed batch [B, 3, H, W] (classification [B, K]; segmentation
        [B, K, H, W])."""
        shape = tuple(inputs.shape)
        expected = self._input.shape
        for got, want in zip(shape, expected):
            if isinstance(want, int) and got != want:
                raise ValueError(f'{self.onnx_path} was exported for inputs {expected} '
                                 f'(fixed shape), got {list(shape)}; export with --dynamic '
                                 'to run other sizes')
        H, W = shape[-2:]
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(
                f'{self.onnx_path}: input size {H}x{W} is not a multiple of the patch size {p}; '
                f'expected sides that are multiples of {p} (e.g. pad to '
                f'{-(-H // p) * p}x{-(-W // p) * p}: mmbeit.apis.inference_model pads images, or '
                f'set model.data_preprocessor.test_cfg=dict(size_divisor={p}) in the config)')
        x = inputs.detach().float().cpu().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self._input.name: x})[0])

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[list] = None,
                mode: str = 'predict') -> Any:
        """mode 'tensor': the logits; 'predict': a list of DataSample / SegDataSample."""
        if mode not in ('tensor', 'predict'):
            raise ValueError(f'an ONNX model supports mode "tensor" and "predict", not {mode!r}')
        logits = self.run(inputs)
        if mode == 'tensor':
            return logits
        if self.task == 'segmentation':
            return self._segmentation_samples(logits, inputs, data_samples)
        return self._classification_samples(logits, data_samples)

    @staticmethod
    def _classification_samples(logits: torch.Tensor, data_samples: Optional[list]) -> List[Any]:
        # as mmpretrain's ClsHead.predict: softmax scores, arg-max label
        from mmpretrain.structures import DataSample
        scores = torch.softmax(logits, dim=1)
        labels = scores.argmax(dim=1, keepdim=True)
        samples = data_samples if data_samples is not None else [None] * len(scores)
        out = []
        for sample, score, label in zip(samples, scores, labels):
            sample = DataSample() if sample is None else sample
            out.append(sample.set_pred_score(score).set_pred_label(label))
        return out

    def _segmentation_samples(self, logits: torch.Tensor, inputs: torch.Tensor,
                              data_samples: Optional[list]) -> List[Any]:
        from mmseg.models.segmentors.base import BaseSegmentor
        for sample in data_samples or []:
            meta = sample.metainfo
            size = meta.get('pad_shape', meta.get('img_shape'))
            if size is not None and tuple(size[:2]) != tuple(inputs.shape[2:]):
                raise ValueError(f'image shape {tuple(size[:2])} differs from the batch '
                                 f'{tuple(inputs.shape[2:])}; the ONNX model resizes to the '
                                 'input size only (whole mode without padding)')
        # mmseg's own post-processing: crop padding, undo flips, resize to ori_shape, argmax
        return BaseSegmentor.postprocess_result(self._seg_view, logits, data_samples)


def build_onnx_model(onnx_path: str,
                     config: ConfigLike,
                     num_threads: Optional[int] = None) -> ONNXModel:
    """An :class:`ONNXModel` for an exported file and the config it was exported from.

    ``model.test_step(data)`` preprocesses with the config's data preprocessor, runs
    onnxruntime and returns mmpretrain ``DataSample`` (``pred_score``, ``pred_label``)
    or mmseg ``SegDataSample`` (``seg_logits``, ``pred_sem_seg``) as the PyTorch model.
    """
    return ONNXModel(os.fspath(onnx_path), _load_config(config), num_threads).eval()
