"""Every door x every format: a checkpoint loads completely into a model built from an mmbeit
config, with the source library's outputs, or is refused naming the format and the keys.

Doors: torch ``load_state_dict``, mmengine ``load_checkpoint``, the Runner's ``load_from`` (as
the host tools build it: ``runner_type``), mmpretrain's ``get_model`` and
``ImageClassificationInferencer``, mmseg's ``init_model`` and ``MMSegInferencer``, and
mmpretrain's / mmseg's own ``tools/train.py`` (``load_from``) and ``tools/test.py`` as their
wheels ship them (run in-process; a hook writes the loaded model's outputs). Formats: mmbeit,
mmpretrain, timm, unilm, transformers (classifiers), mmbeit, mmseg, transformers
(segmentors), DALL-E (the tokenizer). Each source checkpoint is made once per session by its
own library with random weights, every parameter moved off its init. No load may print
mmengine's "The model and loaded state dict do not match exactly".
"""
import ast
import os
import os.path as osp
import runpy
import sys
from itertools import count

import pytest
import torch

import mmbeit  # noqa: F401
from helpers import assert_close, randomize_  # tests/helpers.py

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLS_CFG = osp.join(REPO, 'configs/beit/benchmarks/beit-tiny-p8_1xb32-20e_sample.py')
SEG_CFG = osp.join(REPO, 'configs/upernet_beit/upernet_beit-tiny_1xb8-500_sample-64x64.py')
# the arch of both sample configs: BEiT tiny, 8x8 patches of a 64x64 image
C, DEPTH, HEADS, FFN, PATCH, IMG, CLASSES = 64, 4, 4, 256, 8, 64, 5
MISMATCH = 'do not match exactly'
_unique = count()


@pytest.fixture
def logs(monkeypatch, capfd):
    """Everything loading printed or logged: stdout/stderr, and every mmengine print_log call
    (a logger made in an earlier test may write to a stream pytest no longer captures)."""
    import mmengine.logging
    import mmengine.runner.checkpoint
    seen = []
    original = mmengine.logging.print_log

    def record(msg, *args, **kwargs):
        seen.append(str(msg))
        return original(msg, *args, **kwargs)

    monkeypatch.setattr(mmengine.logging, 'print_log', record)
    monkeypatch.setattr(mmengine.runner.checkpoint, 'print_log', record)
    return lambda: ''.join(capfd.readouterr()) + '\n'.join(seen)


def build(scope: str, cfg: dict) -> torch.nn.Module:
    import importlib

    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg).eval()


def build_from_config(path: str) -> torch.nn.Module:
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    return build(cfg.default_scope, cfg.model.to_dict())


# ------------------------------------------------------------------ source checkpoints
def timm_beit(depth: int = DEPTH):
    from timm.models.beit import Beit
    return randomize_(
        Beit(
            img_size=IMG,
            patch_size=PATCH,
            embed_dim=C,
            depth=depth,
            num_heads=HEADS,
            mlp_ratio=FFN / C,
            init_values=0.1,
            use_abs_pos_emb=False,
            use_rel_pos_bias=True,
            num_classes=CLASSES,
            global_pool='avg'),
        seed=1)


def hf_config(**kwargs):
    from transformers import BeitConfig
    cfg = dict(
        hidden_size=C,
        num_hidden_layers=DEPTH,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        image_size=IMG,
        patch_size=PATCH,
        layer_norm_eps=1e-6,
        use_relative_position_bias=True,
        use_mean_pooling=True,
        layer_scale_init_value=0.1,
        num_labels=CLASSES)
    cfg.update(kwargs)
    return BeitConfig(**cfg)


def mmseg_segmentor():
    bn = dict(type='BN', requires_grad=True)
    ce = dict(type='CrossEntropyLoss')
    return randomize_(
        build(
            'mmseg',
            dict(
                type='EncoderDecoder',
                backbone=dict(
                    type='BEiT',
                    img_size=IMG,
                    patch_size=PATCH,
                    embed_dims=C,
                    num_layers=DEPTH,
                    num_heads=HEADS,
                    mlp_ratio=FFN // C,
                    out_indices=(0, 1, 2, 3),
                    init_values=0.1,
                    norm_cfg=dict(type='LN', eps=1e-6)),
                neck=dict(
                    type='Feature2Pyramid', embed_dim=C, rescales=[4, 2, 1, 0.5], norm_cfg=bn),
                decode_head=dict(
                    type='UPerHead',
                    in_channels=[C] * 4,
                    in_index=[0, 1, 2, 3],
                    pool_scales=(1, 2, 3, 6),
                    channels=C,
                    num_classes=CLASSES,
                    norm_cfg=bn,
                    align_corners=False,
                    loss_decode=ce),
                auxiliary_head=dict(
                    type='FCNHead',
                    in_channels=C,
                    in_index=2,
                    channels=32,
                    num_convs=1,
                    concat_input=False,
                    num_classes=CLASSES,
                    norm_cfg=bn,
                    align_corners=False,
                    loss_decode=ce))),
        seed=2)


