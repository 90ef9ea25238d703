"""Hugging Face hub ids and model folders through every door: get_model, inference_model,
tools/test.py; weights served by a local stand-in of the hub (tests/hub_server.py) with
HF_ENDPOINT pointed at it and HF_HUB_CACHE in tmp_path.

Reference models are transformers' (and timm's) with random weights, every parameter moved
off its initialization, saved with their own ``save_pretrained`` / ``save_for_hf``.
"""
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from hub_server import HubServer  # noqa: E402

from mmbeit.apis import model_zoo  # noqa: E402
from mmbeit.apis import get_model, inference_model  # noqa: E402
from helpers import randomize_  # noqa: E402  (tests/helpers.py)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
ID_22K = 'microsoft/beit-base-patch16-224-pt22k-ft22k'
ID_MIM = 'microsoft/beit-base-patch16-224-pt22k'
ID_ADE = 'microsoft/beit-large-finetuned-ade-640-640'


def _labels(n: int, stem: str = 'label'):
    return {i: f'{stem} {i:05d}' for i in range(n)}


def _hf_config(task: str, **kw):
    from transformers import BeitConfig
    arch = dict(
        classification='BeitForImageClassification',
        segmentation='BeitForSemanticSegmentation',
        mim='BeitForMaskedImageModeling')[task]
    base = dict(architectures=[arch], hidden_act='gelu', layer_scale_init_value=0.1)
    if task == 'mim':
        base.update(
            use_shared_relative_position_bias=True,
            use_relative_position_bias=False,
            use_mask_token=True)
    else:
        base.update(use_relative_position_bias=True)
    if 'id2label' in kw:
        kw.update(
            num_labels=len(kw['id2label']), label2id={
                v: k
                for k, v in kw['id2label'].items()
            })
    base.update(kw)
    return BeitConfig(**base)


TINY = dict(
    hidden_size=64,
    num_hidden_layers=6,
    num_attention_heads=4,
    intermediate_size=128,
    image_size=32,
    patch_size=16)


def _hf_model(task: str, config):
    import transformers
    cls = getattr(transformers, config.architectures[0])
    torch.manual_seed(0)
    return randomize_(cls(config))


