"""bf16 / int8 CPU inference (mmbeit.deployment.quantize) on the tiny sample classifier.

Weights are random with every parameter moved off its init (helpers.randomize_); images are
mmbeit's drawn sample images. Tolerances, on the 5-class softmax scores and on raw logits:
bf16 autocast 0.02 / 0.05, dynamic int8 0.02 / 0.05, static int8 (PT2E, onnxruntime QDQ)
0.05 / 0.15, and the top-1 class of every image unchanged.
"""
import os.path as osp

import numpy as np
import pytest
import torch

from mmbeit.apis import get_model, inference_model
from mmbeit.deployment import quantize
from mmbeit.engine.inference_dtype_hook import InferenceDtypeHook, add_inference_dtype_hook
from mmbeit.utils.sample_data import SAMPLE_CLS_CLASSES, draw_cls_image
from helpers import randomize_

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLS_TINY = osp.join(REPO, 'configs/beit/benchmarks/beit-tiny-p8_1xb32-20e_sample.py')
SCORE_TOL = {'bf16': 0.02, 'int8': 0.02}
LOGIT_TOL = {'bf16': 0.05, 'int8': 0.05, 'static': 0.15}


def _images(n: int = 5) -> list:
    """BGR uint8 sample images, one per class."""
    rng = np.random.default_rng(0)
    return [draw_cls_image(rng, SAMPLE_CLS_CLASSES[i % 5], 64)[..., ::-1].copy() for i in range(n)]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """(checkpoint path, the fp32 model with those weights)."""
    model = randomize_(get_model(CLS_TINY)).eval()
    path = str(tmp_path_factory.mktemp('quant') / 'tiny.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path, model


def _batch(model, images) -> torch.Tensor:
    """The preprocessed images [N, 3, 64, 64] as the classifier sees them."""
    from mmengine.dataset import pseudo_collate

    from mmbeit.apis.cls_inference import classification_pipeline
    pipeline = classification_pipeline(model.cfg)
    data = [pipeline(dict(img=im, img_shape=im.shape[:2], ori_shape=im.shape[:2])) for im in images]
    return model.data_preprocessor(pseudo_collate(data))['inputs']


@pytest.mark.parametrize('dtype', ['bf16', 'int8'])
def test_inference_model_dtype_close_to_fp32(tiny, dtype):
    ckpt, _ = tiny
    model = quantize.prepare_for_dtype(get_model(CLS_TINY, pretrained=ckpt), dtype)
    for i, image in enumerate(_images()):
        ref = inference_model(CLS_TINY, image, checkpoint=ckpt)
        got = inference_model(model, image, dtype=dtype)
        assert got['pred_label'] == ref['pred_label']
        assert np.abs(got['pred_scores'] - ref['pred_scores']).max() <= SCORE_TOL[dtype]
        if i == 0:  # the model is built (and quantized) for the call
            owned = inference_model(CLS_TINY, image, checkpoint=ckpt, dtype=dtype)
            np.testing.assert_allclose(owned['pred_scores'], got['pred_scores'], atol=1e-6)
    if dtype == 'int8':
        kinds = {type(m) for m in model.modules()}
        assert torch.nn.Linear not in kinds and torch.ao.nn.quantized.dynamic.Linear in kinds


def test_logits_and_dtype_errors(tiny):
    _, model = tiny
    x = _batch(model, _images())
    with torch.no_grad():
        ref = model(x, mode='tensor')  # [5, 5]
        with quantize.autocast_context('bf16'):
            bf16 = model(x, mode='tensor')
        assert bf16.dtype == torch.bfloat16
    assert (bf16.float() - ref).abs().max() <= LOGIT_TOL['bf16']
    assert torch.equal(bf16.float().argmax(1), ref.argmax(1))

    plain = get_model(CLS_TINY)
    with pytest.raises(ValueError, match="prepare_for_dtype"):
        inference_model(plain, _images(1)[0], dtype='int8')
    with pytest.raises(ValueError, match=r"'fp16'.*\('fp32', 'bf16', 'int8'\)"):
        inference_model(plain, _images(1)[0], dtype='fp16')


def test_dynamic_int8_logits(tiny):
    ckpt, model = tiny
    x = _batch(model, _images())
    q = quantize.prepare_for_dtype(get_model(CLS_TINY, pretrained=ckpt), 'int8')
    with torch.no_grad():
        ref, got = model(x, mode='tensor'), q(x, mode='tensor')
    assert 0 < (got - ref).abs().max() <= LOGIT_TOL['int8']
    assert torch.equal(got.argmax(1), ref.argmax(1))
    assert q.inference_dtype == 'int8'
    # an int8 model has no fp32 linear layers left: other dtypes are refused, named
    for dtype in ('bf16', 'fp32'):
        with pytest.raises(ValueError, match=f"dtype='{dtype}' with a model quantized to int8"):
            inference_model(q, _images(1)[0], dtype=dtype)
        with pytest.raises(ValueError, match='quantized to int8'):
            quantize.prepare_for_dtype(q, dtype)
    assert inference_model(q, _images(1)[0], dtype='int8').get('pred_label') is not None


def test_compile_frozen_freezes_its_own_compile_only(monkeypatch):
    import torch._inductor.config as inductor_config
    calls = []
    monkeypatch.setattr(torch, 'compile', lambda fn, **kw: calls.append(kw) or fn)
    before = inductor_config.freezing
    quantize.compile_frozen(torch.nn.Linear(2, 2), dynamic=False)
    assert calls == [dict(options=dict(freezing=True), dynamic=False)]
    assert inductor_config.freezing == before  # later torch.compile calls are not frozen


def test_static_int8_pt2e_and_onnx(tiny, tmp_path, monkeypatch):
    from mmbeit.deployment import export_module, wrap_for_export
    _, model = tiny
    x = _batch(model, _images())
    net = wrap_for_export(model).eval()
    with torch.no_grad():
        ref = net(x)
    # PT2E: the quantize/dequantize graph itself (run eager here; inductor lowers it in the
    # benchmark, which takes minutes on 2 cores)
    import torchao  # noqa: F401
    monkeypatch.setattr(quantize, 'compile_frozen', lambda fn: fn)
    run = quantize.quantize_pt2e_int8(net, x, [x])
    with torch.no_grad():
        got = run(x)
    assert 0 < (got - ref).abs().max() <= LOGIT_TOL['static']
    assert torch.equal(got.argmax(1), ref.argmax(1))
    # onnxruntime static QDQ
    import onnxruntime as ort
    fp32 = export_module(net, x, str(tmp_path / 'fp32.onnx'))
    path = quantize.quantize_onnx_int8(fp32, str(tmp_path / 'int8.onnx'), [x])
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    ops = {n.op_type for n in __import__('onnx').load(path).graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    assert 0 < (got - ref).abs().max() <= LOGIT_TOL['static']
    assert torch.equal(got.argmax(1), ref.argmax(1))


def test_inference_dtype_hook():
    from mmengine.config import Config
    cfg = Config(dict(custom_hooks=[dict(type='SomeHook')]))
    add_inference_dtype_hook(cfg, 'fp32')
    assert len(cfg.custom_hooks) == 1
    add_inference_dtype_hook(cfg, 'int8')
    assert cfg.custom_hooks[-1] == dict(type='mmbeit.InferenceDtypeHook', dtype='int8')
    with pytest.raises(ValueError, match='inference dtype'):
        InferenceDtypeHook('int4')

    class Net(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def test_step(self, x):
            return self.fc(x)

    class Runner:
        model = Net()

    runner, x = Runner(), torch.randn(2, 4)
    hook = InferenceDtypeHook('bf16')
    hook.before_test(runner)
    assert isinstance(runner.model.fc, torch.nn.Linear)  # bf16 keeps the weights
    with torch.autocast('cpu', enabled=False):  # as mmengine's TestLoop runs test_step
        assert runner.model.test_step(x).dtype == torch.bfloat16
    hook.after_test(runner)
    assert runner.model.test_step(x).dtype == torch.float32
    InferenceDtypeHook('int8').before_test(runner)
    assert isinstance(runner.model.fc, torch.ao.nn.quantized.dynamic.Linear)


def test_tools_test_dtype(tiny, tmp_path):
    """tools/test.py --dtype bf16 / int8 on the sample validation images: the same predictions
    as fp32, scores within the tolerances above."""
    import os
    import pickle
    import subprocess
    import sys

    from mmbeit.utils.sample_data import generate_sample_data
    ckpt, _ = tiny
    data = generate_sample_data(
        str(tmp_path / 'data'), cls_train_per_class=1, cls_val_per_class=2, seg_train=1, seg_val=1)
    preds = {}
    for dtype in ('fp32', 'bf16', 'int8'):
        out = tmp_path / f'{dtype}.pkl'
        proc = subprocess.run([
            sys.executable,
            osp.join(REPO, 'tools', 'test.py'), CLS_TINY, ckpt, '--work-dir',
            str(tmp_path / dtype), '--dtype', dtype, '--out',
            str(out), '--cfg-options', f'test_dataloader.dataset.data_root={data}/imagenet',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'
        ],
                              capture_output=True,
                              text=True,
                              timeout=300,
                              env=dict(os.environ, OMP_NUM_THREADS='1'))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        preds[dtype] = pickle.load(open(out, 'rb'))
    ref = torch.stack([p['pred_score'] for p in preds['fp32']])  # [10, 5]
    for dtype in ('bf16', 'int8'):
        got = torch.stack([p['pred_score'] for p in preds[dtype]]).float()
        assert torch.equal(got.argmax(1), ref.argmax(1))
        assert 0 < (got - ref).abs().max() <= SCORE_TOL[dtype]