def _save(obj, path: str) -> str:
    if path.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in obj.items()}, path)
    else:
        torch.save(obj, path)
    return path


@pytest.fixture(scope='session')
def work(tmp_path_factory):
    return tmp_path_factory.mktemp('doors')


@pytest.fixture(scope='session')
def image(work):
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(7))
    path = str(work / 'x.pth')
    torch.save(x, path)
    return x, path


@pytest.fixture(scope='session')
def cls_sources(work, image):
    """format -> (checkpoint file, the source library's logits [2, CLASSES])."""
    x = image[0]
    out = {}
    with torch.no_grad():
        ours = randomize_(build_from_config(CLS_CFG), seed=3)
        out['mmbeit'] = (_save({'state_dict': ours.state_dict()},
                               str(work / 'mmbeit_cls.pth')), ours(x, mode='tensor'))
        ref = randomize_(
            build(
                'mmpretrain',
                dict(
                    type='ImageClassifier',
                    backbone=dict(
                        type='BEiTViT',
                        arch=dict(
                            embed_dims=C,
                            num_layers=DEPTH,
                            num_heads=HEADS,
                            feedforward_channels=FFN),
                        img_size=IMG,
                        patch_size=PATCH,
                        out_type='avg_featmap',
                        use_rel_pos_bias=True,
                        layer_scale_init_value=0.1),
                    head=dict(type='LinearClsHead', num_classes=CLASSES, in_channels=C))),
            seed=4)
        out['mmpretrain'] = (_save({
            'state_dict': ref.state_dict(),
            'meta': {}
        }, str(work / 'mmpretrain_cls.pth')), ref(x, mode='tensor'))
        timm = timm_beit()
        out['timm'] = (_save(timm.state_dict(), str(work / 'timm.pth')), timm(x))
        sd = dict(timm.state_dict())
        for i, block in enumerate(timm.blocks):  # what unilm's scripts save besides timm's keys
            sd[f'blocks.{i}.attn.relative_position_index'] = block.attn.relative_position_index
        out['unilm'] = (_save({'model': sd, 'epoch': 99}, str(work / 'unilm.pth')), timm(x))
        from transformers import BeitForImageClassification
        torch.manual_seed(5)
        hf = randomize_(BeitForImageClassification(hf_config()), seed=5)
        out['transformers'] = (_save(hf.state_dict(),
                                     str(work / 'hf_cls.safetensors')), hf(pixel_values=x).logits)
        # every classifier fine-tuned from microsoft/beit-*-pt22k keeps use_mask_token=True
        hf = randomize_(BeitForImageClassification(hf_config(use_mask_token=True)), seed=12)
        out['transformers (use_mask_token)'] = (_save(hf.state_dict(),
                                                      str(work / 'hf_cls_mask.safetensors')),
                                                hf(pixel_values=x).logits)
    return out


@pytest.fixture(scope='session')
def cls_configs(work):
    """format -> the classifier config its checkpoint is loaded with."""
    mask = work / 'beit-tiny-mask-token.py'  # as a model built from such a folder's config.json
    mask.write_text(f"_base_ = ['{CLS_CFG}']\nmodel = dict(backbone=dict(use_mask_token=True))\n")
    return {'transformers (use_mask_token)': str(mask)}


