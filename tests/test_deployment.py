"""ONNX / torch.export deployment: tools/deployment/pytorch2onnx.py, onnxruntime parity with
PyTorch (max abs diff <= 1e-4) at several sizes, and inference_model on an .onnx file.

Models get random weights with every parameter and norm statistic moved off its init, saved
as a checkpoint that the tool loads like any other.
"""
import os.path as osp
import runpy
import sys

import numpy as np
import onnxruntime  # noqa: F401  (requirements/deploy.txt, in tests.txt: fails where missing)
import onnxscript  # noqa: F401
import pytest
import torch

from mmbeit.apis import get_model, inference_model
from mmbeit.deployment import build_onnx_model, export_model, wrap_for_export
from mmbeit.deployment.export import check_exported, export_module

pytestmark = pytest.mark.export  # tiers: tests/conftest.py, docs/testing.md

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO, 'tools', 'deployment', 'pytorch2onnx.py')
CLS_TINY = osp.join(REPO, 'configs/beit/benchmarks/beit-tiny-p8_1xb32-20e_sample.py')
SEG_TINY = osp.join(REPO, 'configs/upernet_beit/upernet_beit-tiny_1xb8-500_sample-64x64.py')
CLS_BASE = osp.join(REPO, 'configs/beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py')
SEG_BASE_640 = osp.join(REPO, 'configs/upernet_beit/upernet_beit-base_8xb2-160k_ade20k-640x640.py')
TOL = 1e-4


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every float parameter and norm statistic moved off its init, activations kept O(1)."""
    gen = torch.Generator().manual_seed(seed)
    norms = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm)
    with torch.no_grad():
        for m in module.modules():
            for name, t in (list(m.named_parameters(recurse=False)) +
                            list(m.named_buffers(recurse=False))):
                if not t.is_floating_point():
                    continue
                noise = torch.randn(t.shape, generator=gen)
                if name == 'running_var':
                    t.copy_(1 + 0.2 * noise.abs())
                elif isinstance(m, norms) and name == 'weight':
                    t.copy_(1 + 0.1 * noise)
                elif isinstance(m, norms) or name in ('running_mean', 'bias'):
                    t.copy_(0.1 * noise)
                elif name in ('mean', 'std'):  # the data preprocessor's constants
                    continue
                else:  # weights, tables, tokens, layer scales: the init's scale, new values
                    fan_in = t[0].numel() if t.dim() > 1 else t.numel()
                    t.copy_(noise / max(fan_in, 1)**0.5)
    return module


def _checkpoint(config: str, path: str) -> str:
    model = randomize_(get_model(config))
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def _tool(*args: str) -> int:
    """Run the CLI in this process (its exit status)."""
    argv = sys.argv
    sys.argv = [TOOL, *args]
    try:
        runpy.run_path(TOOL, run_name='__main__')
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        sys.argv = argv
    return 0


def _onnx_vs_torch(path: str, config: str, ckpt: str, shapes) -> list:
    module = wrap_for_export(get_model(config, pretrained=ckpt))
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.randn(*s, generator=gen) for s in shapes]
    return check_exported(path, module, inputs, 'onnx')


@pytest.fixture(scope='module')
def cls_tiny(tmp_path_factory):
    """The tiny classifier exported with --dynamic by the CLI."""
    d = tmp_path_factory.mktemp('cls_tiny')
    ckpt = _checkpoint(CLS_TINY, str(d / 'cls.pth'))
    out = str(d / 'cls.onnx')
    assert _tool(CLS_TINY, ckpt, '--out', out, '--dynamic') == 0
    return ckpt, out


@pytest.fixture(scope='module')
def seg_tiny(tmp_path_factory):
    """The tiny UperNet exported with --dynamic by the CLI."""
    d = tmp_path_factory.mktemp('seg_tiny')
    ckpt = _checkpoint(SEG_TINY, str(d / 'seg.pth'))
    out = str(d / 'seg.onnx')
    assert _tool(SEG_TINY, ckpt, '--out', out, '--dynamic') == 0
    return ckpt, out


# three sizes (one non-square, one a batch of 2), none of them the traced 2x64x64
TINY_SHAPES = [(1, 3, 64, 64), (2, 3, 96, 48), (1, 3, 40, 72)]


def test_classifier_dynamic_onnx_matches_torch(cls_tiny):
    ckpt, out = cls_tiny
    checks = _onnx_vs_torch(out, CLS_TINY, ckpt, TINY_SHAPES)
    assert [s for s, _ in checks] == TINY_SHAPES
    assert max(d for _, d in checks) <= TOL, checks


def test_segmentor_dynamic_onnx_matches_torch(seg_tiny):
    ckpt, out = seg_tiny
    checks = _onnx_vs_torch(out, SEG_TINY, ckpt, TINY_SHAPES)
    assert max(d for _, d in checks) <= TOL, checks


def test_inference_model_onnx_classification(cls_tiny):
    ckpt, out = cls_tiny
    image = np.random.default_rng(0).integers(0, 256, (80, 72, 3), dtype=np.uint8)
    ref = inference_model(CLS_TINY, image, checkpoint=ckpt)
    got = inference_model(out, image, config=CLS_TINY)
    assert got['pred_label'] == ref['pred_label']
    assert got['pred_class'] == ref['pred_class'] is not None
    np.testing.assert_allclose(got['pred_scores'], ref['pred_scores'], atol=TOL)


def test_inference_model_onnx_segmentation(seg_tiny):
    ckpt, out = seg_tiny
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ref = inference_model(SEG_TINY, image, checkpoint=ckpt)
    got = inference_model(out, image, config=SEG_TINY)
    assert got['pred_mask'].shape == ref['pred_mask'].shape == (48, 64)
    logits = ref['seg_logits']  # [K, H, W]
    assert float((got['seg_logits'] - logits).abs().max()) <= TOL
    top2 = logits.topk(2, dim=0).values
    decided = (top2[0] - top2[1] > 10 * TOL).numpy()  # pixels without a near-tie
    assert decided.mean() > 0.99
    assert (got['pred_mask'] == ref['pred_mask'])[decided].all()
    model = build_onnx_model(out, SEG_TINY)
    assert model.dataset_meta['classes'][1] == 'circle'


def test_fixed_shape_export_and_mismatch_error(tmp_path, cls_tiny, capsys):
    """A fixed-shape export runs at its shape only; a check above --tol exits with 1."""
    ckpt, _ = cls_tiny
    out = str(tmp_path / 'fixed.onnx')
    # a negative tolerance fails every check: the tool reports it and exits with 1
    assert _tool(CLS_TINY, ckpt, '--out', out, '--shape', '64', '48', '--tol', '-1') == 1
    assert 'max abs diff' in capsys.readouterr().err
    checks = _onnx_vs_torch(out, CLS_TINY, ckpt, [(1, 3, 64, 48)])
    assert checks[0][1] <= TOL
    model = build_onnx_model(out, CLS_TINY)
    with pytest.raises(ValueError, match='fixed shape'):
        model.run(torch.zeros(1, 3, 64, 64))
    with pytest.raises(NotImplementedError, match='slide'):
        build_onnx_model(out, SEG_BASE_640)


def test_pt2_round_trip(tmp_path, cls_tiny):
    ckpt, _ = cls_tiny
    out = str(tmp_path / 'cls.pt2')
    model = get_model(CLS_TINY, pretrained=ckpt)
    result = export_model(model, out, fmt='pt2', dynamic=True)
    assert result.max_abs_diff <= TOL
    program = torch.export.load(out).module()
    module = wrap_for_export(model)
    x = torch.randn(2, 3, 40, 72)
    with torch.no_grad():
        assert float((program(x) - module(x)).abs().max()) <= TOL


def test_base_classifier_dynamic(tmp_path):
    """BEiT-B exported once with dynamic=True (the CLI's path, minus the argument parsing the
    tiny fixtures cover): the export's own checks (traced 2x224x224, non-square 256x192) and
    a third size, all on the same file and model."""
    model = randomize_(get_model(CLS_BASE))
    result = export_model(model, str(tmp_path / 'base.onnx'), dynamic=True)
    assert [s for s, _ in result.checks] == [(2, 3, 224, 224), (1, 3, 256, 192)]
    gen = torch.Generator().manual_seed(1)
    checks = result.checks + check_exported(result.path, wrap_for_export(model),
                                            [torch.randn(1, 3, 128, 160, generator=gen)])
    assert len(checks) == 3 and max(d for _, d in checks) <= TOL, checks


def test_upernet_base_640_fixed_shape(tmp_path):
    """UperNet-BEiT-B traced at 640x640 (whole-image forward), one input checked."""
    model = randomize_(get_model(SEG_BASE_640))
    module = wrap_for_export(model)
    x = torch.randn(1, 3, 640, 640, generator=torch.Generator().manual_seed(0))
    out = export_module(module, x, str(tmp_path / 'upernet_b_640.onnx'), multiple=16)
    (_, diff), = check_exported(out, module, [x])
    assert diff <= TOL


def test_exportable_adaptive_pool_equals_torch():
    from mmbeit.deployment.wrappers import _adaptive_pool_matrix
    for H, W in [(4, 4), (5, 3), (7, 11), (1, 2), (20, 20)]:
        x = torch.randn(2, 3, H, W)
        for s in (1, 2, 3, 6):
            got = _adaptive_pool_matrix(s, H, x) @ x @ _adaptive_pool_matrix(s, W, x).t()
            assert float((torch.nn.functional.adaptive_avg_pool2d(x, s) - got).abs().max()) < 1e-6
