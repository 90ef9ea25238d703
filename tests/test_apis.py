"""mmbeit.apis: list_models, get_model (names, configs, pretrained from a local server),
inference_model (class names, arrays, the ImageNet-22k names, segmentation dispatch)."""
import hashlib
import os
import os.path as osp
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

from mmbeit.apis import builder, get_model, inference_model, list_models, model_zoo
from mmbeit.utils.sample_data import SAMPLE_CLS_CLASSES, draw_cls_image
from helpers import serve_folder as serve  # tests/helpers.py

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCH = osp.join(ROOT, 'configs', 'beit', 'benchmarks')
TINY_CFG = osp.join(BENCH, 'beit-tiny-p8_1xb32-20e_sample.py')
TINY_ARCH = dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=256)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('MMBEIT_CACHE_DIR', str(tmp_path / 'cache'))


@pytest.fixture
def circle_png(tmp_path):
    img = draw_cls_image(np.random.default_rng(0), 'circle', 64)  # RGB
    path = tmp_path / 'circle.png'
    Image.fromarray(img).save(path)
    return str(path)


def _mmpretrain_classifier(num_classes: int) -> torch.nn.Module:
    """mmpretrain's own BEiT classifier (its BEiTViT), random weights."""
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=dict(
                    type='BEiTViT',
                    arch=dict(TINY_ARCH),
                    img_size=64,
                    patch_size=8,
                    out_type='avg_featmap',
                    use_rel_pos_bias=True),
                head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=64)))
    with torch.no_grad():  # non-trivial values everywhere, so that a wrong mapping shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def _save_hashed(obj, folder, stem: str) -> str:
    """torch.save under ``stem-<sha256 prefix>.pth`` (torch.hub's naming); return the name."""
    tmp = osp.join(folder, 'tmp.pth')
    torch.save(obj, tmp)
    with open(tmp, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    name = f'{stem}-{digest[:8]}.pth'
    import os
    os.replace(tmp, osp.join(folder, name))
    return name


# ------------------------------------------------------------------------- list_models
def test_list_models():
    names = list_models()
    assert names == sorted(names) and len(set(names)) == len(names)
    assert 'beit-base-p16_beit-pre_8xb128-coslr-100e_in1k' in names
    base = list_models('beit-base')
    assert base and all(n.startswith('beit-base') for n in base)
    assert list_models('BEIT_BEIT-BASE') == [
        'beit_beit-base-p16_3rdparty_in21k', 'beit_beit-base-p16_8xb256-amp-coslr-300e_in1k'
    ]
    assert list_models('*384px') == ['beit-base-p16_beit-in21k-pre_3rdparty_in1k-384px']
    cls = list_models('beit', task='Image Classification')
    assert 'beit-base-p16_beit-in21k-pre_3rdparty_in1k' in cls
    assert 'beit_beit-base-p16_8xb256-amp-coslr-300e_in1k' not in cls  # no results: MIM
    assert list_models('no-such-model') == []


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match='close names.*beit-base-p16_beit-pre_8xb128-coslr-100e'):
        get_model('beit-base-p16_beit-pre_8xb128-coslr-100e')


def test_import_is_lazy():
    code = ('import sys, mmbeit.apis; '
            'assert not [m for m in sys.modules if m.startswith("mmbeit.apis.")]; '
            'mmbeit.apis.list_models; assert "mmbeit.apis.model_zoo" in sys.modules; '
            'assert "mmbeit.apis.builder" not in sys.modules')
    subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)


# ------------------------------------------------------------------------- get_model
def test_get_model_from_a_shrunk_config_extracts_features():
    cfg = Config.fromfile(osp.join(BENCH, 'beit-base-p16_8xb128-coslr-100e_in1k.py'))
    model = get_model(cfg, backbone=dict(arch='tiny', img_size=32), head=dict(in_channels=64))
    assert not model.training and model.cfg.model.backbone.arch == 'tiny'
    feats = model.extract_feat(torch.rand(2, 3, 32, 32))
    assert isinstance(feats, tuple) and feats[0].shape == (2, 64)
    assert len(model.dataset_meta['classes']) == 1000  # ImageNet's, from the config's dataset
    assert model.dataset_meta['classes'][0] == 'tench, Tinca tinca'