@pytest.fixture(scope='session')
def seg_sources(work, image):
    """format -> (checkpoint file, the source library's logits [2, CLASSES, 32, 32], config)."""
    x = image[0]
    out = {}
    with torch.no_grad():
        ours = randomize_(build_from_config(SEG_CFG), seed=6)
        out['mmbeit'] = (_save({'state_dict': ours.state_dict()},
                               str(work / 'mmbeit_seg.pth')), ours(x, mode='tensor'), SEG_CFG)
        ref = mmseg_segmentor()
        out['mmseg'] = (_save({
            'state_dict': ref.state_dict(),
            'meta': {}
        }, str(work / 'mmseg.pth')), ref(x, mode='tensor'), SEG_CFG)
        from transformers import BeitForSemanticSegmentation

        # transformers' out_indices entry i is the output of layer i - 2 and i <= num_layers:
        # layers 0..3 are [2, 3, 4, 5], which needs 6 layers (the config says so, below)
        hf = randomize_(
            BeitForSemanticSegmentation(
                hf_config(
                    num_hidden_layers=DEPTH + 2,
                    out_indices=[2, 3, 4, 5],
                    pool_scales=[1, 2, 3, 6],
                    use_auxiliary_head=True,
                    auxiliary_channels=32,
                    auxiliary_num_convs=1,
                    auxiliary_concat_input=False)),
            seed=8)
        cfg = work / 'upernet_beit-tiny6.py'
        cfg.write_text(f"_base_ = ['{SEG_CFG}']\nmodel = dict(backbone=dict(arch=dict("
                       f"_delete_=True, embed_dims={C}, num_layers={DEPTH + 2}, "
                       f"num_heads={HEADS}, feedforward_channels={FFN})))\n")
        out['transformers'] = (_save(hf.state_dict(),
                                     str(work / 'hf_seg.bin')), hf(pixel_values=x).logits, str(cfg))
    return out


@pytest.fixture(scope='session')
def mismatched(work):
    """A timm checkpoint of 3 layers: it cannot fit the 4-layer configs."""
    return _save(timm_beit(depth=3).state_dict(), str(work / 'timm_3_layers.pth'))


@pytest.fixture(scope='session')
def sample_root(work):
    from mmbeit.utils.sample_data import generate_sample_data
    root = work / 'sample'
    generate_sample_data(
        str(root), cls_train_per_class=1, cls_val_per_class=1, seg_train=2, seg_val=1)
    return str(root)


# ---------------------------------------------------------------------------- doors
def _tensor_file(path: str):
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    return torch.load(path, map_location='cpu', weights_only=True)


def door_torch(cfg: str, ckpt: str, **_):
    model = build_from_config(cfg)
    model.load_state_dict(_tensor_file(ckpt))  # strict=True
    return model


def door_mmengine(cfg: str, ckpt: str, **_):
    from mmengine.runner import load_checkpoint
    model = build_from_config(cfg)
    load_checkpoint(model, ckpt, map_location='cpu')  # strict=False, as every host door
    return model


def door_runner(cfg: str, ckpt: str, work, **_):
    """As the host tools build it: RUNNERS.build(cfg) when the config has runner_type."""
    from mmengine.config import Config
    from mmengine.registry import RUNNERS
    config = Config.fromfile(cfg)
    config.work_dir = str(work / f'runner{next(_unique)}')
    config.load_from = ckpt
    config.visualizer.name = f'vis_door{next(_unique)}'
    runner = RUNNERS.build(config)
    assert type(runner).__name__ == 'BEiTRunner'
    runner.load_or_resume()
    return runner.model


def door_get_model(cfg: str, ckpt: str, **_):
    from mmpretrain import get_model
    return get_model(cfg, pretrained=ckpt, device='cpu')


def door_mmbeit_get_model(cfg: str, ckpt: str, **_):
    from mmbeit.apis import get_model
    return get_model(cfg, pretrained=ckpt)


def door_cls_inferencer(cfg: str, ckpt: str, **_):
    from mmpretrain import ImageClassificationInferencer
    return ImageClassificationInferencer(cfg, pretrained=ckpt, device='cpu').model


def door_init_model(cfg: str, ckpt: str, **_):
    from mmseg.apis import init_model
    return init_model(cfg, ckpt, device='cpu')


def door_seg_inferencer(cfg: str, ckpt: str, **_):
    from mmseg.apis import MMSegInferencer
    return MMSegInferencer(model=cfg, weights=ckpt, device='cpu').model


def _host_tool(lib: str, tool: str, cfg: str, ckpt: str, work, x_path: str, sample_root: str,
               monkeypatch) -> torch.Tensor:
    """Run ``<lib>/.mim/tools/<tool>`` in-process on a config that adds the dump hook."""
    import importlib
    n = next(_unique)
    out, run_dir = str(work / f'{lib}_{tool}_{n}.pth'), str(work / f'{lib}_{tool}_{n}')
    data = osp.join(sample_root, 'ade' if lib == 'mmseg' else 'imagenet')
    loader = (f"dict(dataset=dict(data_root='{data}'), batch_size=1, num_workers=0, "
              'persistent_workers=False)')
    text = '\n'.join([
        f"_base_ = ['{cfg}']",
        *(f'{name} = {loader}'
          for name in ('train_dataloader', 'val_dataloader', 'test_dataloader')),
        "custom_imports = dict(imports=['mmbeit', 'door_dump_hook'], allow_failed_imports=False)",
        f"custom_hooks = [dict(type='DoorDumpHook', input_path='{x_path}', out_path='{out}')]",
        f"visualizer = dict(name='vis_tool{n}')",
    ])
    config = work / f'tool_cfg{n}.py'
    config.write_text(text)
    script = osp.join(osp.dirname(importlib.import_module(lib).__file__), '.mim', 'tools', tool)
    argv = [script, str(config)] + ([ckpt] if tool == 'test.py' else [])
    argv += ['--work-dir', run_dir]
    if tool == 'train.py':
        argv += ['--cfg-options', f'load_from={ckpt}']
    monkeypatch.syspath_prepend(osp.join(REPO, 'tests', 'data'))
    monkeypatch.setattr(sys, 'argv', argv)
    runpy.run_path(script, run_name='__main__')
    return torch.load(out, weights_only=True)