def _save(model, folder) -> str:
    model.save_pretrained(str(folder), safe_serialization=True)
    return str(folder)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The local hub, with HF_ENDPOINT at it and an empty HF_HUB_CACHE."""
    with HubServer() as server:
        monkeypatch.setenv('HF_ENDPOINT', server.url)
        monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hf-cache'))
        monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
        yield server


@pytest.fixture(scope='module')
def base22k(tmp_path_factory):
    """transformers' BeitForImageClassification with ID_22K's config shape (base, 21,841
    classes, labels named in config.json), random weights; built once."""
    cfg = _hf_config(
        'classification',
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        image_size=224,
        patch_size=16,
        use_mean_pooling=True,
        layer_norm_eps=1e-12,
        id2label=_labels(21841, 'hub-label'))
    return _save(_hf_model('classification', cfg), tmp_path_factory.mktemp('base22k'))


def test_22k_hub_id_gives_transformers_logits_and_the_config_labels(hub, base22k):
    from transformers import BeitForImageClassification
    hub.add_folder(ID_22K, base22k)
    model = get_model(ID_22K, pretrained=True)
    assert model.model_info.name == 'beit-base-p16_beit-in21k-pre_3rdparty_in21k'  # the zoo's
    classes = model.dataset_meta['classes']
    assert len(classes) == 21841 and classes[0] == 'hub-label 00000' and classes[-1] == \
        'hub-label 21840'
    folder = osp.join(os.environ['HF_HUB_CACHE'], 'models--microsoft--beit-base-patch16-224-'
                      'pt22k-ft22k', 'snapshots')
    (commit, ) = os.listdir(folder)
    ref = BeitForImageClassification.from_pretrained(osp.join(folder, commit)).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(x, mode='tensor'), ref(pixel_values=x).logits
    assert ours.shape == (2, 21841)
    assert (ours - theirs).abs().max() <= 1e-4
    assert ('GET', f'/{ID_22K}/resolve/main/model.safetensors') in hub.requests


@pytest.fixture(scope='module')
def base_mim(tmp_path_factory):
    # layer_norm_eps: unilm's 1e-6, which the zoo config computes with. (transformers' own
    # default, 1e-12, gives ~1e-3 differences here: the random mask token is near zero, so
    # the masked patches' variance is tiny and the eps shows; trained tokens are not so small.)
    cfg = _hf_config(
        'mim',
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        image_size=224,
        patch_size=16,
        vocab_size=8192,
        layer_norm_eps=1e-6)
    return _save(_hf_model('mim', cfg), tmp_path_factory.mktemp('base_mim'))


def test_mim_hub_id_gives_transformers_logits(hub, base_mim):
    from transformers import BeitForMaskedImageModeling
    hub.add_folder(ID_MIM, base_mim)
    model = get_model(ID_MIM, pretrained=True)
    assert model.model_info.name == 'beit_beit-base-p16_3rdparty_in21k'
    ref = BeitForMaskedImageModeling.from_pretrained(base_mim).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 224, 224, generator=g)
    mask = torch.rand(2, 196, generator=g) < 0.4
    with torch.no_grad():
        ours = model.mim_logits(x, mask)
        theirs = ref(pixel_values=x, bool_masked_pos=mask).logits
    assert ours.shape == theirs.shape == (2, 196, 8192)
    assert (ours - theirs).abs().max() <= 1e-4


def test_a_mim_folder_leaves_the_tokenizer_unloaded(tmp_path):
    folder = _save(_tiny('mim'), tmp_path / 'mim')
    model = get_model(folder, pretrained=True)
    with pytest.raises(RuntimeError, match='init_weights'):  # the tokenizer is not in the files
        model.target_generator(torch.zeros(1, 3, 32, 32))


def _tiny(task: str):
    kw = dict(TINY)
    if task == 'classification':
        kw.update(id2label=_labels(5), layer_norm_eps=1e-6)
    elif task == 'segmentation':
        kw.update(
            id2label=_labels(4),
            image_size=64,
            out_indices=[2, 3, 4, 5],
            pool_scales=[1, 2, 3, 6],
            auxiliary_channels=8,
            layer_norm_eps=1e-6)
    else:
        kw.update(vocab_size=32, layer_norm_eps=1e-6)
    return _hf_model(task, _hf_config(task, **kw))


def _outputs(task: str, model, hf, size: int):
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        if task == 'classification':
            return model(x, mode='tensor'), hf(pixel_values=x).logits
        if task == 'segmentation':  # logits at 1/4 of the input, as transformers'
            return model.decode_head(model.extract_feat(x)), hf(pixel_values=x).logits
        mask = torch.rand(2, (size // 16)**2, generator=torch.Generator().manual_seed(2)) < .5
        return model.mim_logits(x, mask), hf(pixel_values=x, bool_masked_pos=mask).logits


@pytest.mark.parametrize('task', ['classification', 'segmentation', 'mim'])
def test_folders_and_other_hub_ids_build_from_config_json(task, tmp_path, hub):
    hf = _tiny(task)
    folder = _save(hf, tmp_path / 'folder')
    size = hf.config.image_size
    hub.add_folder(f'someone/beit-tiny-{task}', folder)
    for source in (folder, f'someone/beit-tiny-{task}', f'hf-hub:someone/beit-tiny-{task}'):
        model = get_model(source, pretrained=True)
        ours, theirs = _outputs(task, model, hf, size)
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max() <= 1e-4, source
        if task != 'mim':
            assert model.dataset_meta['classes'] == tuple(hf.config.id2label[i]
                                                          for i in range(hf.config.num_labels))
    if task == 'segmentation':  # transformers' out_indices i -> layer i - 2
        assert tuple(model.cfg.model.backbone.out_indices) == (0, 1, 2, 3)


def test_inference_model_with_a_hub_id_names_the_class(tmp_path, hub):
    hf = _tiny('classification')
    hub.add_folder('someone/beit-tiny', _save(hf, tmp_path / 'folder'))
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    pred = inference_model('someone/beit-tiny', img)
    assert pred['pred_class'] == hf.config.id2label[pred['pred_label']]
    # the same numbers as transformers on the same preprocessed image (resize to 32, 0.5)
    import mmcv
    rgb = mmcv.imresize(img[..., ::-1], (32, 32), interpolation='bicubic', backend='pillow')
    x = (torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        expected = hf(pixel_values=x).logits.softmax(-1)[0].numpy()
    np.testing.assert_allclose(pred['pred_scores'], expected, atol=1e-5)


def test_revisions(tmp_path, hub):
    first, second = _tiny('classification'), randomize_(_tiny('classification'), seed=5)
    hub.add_folder('someone/beit-tiny', _save(first, tmp_path / 'a'))
    commit = hub.add_folder('someone/beit-tiny', _save(second, tmp_path / 'b'), revision='v2')
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        want = second(pixel_values=x).logits
        for model in (get_model('someone/beit-tiny@v2', pretrained=True),
                      get_model('someone/beit-tiny', pretrained=True, revision='v2'),
                      get_model(f'hf-hub:someone/beit-tiny@{commit}', pretrained=True)):
            assert (model(x, mode='tensor') - want).abs().max() <= 1e-4
        main = get_model('someone/beit-tiny', pretrained=True)(x, mode='tensor')
        assert (main - first(pixel_values=x).logits).abs().max() <= 1e-4
    with pytest.raises(FileNotFoundError, match="no revision 'v3'"):
        get_model('someone/beit-tiny@v3')


def test_errors_name_the_id(tmp_path, hub):
    with pytest.raises(FileNotFoundError, match="'nobody/nothing' not found"):
        get_model('nobody/nothing')
    hf = _tiny('classification')
    folder = _save(hf, tmp_path / 'f')
    os.remove(osp.join(folder, 'model.safetensors'))
    hub.add_folder('someone/no-weights', folder)
    with pytest.raises(FileNotFoundError, match="'someone/no-weights' has no weights"):
        get_model('someone/no-weights', pretrained=True)
    with pytest.raises(ValueError, match='hf-hub:owner/name'):
        get_model('hf-hub:not-an-id')


def test_timm_hf_hub_prefix(tmp_path, hub):
    import timm
    from timm.models import save_for_hf
    args = dict(embed_dim=64, depth=2, num_heads=4, img_size=32)
    torch.manual_seed(0)
    ref = randomize_(
        timm.create_model('beit_base_patch16_224', pretrained=False, num_classes=7, **args))
    folder = tmp_path / 'timm'
    save_for_hf(ref, str(folder), model_args=args)
    hub.add_folder('timm/beit_tiny_test.in22k_ft_in22k_in1k', str(folder))
    model = get_model('hf-hub:timm/beit_tiny_test.in22k_ft_in22k_in1k', pretrained=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model(x, mode='tensor') - ref(x)).abs().max() <= 1e-4


# ---------------------------------------------------------------- the ADE20K zoo entry
def test_ade_large_zoo_entry_keeps_unilm_layers():
    """microsoft/beit-large-finetuned-ade-640-640: the zoo config keeps the layers unilm
    trained its weights on; its config.json's out_indices [7, 11, 15, 23] read layers two
    earlier in transformers (hidden_states[i - 1])."""
    from mmbeit.apis.builder import load_config
    from mmbeit.converters.transformers import mmbeit_model_cfg
    src = load_config(ID_ADE)
    assert src.info.name == 'upernet_beit-large_hf-ade20k-640x640'
    bb = src.cfg.model.backbone
    assert tuple(bb.out_indices) == (7, 11, 15, 23) and bb.arch == 'large' and bb.img_size == 640
    hf_like = dict(
        architectures=['BeitForSemanticSegmentation'],
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        image_size=640,
        out_indices=[7, 11, 15, 23],
        use_relative_position_bias=True)
    assert mmbeit_model_cfg(hf_like)['backbone']['out_indices'] == (5, 9, 13, 21)


def test_ade_mechanism_zoo_layers_and_the_transformers_option(tmp_path, hub, monkeypatch):
    """The same structure, tiny, under a test id: the zoo's layers by default; with the
    documented option backbone=dict(out_indices=[i - 2 ...]) transformers' logits."""
    layers = [2, 3, 4, 5]  # what the weights were 'trained on' (unilm's out_indices)
    hf = _hf_model(
        'segmentation',
        _hf_config(
            'segmentation',
            **dict(
                TINY,
                image_size=64,
                out_indices=layers,
                id2label=_labels(4),
                pool_scales=[1, 2, 3, 6],
                auxiliary_channels=8,
                layer_norm_eps=1e-6)))
    hub.add_folder('test/beit-tiny-ade', _save(hf, tmp_path / 'ade'))
    (tmp_path / 'tiny_ade.py').write_text(
        textwrap.dedent(f"""\
        _base_ = {osp.join(ROOT, 'configs', 'upernet_beit',
                           'upernet_beit-large_hf-ade20k-640x640.py')!r}
        norm_cfg = dict(type='BN', requires_grad=True)
        model = dict(
            backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=6, num_heads=4,
                                    feedforward_channels=128), img_size=64,
                          out_indices={tuple(layers)!r}, layer_scale_init_value=0.1),
            neck=dict(embed_dim=64, norm_cfg=norm_cfg),
            decode_head=dict(in_channels=[64] * 4, channels=64, num_classes=4,
                             norm_cfg=norm_cfg),
            auxiliary_head=dict(in_channels=64, channels=8, num_classes=4, norm_cfg=norm_cfg),
            test_cfg=dict(mode='whole'))
        """))
    (tmp_path / 'model-index.yml').write_text(
        textwrap.dedent("""\
        Models:
          - Name: upernet_beit-tiny_hf-test
            Aliases: [test/beit-tiny-ade]
            In Collection: UperNet-BEiT
            Config: tiny_ade.py
            Weights: https://huggingface.co/test/beit-tiny-ade/resolve/main/model.safetensors
        """))
    monkeypatch.setenv('MMBEIT_MODEL_INDEX', str(tmp_path / 'model-index.yml'))
    model_zoo.clear_cache()
    try:
        zoo = get_model('test/beit-tiny-ade', pretrained=True)
        as_hf = get_model(
            'test/beit-tiny-ade',
            pretrained=True,
            backbone=dict(out_indices=[i - 2 for i in layers]))
        by_name = get_model('upernet_beit-tiny_hf-test', pretrained=True)  # Weights via the hub
    finally:
        model_zoo.clear_cache()
    assert tuple(zoo.cfg.model.backbone.out_indices) == tuple(layers)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        theirs = hf(pixel_values=x).logits  # [1, 4, 16, 16]
        ours_zoo = zoo.decode_head(zoo.extract_feat(x))
        ours_hf = as_hf.decode_head(as_hf.extract_feat(x))
        assert (by_name.decode_head(by_name.extract_feat(x)) - ours_zoo).abs().max() == 0
    assert (ours_hf - theirs).abs().max() <= 1e-4
    assert (ours_zoo - theirs).abs().max() > 1e-2  # other layers: other logits


