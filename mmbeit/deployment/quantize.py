"""Reduced-precision CPU inference: bf16 autocast and int8 quantization of a built model.

Three dtypes, one name each, used by ``inference_model(dtype=...)``, ``tools/test.py
--dtype`` and the benchmark:

- ``'fp32'``: the model as built.
- ``'bf16'``: the model keeps its fp32 weights and runs under ``torch.autocast`` with
  ``torch.bfloat16``: linear layers and attention run in bf16 (on Intel Xeons with AMX,
  oneDNN's AMX kernels), LayerNorm and softmax stay fp32. The relative position bias is
  cast to the query dtype inside the attention, so SDPA gets one dtype.
- ``'int8'``: every ``nn.Linear`` becomes a dynamically quantized linear layer
  (``torch.ao.quantization.quantize_dynamic``: int8 weights per tensor, activations
  quantized per batch at run time). The other modules stay as they are, and so do the
  module names.

Two faster int8 paths need a fixed input shape and calibration images; they are
used by the benchmark and available here: :func:`quantize_pt2e_int8` (torchao's
PT2E flow with the x86 inductor quantizer, then ``torch.compile`` with freezing)
and :func:`quantize_onnx_int8` (onnxruntime static QDQ quantization of an exported
ONNX file).
"""
import contextlib
import warnings
from typing import Callable, ContextManager, Iterable, Optional, Sequence

import torch
import torch.nn as nn

__all__ = [
    'INFERENCE_DTYPES', 'check_dtype', 'autocast_context', 'quantize_linear_int8',
    'prepare_for_dtype', 'inference_dtype_context', 'compile_frozen', 'quantize_pt2e_int8',
    'quantize_onnx_int8'
]

#: the dtypes ``inference_model``, ``tools/test.py`` and the benchmark accept
INFERENCE_DTYPES = ('fp32', 'bf16', 'int8')


def check_dtype(dtype: str) -> str:
    """``dtype`` if it is one of :data:`INFERENCE_DTYPES`, else a ValueError naming them."""
    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f'unknown inference dtype {dtype!r}; choose one of {INFERENCE_DTYPES}')
    return dtype


def autocast_context(dtype: str, device: str = 'cpu') -> ContextManager:
    """The context a forward of ``dtype`` runs in: bf16 autocast for 'bf16', else nothing.

    Args:
        dtype: one of :data:`INFERENCE_DTYPES`.
        device: the device type the model runs on ('cpu' or 'cuda').
    """
    if check_dtype(dtype) == 'bf16':
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def quantize_linear_int8(module: nn.Module, skip: Sequence[str] = ()) -> nn.Module:
    """Replace every ``nn.Linear`` of ``module`` (in place) by a dynamic int8 linear layer.

    Weights are quantized once (int8, per tensor); activations per batch at run time.
    Only for inference on the CPU; the module is put in eval mode.

    Args:
        module: the model.
        skip: names (or name suffixes, e.g. 'attn.qkv') of linear layers to keep in fp32,
            e.g. layers whose weight another module reads as a tensor (``F.linear(x,
            self.qkv.weight)``), which a quantized layer no longer has.

    Returns:
        ``module`` itself.
    """
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic
    module.eval()
    spec = {
        name: default_dynamic_qconfig
        for name, m in module.named_modules()
        if isinstance(m, nn.Linear) and not any(name == s or name.endswith('.' + s) for s in skip)
    }
    with warnings.catch_warnings():
        # torch 2.14 flags torch.ao.quantization and the quantized tensor types as deprecated
        # (moving to torchao); they are what keeps nn.Linear a module here
        warnings.simplefilter('ignore', DeprecationWarning)
        warnings.filterwarnings('ignore', message='.*quantize_per_tensor.*', category=UserWarning)
        quantize_dynamic(module, spec, dtype=torch.qint8, inplace=True)
    return module


def prepare_for_dtype(model: nn.Module, dtype: str) -> nn.Module:
    """Make a built model ready to run in ``dtype`` (run its forward in
    :func:`autocast_context`).

    'fp32' and 'bf16' leave the weights as they are (bf16 is autocast at run time);
    'int8' quantizes the linear layers in place (:func:`quantize_linear_int8`) and needs
    the model on the CPU.

    Returns:
        ``model`` itself, with ``model.inference_dtype`` set to ``dtype``.
    """
    check_dtype(dtype)
    _refuse_requantized(model, dtype)
    if dtype == 'int8':
        devices = {p.device.type for p in model.parameters()}
        if devices - {'cpu'}:
            raise ValueError(f"dtype='int8' runs on the CPU only; the model is on {devices}: "
                             "build it with device='cpu'")
        quantize_linear_int8(model)
    model.inference_dtype = dtype
    return model