def door_tool(lib: str, tool: str):

    def door(cfg, ckpt, work, x_path, sample_root, monkeypatch, **_):
        return _host_tool(lib, tool, cfg, ckpt, work, x_path, sample_root, monkeypatch)

    door.tool = True
    return door


COMMON = {
    'torch load_state_dict': door_torch,
    'mmengine load_checkpoint': door_mmengine,
    'Runner load_from': door_runner
}
CLS_DOORS = dict(
    COMMON, **{
        'mmpretrain get_model': door_get_model,
        'mmbeit get_model': door_mmbeit_get_model,
        'ImageClassificationInferencer': door_cls_inferencer,
        'mmpretrain tools/train.py': door_tool('mmpretrain', 'train.py'),
        'mmpretrain tools/test.py': door_tool('mmpretrain', 'test.py')
    })
SEG_DOORS = dict(
    COMMON, **{
        'mmseg init_model': door_init_model,
        'mmbeit get_model': door_mmbeit_get_model,
        'MMSegInferencer': door_seg_inferencer,
        'mmseg tools/train.py': door_tool('mmseg', 'train.py'),
        'mmseg tools/test.py': door_tool('mmseg', 'test.py')
    })
CLS_FORMATS = ('mmbeit', 'mmpretrain', 'timm', 'unilm', 'transformers',
               'transformers (use_mask_token)')
SEG_FORMATS = ('mmbeit', 'mmseg', 'transformers')


def _outputs(door, cfg, ckpt, x, **kw) -> torch.Tensor:
    result = door(cfg, ckpt, **kw)
    if getattr(door, 'tool', False):
        return result
    with torch.no_grad():
        return result.eval()(x, mode='tensor')


def _kwargs(work, image, sample_root, monkeypatch):
    return dict(work=work, x_path=image[1], sample_root=sample_root, monkeypatch=monkeypatch)


@pytest.mark.parametrize('fmt', CLS_FORMATS)
@pytest.mark.parametrize('door', list(CLS_DOORS))
def test_classifier_door(door, fmt, cls_sources, cls_configs, image, work, sample_root, monkeypatch,
                         logs):
    ckpt, expected = cls_sources[fmt]
    got = _outputs(CLS_DOORS[door], cls_configs.get(fmt, CLS_CFG), ckpt, image[0],
                   **_kwargs(work, image, sample_root, monkeypatch))
    assert_close(got, expected)
    assert MISMATCH not in logs()


@pytest.mark.parametrize('fmt', SEG_FORMATS)
@pytest.mark.parametrize('door', list(SEG_DOORS))
def test_segmentor_door(door, fmt, seg_sources, image, work, sample_root, monkeypatch, logs):
    ckpt, expected, cfg = seg_sources[fmt]
    got = _outputs(SEG_DOORS[door], cfg, ckpt, image[0],
                   **_kwargs(work, image, sample_root, monkeypatch))
    assert_close(got, expected)
    assert MISMATCH not in logs()


@pytest.mark.parametrize('door', list(dict(CLS_DOORS, **SEG_DOORS)))
def test_mismatch_is_refused_naming_format_and_keys(door, mismatched, image, work, sample_root,
                                                    monkeypatch, logs):
    from mmbeit.converters import CheckpointMismatchError

    # the common doors run here with the classifier config, below with the segmentor's
    fn, cfg = (CLS_DOORS[door], CLS_CFG) if door in CLS_DOORS else (SEG_DOORS[door], SEG_CFG)
    with pytest.raises(CheckpointMismatchError, match=r'(?s)timm format.*missing.*layers\.3\.'):
        _outputs(fn, cfg, mismatched, image[0], **_kwargs(work, image, sample_root, monkeypatch))
    assert MISMATCH not in logs()


