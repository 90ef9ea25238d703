"""Deployment: export classifiers and UperNet segmentors to ONNX or ``torch.export`` (pt2),
and run an exported ONNX file with onnxruntime as an mmengine model.

Needs the ``deploy`` extra (``pip install -e .[deploy]``: onnx, onnxruntime, onnxscript);
they are imported only where used, so importing this package costs nothing::

    from mmbeit.apis import get_model
    from mmbeit.deployment import export_model, build_onnx_model
    export_model(get_model('configs/...py', pretrained='ckpt.pth'), 'model.onnx', dynamic=True)
    model = build_onnx_model('model.onnx', 'configs/...py')
    samples = model.test_step(data)  # DataSample / SegDataSample, as the PyTorch model

bf16 / int8 CPU inference of a PyTorch model: :mod:`mmbeit.deployment.quantize` (and, for
``tools/test.py --dtype``, :class:`mmbeit.engine.InferenceDtypeHook`).
"""
import importlib
from typing import Any

__all__ = [
    'export_model', 'export_module', 'ExportResult', 'ExportCheckError', 'wrap_for_export',
    'build_onnx_model', 'ONNXModel', 'DEPLOY_INSTALL_HINT', 'INFERENCE_DTYPES', 'prepare_for_dtype'
]

_LAZY = {
    'export_model': '.export',
    'export_module': '.export',
    'ExportResult': '.export',
    'ExportCheckError': '.export',
    'DEPLOY_INSTALL_HINT': '.export',
    'wrap_for_export': '.wrappers',
    'build_onnx_model': '.onnx_model',
    'ONNXModel': '.onnx_model',
    'INFERENCE_DTYPES': '.quantize',
    'prepare_for_dtype': '.quantize',
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