# ---------------------------------------------------------------- a fresh process, offline
_SCRIPT = """
import sys, torch
from mmbeit.apis import get_model
model = get_model(sys.argv[1], pretrained=True)
x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    torch.save(model(x, mode='tensor'), sys.argv[2])
"""


def test_a_fresh_process_reads_the_env_and_works_offline_from_the_cache(tmp_path):
    hf = _tiny('classification')
    folder = _save(hf, tmp_path / 'folder')
    env = dict(
        os.environ, HF_HUB_CACHE=str(tmp_path / 'cache'), OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    env.pop('HF_HUB_OFFLINE', None)
    script = tmp_path / 'run.py'
    script.write_text(_SCRIPT)
    with HubServer() as server:
        server.add_folder('someone/beit-tiny', folder)
        env['HF_ENDPOINT'] = server.url
        subprocess.run([sys.executable,
                        str(script), 'someone/beit-tiny',
                        str(tmp_path / 'a.pt')],
                       env=env,
                       check=True,
                       capture_output=True,
                       cwd=str(tmp_path),
                       timeout=300)
    offline = dict(env, HF_HUB_OFFLINE='1')  # the server is gone: the cache serves
    subprocess.run(
        [sys.executable, str(script), 'someone/beit-tiny',
         str(tmp_path / 'b.pt')],
        env=offline,
        check=True,
        capture_output=True,
        cwd=str(tmp_path),
        timeout=300)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = hf(pixel_values=x).logits
    for name in ('a.pt', 'b.pt'):
        assert (torch.load(tmp_path / name) - want).abs().max() <= 1e-4
    proc = subprocess.run(
        [sys.executable, str(script), 'someone/other',
         str(tmp_path / 'c.pt')],
        env=offline,
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=300)
    assert proc.returncode != 0 and 'HF_HUB_OFFLINE is set' in proc.stderr


def test_tools_test_with_a_hub_id(tmp_path, hub, shared_sample_data):
    """tools/test.py CONFIG owner/name: the checkpoint comes through the hub."""
    from mmbeit.utils.sample_data import SAMPLE_CLS_CLASSES
    data = shared_sample_data
    hf = _hf_model(
        'classification',
        _hf_config(
            'classification',
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=256,
            image_size=64,
            patch_size=8,
            layer_norm_eps=1e-6,
            id2label=dict(enumerate(SAMPLE_CLS_CLASSES))))
    hub.add_folder('someone/beit-tiny-sample', _save(hf, tmp_path / 'folder'))
    cfg = osp.join(ROOT, 'configs', 'beit', 'benchmarks', 'beit-tiny-p8_1xb32-20e_sample.py')
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'test.py'), cfg, 'someone/beit-tiny-sample', '--work-dir',
        str(tmp_path / 'work'), '--cfg-options',
        f'test_dataloader.dataset.data_root={data}/imagenet', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ],
                          cwd=str(tmp_path),
                          capture_output=True,
                          text=True,
                          timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '(transformers format' in proc.stdout + proc.stderr
    metrics = json.load(open(tmp_path / 'work' / 'test_metrics.json'))
    assert 0 <= metrics['accuracy/top1'] <= 100