def test_common_doors_refuse_for_segmentors_too(mismatched, image, work, sample_root, monkeypatch):
    from mmbeit.converters import CheckpointMismatchError
    for door in COMMON.values():
        with pytest.raises(CheckpointMismatchError, match=r'(?s)timm format.*layers\.3\.'):
            _outputs(door, SEG_CFG, mismatched, image[0],
                     **_kwargs(work, image, sample_root, monkeypatch))


def test_capture_sees_the_mismatch_warning_of_a_plain_host_root(cls_sources, logs):
    """Control: the check above would see mmengine's warning. A plain ``ImageClassifier`` (not
    mmbeit's root) cannot see timm's top-level keys; mmengine then warns (and loads nothing)."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(CLS_CFG).model.to_dict()
    cfg['type'] = 'ImageClassifier'
    model = build('mmpretrain', cfg)
    load_checkpoint(model, cls_sources['timm'][0], map_location='cpu')
    assert MISMATCH in logs()


def test_host_root_gets_backbone_formats_through_the_backbone_hook(cls_sources, image, logs):
    """mmpretrain's keys sit under ``backbone.``: the backbone's own hook converts them even in
    a plain ``ImageClassifier``."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(CLS_CFG).model.to_dict()
    cfg['type'] = 'ImageClassifier'
    model = build('mmpretrain', cfg)
    ckpt, expected = cls_sources['mmpretrain']
    load_checkpoint(model, ckpt, map_location='cpu')
    with torch.no_grad():
        assert_close(model(image[0], mode='tensor'), expected)
    assert MISMATCH not in logs()


# --------------------------------------------------------------------- the tokenizer
@pytest.mark.parametrize('door', ['torch load_state_dict', 'mmengine load_checkpoint'])
def test_dalle_encoder_door(door, work, logs):
    import dall_e  # requirements/tests.txt

    from mmbeit.models.target_generators.dalle_encoder import DALLEEncoder
    torch.manual_seed(0)
    ref = randomize_(dall_e.Encoder(n_hid=32, n_blk_per_group=1, vocab_size=64), seed=9)
    path = _save(ref.state_dict(), str(work / 'dalle.pth'))
    model = DALLEEncoder(n_hid=32, n_blk_per_group=1, vocab_size=64, init_seed=1)
    if door == 'torch load_state_dict':
        model.load_state_dict(_tensor_file(path))
    else:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, path, map_location='cpu')
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 0.8 + 0.1
    with torch.no_grad():
        assert_close(model.logits(x), ref(x))
    assert MISMATCH not in logs()