def test_get_model_by_name_without_weights_downloads_nothing(monkeypatch):

    def no_download(*args, **kwargs):
        raise AssertionError('nothing may be downloaded with pretrained=False')

    monkeypatch.setattr('mmbeit.utils.checkpoint_io.download_checkpoint', no_download)
    model = get_model(
        'beit-base-p16_beit-pre_8xb128-coslr-100e_in1k',
        backbone=dict(arch='tiny', img_size=32),
        head=dict(in_channels=64))
    assert model.model_info.name == 'beit-base-p16_beit-pre_8xb128-coslr-100e_in1k'
    with pytest.raises(ValueError, match='has no weights'):
        get_model(TINY_CFG, pretrained=True)  # a config without load_from


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A model index with one tiny classifier whose Weights is an mmpretrain-format checkpoint
    served over http://127.0.0.1; yields (name, reference mmpretrain model)."""
    ref = _mmpretrain_classifier(len(SAMPLE_CLS_CLASSES))
    www = tmp_path / 'www'
    www.mkdir()
    ckpt = dict(
        state_dict=ref.state_dict(),
        meta=dict(epoch=20, dataset_meta=dict(classes=list(SAMPLE_CLS_CLASSES))))
    file = _save_hashed(ckpt, str(www), 'beit-tiny_sample_20260101')
    (tmp_path / 'tiny.py').write_text(
        textwrap.dedent(f"""\
        _base_ = {TINY_CFG!r}
        model = dict(backbone=dict(init_cfg=None))
        """))
    with serve(www) as base_url:
        (tmp_path / 'model-index.yml').write_text(
            textwrap.dedent("""\
            Import:
              - metafile.yml
            """))
        (tmp_path / 'metafile.yml').write_text(
            textwrap.dedent(f"""\
            Models:
              - Name: beit-tiny-p16_test-pre_sample
                In Collection: BEiT
                Config: tiny.py
                Weights: {base_url}/{file}
                Results:
                  - Task: Image Classification
                    Dataset: sample
                    Metrics:
                      Top 1 Accuracy: 100.0
            """))
        monkeypatch.setenv('MMBEIT_MODEL_INDEX', str(tmp_path / 'model-index.yml'))
        model_zoo.clear_cache()
        yield 'beit-tiny-p16_test-pre_sample', ref
    model_zoo.clear_cache()


def test_get_model_pretrained_true_loads_the_metafile_weights_over_http(zoo, tmp_path):
    name, ref = zoo
    assert list_models() == [name]
    model = get_model(name, pretrained=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, mode='tensor'), ref(x, mode='tensor'), rtol=0, atol=1e-4)
        torch.testing.assert_close(
            model.extract_feat(x)[0], ref.extract_feat(x)[0], rtol=0, atol=1e-4)
    assert model.dataset_meta['classes'] == SAMPLE_CLS_CLASSES
    cached = list((tmp_path / 'cache').rglob('beit-tiny_sample_20260101-*.pth'))
    assert len(cached) == 1  # downloaded once into the cache, under its hashed name


def test_inference_model_by_name(zoo, circle_png):
    name, ref = zoo
    pred = inference_model(name, circle_png)
    assert set(pred) == {'pred_label', 'pred_score', 'pred_scores', 'pred_class'}
    assert pred['pred_scores'].shape == (len(SAMPLE_CLS_CLASSES), )
    assert pred['pred_scores'].sum() == pytest.approx(1.0, abs=1e-5)
    assert pred['pred_label'] == int(pred['pred_scores'].argmax())
    assert pred['pred_score'] == pytest.approx(float(pred['pred_scores'].max()))
    assert pred['pred_class'] == SAMPLE_CLS_CLASSES[pred['pred_label']]

    # the same numbers as mmpretrain's own model on the same preprocessed image
    bgr = np.asarray(Image.open(circle_png).convert('RGB'))[..., ::-1]
    x = (torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1)[None].float() - 127.5) / 127.5
    with torch.no_grad():
        expected = ref(x, mode='tensor').softmax(-1)[0].numpy()
    np.testing.assert_allclose(pred['pred_scores'], expected, atol=1e-5)