def _refuse_requantized(model: nn.Module, dtype: str) -> None:
    """An int8 model has no fp32 linear layers left to run in fp32 or bf16."""
    if getattr(model, 'inference_dtype', 'fp32') == 'int8' and dtype != 'int8':
        raise ValueError(f"dtype={dtype!r} with a model quantized to int8 (its linear layers "
                         "are int8 now): build the model again for "
                         f"{dtype!r}, or pass dtype='int8'")


def compile_frozen(fn: Callable, **kwargs) -> Callable:
    """``torch.compile(fn)`` with inductor's freezing (weights folded as constants, linear
    weights pre-packed for oneDNN): for inference only, and the weights must not change after
    the first call."""
    options = dict(kwargs.pop('options', None) or {}, freezing=True)  # this compile only
    return torch.compile(fn, options=options, **kwargs)


def quantize_pt2e_int8(module: nn.Module, example: torch.Tensor,
                       calibration: Iterable[torch.Tensor]) -> Callable:
    """Static int8 with torchao's PT2E flow, lowered by inductor (x86, oneDNN int8 kernels).

    The module is exported for ``example``'s shape, observed on the ``calibration``
    batches (activation ranges), converted to quantize/dequantize pairs with the x86
    inductor quantizer's default config (int8 activations per tensor, int8 weights per
    channel) and compiled with freezing.

    Args:
        module: the model, eval mode, on the CPU; called as ``module(x)``.
        example: an input batch [B, 3, H, W]; the result runs this shape.
        calibration: input batches for the activation ranges.

    Returns:
        The compiled function ``x -> output``. Needs ``pip install torchao``.
    """
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as e:
        raise ImportError(f'quantize_pt2e_int8 needs torchao ({e}): pip install torchao') from e
    module.eval()
    with torch.no_grad():
        exported = torch.export.export(module, (example, )).module()
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        for x in calibration:
            prepared(x)
        converted = convert_pt2e(prepared)
    return compile_frozen(converted)


def quantize_onnx_int8(onnx_in: str,
                       onnx_out: str,
                       calibration: Sequence[torch.Tensor],
                       input_name: Optional[str] = None,
                       per_channel: bool = True) -> str:
    """Static int8 QDQ quantization of an exported ONNX file with onnxruntime.

    Args:
        onnx_in: the fp32 ONNX file (e.g. from :func:`mmbeit.deployment.export_model`).
        onnx_out: where the quantized file is written.
        calibration: input batches [B, 3, H, W] for the activation ranges.
        input_name: the graph input; defaults to the file's first input.
        per_channel: per-channel weight scales (more accurate; oneDNN/MLAS support it).

    Returns:
        ``onnx_out``.
    """
    try:
        import onnx
        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise ImportError(f'quantize_onnx_int8 needs onnx and onnxruntime ({e}): '
                          'pip install -e .[deploy]') from e
    name = input_name or onnx.load(onnx_in, load_external_data=False).graph.input[0].name
    batches = [x.detach().float().cpu().numpy() for x in calibration]

    class _Reader(CalibrationDataReader):

        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {name: x}

    pre = onnx_out + '.pre.onnx'
    quant_pre_process(onnx_in, pre, skip_symbolic_shape=True)
    quantize_static(
        pre,
        onnx_out,
        _Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        op_types_to_quantize=['MatMul', 'Gemm', 'Conv'],
        extra_options=dict(ActivationSymmetric=False, WeightSymmetric=True))
    import os
    os.remove(pre)
    return onnx_out


def inference_dtype_context(model: nn.Module, dtype: str, owned: bool) -> ContextManager:
    """Prepare ``model`` for ``dtype`` and return the context its forward runs in.

    Used by ``inference_model(dtype=...)``. A model built for the call (``owned``) is
    quantized here for 'int8'; a model the caller passed in is never changed behind
    their back: for 'int8' it must have gone through :func:`prepare_for_dtype` first.

    Args:
        model: a built mmbeit/mmengine model (not an ONNX model).
        dtype: one of :data:`INFERENCE_DTYPES`.
        owned: whether the model was built for this call.
    """
    check_dtype(dtype)
    _refuse_requantized(model, dtype)
    if dtype == 'fp32':
        return contextlib.nullcontext()
    if getattr(model, 'onnx_path', None):
        raise ValueError(f'dtype={dtype!r} applies to PyTorch models; {model.onnx_path} runs in '
                         'onnxruntime: quantize the file with '
                         'mmbeit.deployment.quantize.quantize_onnx_int8 instead')
    if dtype == 'int8' and getattr(model, 'inference_dtype', 'fp32') != 'int8':
        if not owned:
            raise ValueError("dtype='int8' with a model you built: quantize it once with "
                             "mmbeit.deployment.quantize.prepare_for_dtype(model, 'int8') "
                             '(it changes the model in place), then pass it')
        prepare_for_dtype(model, 'int8')
    device = next(iter(model.parameters()), torch.empty(0)).device.type
    return autocast_context(dtype, device)