# ---------------------------------------------------------------------- import graph
def _converters_graph() -> dict:
    """module -> the mmbeit.converters modules it imports (any import, at any level)."""
    pkg = osp.join(REPO, 'mmbeit', 'converters')
    names = {f[:-3] for f in os.listdir(pkg) if f.endswith('.py')}
    graph = {}
    for name in names:
        tree = ast.parse(open(osp.join(pkg, name + '.py')).read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ''
                if node.level == 1:
                    if mod:
                        deps.add(mod.split('.')[0])
                    else:  # from . import x: a module, or a name of the package
                        deps.update(a.name if a.name in names else '__init__' for a in node.names)
                elif mod == 'mmbeit.converters':
                    deps.update(a.name if a.name in names else '__init__' for a in node.names)
                elif mod.startswith('mmbeit.converters.'):
                    deps.add(mod.split('.')[2])
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith('mmbeit.converters.'):
                        deps.add(a.name.split('.')[2])
                    elif a.name == 'mmbeit.converters':
                        deps.add('__init__')
        graph[name] = deps - {name}
    return graph


def test_converters_import_graph_has_no_cycle():
    graph = _converters_graph()
    assert {'read', 'detect', 'convert', 'fit', 'load'} <= set(graph)
    state = {}

    def visit(node, path):
        state[node] = 'open'
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 'open':
                raise AssertionError(f'import cycle: {" -> ".join(path + [node, dep])}')
            if dep not in state:
                visit(dep, path + [node])
        state[node] = 'done'

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    # the stages import only the stages before them
    order = ['read', 'detect', 'convert', 'fit', 'load']
    for i, stage in enumerate(order):
        assert not graph[stage] & set(order[i + 1:]), (stage, graph[stage])


# ------------------------------------------------------------ across tasks, and mim
@pytest.mark.parametrize('door', ['mmengine load_checkpoint', 'mmseg init_model'])
def test_classifier_checkpoint_starts_a_segmentor(door, cls_sources, logs):
    """Fine-tuning a segmentor from a timm classifier: the backbone loads completely (equal to
    what a bare BEiT gets), the neck and heads keep their initialization, named in the log."""
    from mmbeit.converters import load_pretrained
    from mmbeit.models.backbones.beit import BEiT
    ckpt = cls_sources['timm'][0]
    torch.manual_seed(11)  # the same initialization for both builds
    init = build_from_config(SEG_CFG).state_dict()
    torch.manual_seed(11)
    model = SEG_DOORS[door](SEG_CFG, ckpt)
    bare = BEiT(arch='tiny', img_size=IMG, patch_size=PATCH, out_type='featmap', final_norm=False)
    load_pretrained(bare, ckpt)
    for k, v in bare.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k
    for k, v in model.state_dict().items():
        if k.startswith(('neck.', 'decode_head.', 'auxiliary_head.')):
            assert torch.equal(v, init[k]), k
    out = logs()
    assert 'decode_head.* keeps its initialization' in out and 'timm format' in out
    assert MISMATCH not in out


def test_mim_train_and_test(cls_sources, image, work, sample_root):
    """OpenMMLab's ``mim train/test`` run the host tools in a subprocess: the same Runner load.

    openmim is not a dependency: ``pip install openmim`` downgrades setuptools, urllib3 and
    requests (openxlab's pins) below what torch 2.14 needs; ``pip install --no-deps openmim
    model-index`` works."""
    pytest.importorskip('mim', reason='pip install --no-deps openmim model-index')
    import subprocess
    ckpt, expected = cls_sources['timm']
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([REPO, osp.join(REPO, 'tests', 'data')] + sys.path))
    data = osp.join(sample_root, 'imagenet')
    loader = (f"dict(dataset=dict(data_root='{data}'), batch_size=1, num_workers=0, "
              'persistent_workers=False)')
    for cmd in ('train', 'test'):
        out, cfg = str(work / f'mim_{cmd}.pth'), work / f'mim_{cmd}_cfg.py'
        cfg.write_text('\n'.join(
            [f"_base_ = ['{CLS_CFG}']"] +
            [f'{n} = {loader}'
             for n in ('train_dataloader', 'val_dataloader', 'test_dataloader')] + [
                 "custom_imports = dict(imports=['mmbeit', 'door_dump_hook'], "
                 'allow_failed_imports=False)',
                 f"custom_hooks = [dict(type='DoorDumpHook', input_path='{image[1]}', "
                 f"out_path='{out}')]"
             ]))
        args = [
            sys.executable, '-m', 'mim', cmd, 'mmpretrain',
            str(cfg), '--work-dir',
            str(work / f'mim_{cmd}')
        ]
        args += (['--cfg-options', f'load_from={ckpt}']
                 if cmd == 'train' else ['--checkpoint', ckpt])
        p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
        assert MISMATCH not in p.stdout + p.stderr
        assert_close(torch.load(out, weights_only=True), expected)


# -------------------------------------------------------------------- pretraining
PRE_CFG = osp.join(REPO, 'configs/beit/beit_beit-tiny-p8_1xb32-10e_sample.py')