def test_inference_model_path_array_and_built_model_agree(circle_png, tmp_path):
    model = get_model(TINY_CFG)
    ckpt = tmp_path / 'tiny.pth'
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(classes=list(SAMPLE_CLS_CLASSES)))), ckpt)
    by_path = inference_model(TINY_CFG, circle_png, checkpoint=str(ckpt))
    bgr = np.ascontiguousarray(np.asarray(Image.open(circle_png).convert('RGB'))[..., ::-1])
    by_array = inference_model(TINY_CFG, bgr, checkpoint=str(ckpt))
    by_model = inference_model(get_model(TINY_CFG, pretrained=str(ckpt)), circle_png)
    for other in (by_array, by_model):
        assert other['pred_label'] == by_path['pred_label']
        np.testing.assert_allclose(other['pred_scores'], by_path['pred_scores'], atol=1e-6)
    assert by_path['pred_class'] in SAMPLE_CLS_CLASSES
    with pytest.warns(UserWarning, match='initial'):
        inference_model(TINY_CFG, circle_png)
    with pytest.raises(FileNotFoundError, match='image not found'):
        inference_model(get_model(TINY_CFG), str(tmp_path / 'missing.png'))
    with pytest.raises(ValueError, match=r'\[H, W, 3\]'):
        inference_model(get_model(TINY_CFG), np.zeros((8, 8, 2), np.uint8))


# ------------------------------------------------------------------------- class names
def test_imagenet22k_config_names_the_21841_classes():
    cfg = Config.fromfile(osp.join(BENCH, 'beit-base-p16_8xb64_in21k.py'))
    model = get_model(cfg, backbone=dict(arch='tiny', img_size=32), head=dict(in_channels=64))
    classes = model.dataset_meta['classes']
    assert len(classes) == 21841 == model.head.num_classes
    assert classes[0] == 'organism, being' and len(set(classes)) > 21000


def test_transformers_id2label_next_to_the_weights(tmp_path, beit_config):
    """Weights at a .../resolve/main/model.safetensors URL: the label names come from the
    config.json beside them, and the model computes what transformers computes."""
    from transformers import BeitForImageClassification
    labels = {0: 'n01440764 tench', 1: 'goldfish, Carassius auratus', 2: 'great white shark'}
    hf_cfg = beit_config(num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    hf = BeitForImageClassification(hf_cfg).eval()
    folder = tmp_path / 'www' / 'microsoft' / 'beit-tiny' / 'resolve' / 'main'
    hf.save_pretrained(str(folder), safe_serialization=True)
    cfg = Config.fromfile(osp.join(BENCH, 'beit-base-p16_8xb64_in21k.py'))
    with serve(tmp_path / 'www') as base_url:
        url = f'{base_url}/microsoft/beit-tiny/resolve/main/model.safetensors'
        model = get_model(
            cfg,
            pretrained=url,
            backbone=dict(arch='tiny', img_size=32),
            head=dict(in_channels=64, num_classes=3))
    assert model.dataset_meta['classes'] == tuple(labels[i] for i in range(3))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, mode='tensor'), hf(pixel_values=x).logits, rtol=0, atol=1e-4)
    # a transformers folder works as well
    assert get_model(cfg, pretrained=str(folder), backbone=dict(arch='tiny', img_size=32),
                     head=dict(in_channels=64, num_classes=3)).dataset_meta['classes'][2] == \
        'great white shark'


# ------------------------------------------------------------------------- dispatch
def test_segmentation_configs_are_dispatched(tmp_path):
    import glob
    found = glob.glob(osp.join(ROOT, 'configs', 'upernet_beit', 'upernet_beit-tiny_*_sample-*.py'))
    assert found, 'the tiny segmentation sample config is missing'
    seg_cfg = found[0]
    img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match='initial'):
        out = inference_model(seg_cfg, img)
    assert out['pred_mask'].shape == (48, 64)


def test_mim_models_have_no_inference():
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'beit', 'beit_beit-tiny-p8_1xb32-10e_sample.py'))
    model = get_model(cfg)
    with pytest.raises(ValueError, match='no inference for .*BEiTPretrain'):
        inference_model(model, np.zeros((64, 64, 3), np.uint8))