@pytest.fixture(scope='session')
def pre_sources(work, image):
    """format -> (checkpoint, the source's token logits [2, N, 512] of masked inputs, mask)."""
    x = image[0]
    mask = torch.rand(2, (IMG // PATCH)**2, generator=torch.Generator().manual_seed(3)) < 0.4
    out = {}
    with torch.no_grad():
        ours = randomize_(build_from_config(PRE_CFG), seed=10)
        out['mmbeit'] = (_save({'state_dict': ours.state_dict()},
                               str(work / 'mmbeit_pre.pth')), ours.mim_logits(x, mask))
        from transformers import BeitForMaskedImageModeling
        hf = randomize_(
            BeitForMaskedImageModeling(
                hf_config(
                    vocab_size=512,
                    use_mask_token=True,
                    use_shared_relative_position_bias=True,
                    use_relative_position_bias=False)),
            seed=11)
        out['transformers'] = (_save(hf.state_dict(), str(work / 'hf_mim.safetensors')),
                               hf(pixel_values=x, bool_masked_pos=mask).logits)
    return out, mask


@pytest.mark.parametrize('fmt', ['mmbeit', 'transformers'])
@pytest.mark.parametrize('door', list(COMMON))
def test_pretrain_door(door, fmt, pre_sources, image, work, sample_root, monkeypatch, logs):
    sources, mask = pre_sources
    ckpt, expected = sources[fmt]
    model = COMMON[door](PRE_CFG, ckpt, **_kwargs(work, image, sample_root, monkeypatch))
    with torch.no_grad():
        assert_close(model.eval().mim_logits(image[0], mask), expected)
    text = logs()
    assert MISMATCH not in text
    if fmt == 'transformers':  # it has no tokenizer: kept at init, by name
        assert 'target_generator.* keeps its initialization' in text


# ------------------------------------------------ what the checkpoint lacks: said once
@pytest.fixture
def warnings_logged(monkeypatch):
    """The WARNING (and higher) messages loading gave mmengine's print_log."""
    import logging

    import mmengine.logging
    import mmengine.runner.checkpoint
    seen = []
    original = mmengine.logging.print_log

    def record(msg, logger=None, level=logging.INFO):
        if level >= logging.WARNING:
            seen.append(str(msg))
        return original(msg, logger=logger, level=level)

    monkeypatch.setattr(mmengine.logging, 'print_log', record)
    monkeypatch.setattr(mmengine.runner.checkpoint, 'print_log', record)
    return seen


def _kept_warnings(seen):
    return [m for m in seen if 'random initialisation' in m]


@pytest.mark.parametrize('door', [d for d, fn in CLS_DOORS.items() if not getattr(fn, 'tool', 0)])
def test_segmentation_checkpoint_into_a_classifier_warns_once(door, seg_sources, image, work,
                                                              sample_root, monkeypatch,
                                                              warnings_logged, logs):
    """mmseg's UperNet-BEiT as a classifier's weights: the backbone loads, the head stays random,
    and one plain WARNING says so, naming the head."""
    ckpt = seg_sources['mmseg'][0]
    _outputs(CLS_DOORS[door], CLS_CFG, ckpt, image[0],
             **_kwargs(work, image, sample_root, monkeypatch))
    kept = _kept_warnings(warnings_logged)
    assert len(kept) == 1, warnings_logged
    assert kept[0].startswith('the classification head (head.fc) is not in ')
    assert 'keeps its random initialisation; fine-tune it or load a classification checkpoint' \
        in kept[0]
    assert MISMATCH not in logs()


@pytest.mark.parametrize('door', list(COMMON) + ['mmseg init_model', 'mmbeit get_model'])
def test_classifier_checkpoint_into_a_segmentor_warns_once(door, cls_sources, image, work,
                                                           sample_root, monkeypatch,
                                                           warnings_logged):
    _outputs(SEG_DOORS[door], SEG_CFG, cls_sources['mmpretrain'][0], image[0],
             **_kwargs(work, image, sample_root, monkeypatch))
    kept = _kept_warnings(warnings_logged)
    assert len(kept) == 1, warnings_logged
    for part in ('the segmentation neck (neck.*)', 'the decode head (UPerHead) (decode_head.*)',
                 'the auxiliary head (FCNHead) (auxiliary_head.*)'):
        assert part in kept[0]
    assert 'keep their random initialisation; fine-tune them or load a segmentation' in kept[0]


@pytest.mark.parametrize('door', list(COMMON) + ['mmbeit get_model'])
def test_pretraining_checkpoint_into_a_classifier_warns_once(door, pre_sources, image, work,
                                                             sample_root, monkeypatch,
                                                             warnings_logged):
    _outputs(CLS_DOORS[door], CLS_CFG, pre_sources[0]['mmbeit'][0], image[0],
             **_kwargs(work, image, sample_root, monkeypatch))
    kept = _kept_warnings(warnings_logged)
    assert len(kept) == 1, warnings_logged
    assert 'the classification head (head.fc)' in kept[0] and 'classification checkpoint' in kept[0]


def test_complete_load_gives_no_kept_warning(cls_sources, warnings_logged):
    door_mmengine(CLS_CFG, cls_sources['timm'][0])
    assert not _kept_warnings(warnings_logged)


# ------------------------------------------------------- another model's checkpoint
@pytest.fixture(scope='session')
def vit_file(work):
    """A timm ViT (vit_tiny_patch16_224's design at the test size): not a BEiT."""
    from timm.models.vision_transformer import VisionTransformer
    vit = randomize_(
        VisionTransformer(
            img_size=IMG,
            patch_size=PATCH,
            embed_dim=C,
            depth=DEPTH,
            num_heads=HEADS,
            num_classes=CLASSES),
        seed=13)
    return _save(vit.state_dict(), str(work / 'vit_tiny.pth'))


@pytest.mark.parametrize('door', list(dict(CLS_DOORS, **SEG_DOORS)))
def test_a_vit_is_refused_naming_the_file_and_what_it_is(door, vit_file, image, work, sample_root,
                                                         monkeypatch, logs):
    from mmbeit.converters import CheckpointMismatchError
    fn, cfg = (CLS_DOORS[door], CLS_CFG) if door in CLS_DOORS else (SEG_DOORS[door], SEG_CFG)
    with pytest.raises(CheckpointMismatchError) as info:
        _outputs(fn, cfg, vit_file, image[0], **_kwargs(work, image, sample_root, monkeypatch))
    msg = str(info.value)
    assert 'is a ViT' in msg and 'no relative position bias' in msg and 'not a BEiT' in msg
    assert 'Expected a BEiT checkpoint' in msg
    if door != 'torch load_state_dict':  # torch.load read it, not mmbeit: no file to name
        assert vit_file in msg
    assert MISMATCH not in logs()


def test_a_vit_read_by_mmbeit_is_named_at_the_torch_door(vit_file):
    from mmbeit.converters import CheckpointMismatchError
    from mmbeit.utils.checkpoint_io import load_checkpoint_file
    model = build_from_config(CLS_CFG)
    with pytest.raises(CheckpointMismatchError, match=rf'{vit_file} is a ViT'):
        model.load_state_dict(load_checkpoint_file(vit_file))


def test_transformers_folder_with_a_mask_token_loads_as_a_classifier(work, image, logs):
    """Classifiers fine-tuned from microsoft/beit-*-pt22k keep ``use_mask_token=True``: the model
    built from such a folder has a mask token and is still a classifier (head loaded)."""
    from transformers import BeitForImageClassification

    from mmbeit.apis import get_model
    hf = randomize_(BeitForImageClassification(hf_config(use_mask_token=True)), seed=14)
    folder = str(work / 'hf_cls_mask_folder')
    hf.save_pretrained(folder)
    model = get_model(folder, pretrained=True)
    assert model.backbone.mask_token is not None
    with torch.no_grad():
        assert_close(model(image[0], mode='tensor'), hf(pixel_values=image[0]).logits)
    text = logs()
    assert 'as a classifier' in text and 'random initialisation' not in text


@pytest.mark.parametrize('door', ['mmbeit get_model', 'mmengine load_checkpoint'])
def test_own_checkpoint_of_a_classifier_with_a_mask_token_round_trips(door, cls_sources,
                                                                      cls_configs, image, work,
                                                                      warnings_logged):
    """Saved after loading such a folder (or fine-tuning from it): mmbeit's own keys with a mask
    token and a classifier head load back as they are, not as a pretraining model's head."""
    cfg = cls_configs['transformers (use_mask_token)']
    ckpt, expected = cls_sources['transformers (use_mask_token)']
    model = door_mmbeit_get_model(cfg, ckpt)
    own = _save({'state_dict': model.state_dict()}, str(work / f'own_mask_{next(_unique)}.pth'))
    with torch.no_grad():
        assert_close(CLS_DOORS[door](cfg, own).eval()(image[0], mode='tensor'), expected)
    assert not _kept_warnings(warnings_logged)


def test_no_init_and_assign_build_the_same_model(cls_sources, seg_sources, image, work):
    """A model built without initial weights and given the mapped file's tensors (no copy) has
    the source's outputs; a checkpoint that lacks a part of it is refused, not left garbage."""
    from mmbeit.converters import CheckpointMismatchError
    from mmbeit.converters.load import load_pretrained, no_init
    for fmt in ('transformers', 'mmbeit'):
        ckpt, expected = cls_sources[fmt]
        with no_init():
            model = build_from_config(CLS_CFG)
        load_pretrained(model, ckpt, assign=True, uninitialized=True)
        ptrs = [p.data_ptr() for p in model.parameters()]
        assert len(set(ptrs)) == len(ptrs)  # no two parameters share memory
        with torch.no_grad():
            assert_close(model.eval()(image[0], mode='tensor'), expected)
    half = _save(
        {
            k: v.half()
            for k, v in torch.load(cls_sources['mmbeit'][0])['state_dict'].items()
        }, str(work / 'mmbeit_cls_fp16.pth'))
    with no_init():
        model = build_from_config(CLS_CFG)
    load_pretrained(model, half, assign=True, uninitialized=True)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the model's dtype kept
    with no_init():
        model = build_from_config(CLS_CFG)
    with pytest.raises(
            CheckpointMismatchError,
            match=r'does not hold the classification head '
            r'\(head\.fc\).*built without initial weights'):
        load_pretrained(model, seg_sources['mmseg'][0], assign=True, uninitialized=True)