# ------------------------------------------------------------------------- sample config
def test_sample_config_starts_from_a_mim_checkpoint_given_on_the_command_line(tmp_path):
    """Without options the backbone keeps its own init (the init_cfg placeholder is a no-op);
    the cfg-options of the README / tools/run_sample_job.py load a MIM checkpoint into it."""
    mim = get_model(osp.join(ROOT, 'configs', 'beit', 'beit_beit-tiny-p8_1xb32-10e_sample.py'))
    with torch.no_grad():
        for p in mim.backbone.parameters():
            p.add_(torch.randn_like(p))
    ckpt = tmp_path / 'epoch_10.pth'
    torch.save(dict(state_dict=mim.state_dict(), meta=dict(epoch=10)), ckpt)

    cfg = Config.fromfile(TINY_CFG)
    torch.manual_seed(0)
    plain = builder.build_model(cfg)
    before = {k: v.clone() for k, v in plain.backbone.state_dict().items()}
    plain.init_weights()
    assert all(torch.equal(before[k], v) for k, v in plain.backbone.state_dict().items())

    cfg.merge_from_dict({
        'model.backbone.init_cfg.type': 'Pretrained',
        'model.backbone.init_cfg.checkpoint': str(ckpt),
        'model.backbone.init_cfg.prefix': 'backbone.'
    })
    model = builder.build_model(cfg)
    model.init_weights()
    got = model.backbone.state_dict()
    shared = mim.backbone.rel_pos_bias.table
    for i in range(4):  # the pretrain's shared table, copied into every layer
        assert torch.equal(got[f'layers.{i}.attn.rel_pos_bias.table'], shared)
    assert torch.equal(got['layers.2.mlp.fc1.weight'], mim.backbone.layers[2].mlp.fc1.weight)
    assert torch.equal(got['patch_embed.proj.weight'], mim.backbone.patch_embed.proj.weight)


# ------------------------------------------------------------------------- tools/test.py URL
def test_tools_test_with_a_checkpoint_url_served_on_localhost(tmp_path):
    """`tools/test.py CONFIG URL` (the command of mmpretrain's BEiT page) with weights that
    mmpretrain itself made, served over http://127.0.0.1: downloaded to the cache, detected,
    converted, tested."""
    import json
    import subprocess
    import sys

    from mmbeit.utils.sample_data import SAMPLE_CLS_CLASSES, generate_sample_data
    data = generate_sample_data(
        str(tmp_path / 'data'), cls_train_per_class=1, cls_val_per_class=4, seg_train=1, seg_val=1)
    folder = tmp_path / 'served'
    folder.mkdir()
    ref = _mmpretrain_classifier(len(SAMPLE_CLS_CLASSES))
    name = _save_hashed({'state_dict': ref.state_dict(), 'meta': {}}, str(folder), 'beit-tiny_test')
    work_dir = tmp_path / 'work'
    cache = tmp_path / 'cache'
    with serve(folder) as url:
        proc = subprocess.run([
            sys.executable,
            osp.join(ROOT, 'tools', 'test.py'), TINY_CFG, f'{url}/{name}', '--work-dir',
            str(work_dir), '--cfg-options', f'test_dataloader.dataset.data_root={data}/imagenet',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'
        ],
                              cwd=str(tmp_path),
                              capture_output=True,
                              text=True,
                              timeout=300,
                              env=dict(
                                  os.environ, MMBEIT_CACHE_DIR=str(cache), OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '(mmpretrain format' in proc.stdout + proc.stderr
    assert any(f.endswith(name) for _, _, files in os.walk(cache) for f in files)
    metrics = json.load(open(work_dir / 'test_metrics.json'))
    assert 0 <= metrics['accuracy/top1'] <= 100


def test_tools_test_out_show_dir_and_tta_for_classification(tmp_path, shared_sample_data):
    """tools/test.py --out (predictions pickle), --show-dir (drawn predictions), --tta (flip)."""
    import json
    import pickle
    import subprocess
    import sys

    from mmbeit.apis import get_model
    data = shared_sample_data  # 2 validation images per class: 10
    ckpt = str(tmp_path / 'tiny.pth')
    torch.save({'state_dict': get_model(TINY_CFG).state_dict(), 'meta': {}}, ckpt)
    common = [
        '--cfg-options', f'test_dataloader.dataset.data_root={data}/imagenet',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'
    ]

    def run(work, *extra):
        proc = subprocess.run([
            sys.executable,
            osp.join(ROOT, 'tools', 'test.py'), TINY_CFG, ckpt, '--work-dir',
            str(tmp_path / work), *extra, *common
        ],
                              capture_output=True,
                              text=True,
                              timeout=300,
                              env=dict(os.environ, OMP_NUM_THREADS='1'))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return json.load(open(tmp_path / work / 'test_metrics.json'))

    out, show = tmp_path / 'preds.pkl', tmp_path / 'shown'
    plain = run('plain', '--out', str(out), '--show-dir', str(show))
    preds = pickle.load(open(out, 'rb'))
    assert len(preds) == 10 and 'pred_score' in preds[0]
    assert len([f for _, _, fs in os.walk(show) for f in fs if f.endswith('.png')]) == 10
    tta = run('tta', '--tta')
    assert 0 <= tta['accuracy/top1'] <= 100 and 0 <= plain['accuracy/top1'] <= 100
