"""docs/seeds.md: every Python block runs as written, against weights served locally.

The hub ids and zoo names of the page resolve, through a test model index
($MMBEIT_MODEL_INDEX), to tiny models built on the zoo's own configs (same pipelines,
normalisation, heads and class-name logic; a small backbone), whose weights are served by a
local stand-in of the Hugging Face hub (HF_ENDPOINT) and a local http server (the
download.openmmlab.com-style URLs).
"""
import hashlib
import os
import os.path as osp
import re
import sys
import textwrap

import pytest
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from hub_server import HubServer, serve_folder  # noqa: E402

from mmbeit.apis import model_zoo  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOC = osp.join(ROOT, 'docs', 'seeds.md')
TINY = "dict(_delete_=True, embed_dims=64, num_layers={n}, num_heads=4, feedforward_channels=128)"


def _sections():
    with open(DOC, encoding='utf-8') as f:
        text = f.read()
    out = {}
    for part in re.split(r'^## ', text, flags=re.M)[1:]:
        m = re.match(r'Seed (\d{3})', part)
        if m:
            out[m.group(1)] = dict(
                python=re.findall(r'```python\n(.*?)```', part, flags=re.S),
                shell=re.findall(r'```shell\n(.*?)```', part, flags=re.S))
    return out


SECTIONS = _sections()


def test_the_page_has_a_section_per_seed():
    assert sorted(SECTIONS) == ['000', '001', '003', '004']
    assert all(s['python'] for s in SECTIONS.values())


def _run(blocks, monkeypatch):
    monkeypatch.chdir(ROOT)  # the page's paths (demo/cat.jpg) are relative to the repository
    ns = {}
    for block in blocks:
        exec(compile(block, DOC, 'exec'), ns)  # noqa: S102  (the page's own code)
    return ns


def _hf(task, **kw):
    import transformers
    from transformers import BeitConfig
    arch = dict(cls='BeitForImageClassification', seg='BeitForSemanticSegmentation')[task]
    labels = kw.pop('labels')
    cfg = BeitConfig(
        architectures=[arch],
        hidden_size=64,
        num_hidden_layers=kw.pop('layers', 2),
        num_attention_heads=4,
        intermediate_size=128,
        patch_size=16,
        use_relative_position_bias=True,
        layer_norm_eps=1e-6,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={
            n: i
            for i, n in enumerate(labels)
        },
        **kw)
    torch.manual_seed(0)
    model = getattr(transformers, arch)(cfg).eval()
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t.is_floating_point():
                if name.endswith('running_var'):
                    t.copy_(torch.rand_like(t) + 0.5)
                else:
                    t.add_(torch.randn_like(t) * 0.05)
    return model


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A model index of tiny stand-ins under the page's names; yields (hub, folder, write)."""
    with HubServer() as hub:
        monkeypatch.setenv('HF_ENDPOINT', hub.url)
        monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hf-cache'))
        monkeypatch.setenv('MMBEIT_CACHE_DIR', str(tmp_path / 'cache'))
        monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
        entries = {}

        def add(name, base, overrides, weights, alias=None):
            (tmp_path / f'{name}.py').write_text(f'_base_ = {osp.join(ROOT, base)!r}\n' +
                                                 textwrap.dedent(overrides))
            entry = f'  - Name: {name}\n    Config: {name}.py\n    Weights: {weights}\n'
            if alias:
                entry += f'    Aliases: [{alias}]\n'
            entries[name] = entry
            (tmp_path / 'model-index.yml').write_text('Models:\n' + ''.join(entries.values()))
            model_zoo.clear_cache()

        monkeypatch.setenv('MMBEIT_MODEL_INDEX', str(tmp_path / 'model-index.yml'))
        yield hub, tmp_path, add
    model_zoo.clear_cache()


def _serve_hf(hub, tmp_path, repo, model):
    folder = str(tmp_path / repo.replace('/', '--'))
    model.save_pretrained(folder, safe_serialization=True)
    hub.add_folder(repo, folder)
    return f'https://huggingface.co/{repo}/resolve/main/model.safetensors'


def test_seed_000_22k_classification_with_class_names(zoo, monkeypatch):
    hub, tmp, add = zoo
    repo = 'microsoft/beit-base-patch16-224-pt22k-ft22k'
    labels = [f'hub-label {i}' for i in range(21841)]
    hf = _hf('cls', labels=labels, image_size=224)
    add('beit-base-p16_beit-in21k-pre_3rdparty_in21k',
        'configs/beit/benchmarks/beit-base-p16_8xb64_in21k.py',
        f'model = dict(backbone=dict(arch={TINY.format(n=2)}), head=dict(in_channels=64))\n',
        _serve_hf(hub, tmp, repo, hf),
        alias=repo)
    ns = _run(SECTIONS['000']['python'], monkeypatch)
    pred, model = ns['pred'], ns['model']
    assert pred['pred_class'] == labels[pred['pred_label']]  # config.json's id2label
    assert pred['pred_scores'].shape == (21841, )
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (model(x, mode='tensor') - hf(pixel_values=x).logits).abs().max() <= 1e-4


def test_seed_001_ade20k_logits_at_a_quarter_and_the_mask(zoo, monkeypatch):
    from mmbeit.apis.class_names import ade20k_class_names
    hub, tmp, add = zoo
    repo = 'microsoft/beit-large-finetuned-ade-640-640'
    ade = list(ade20k_class_names())
    hf = _hf(
        'seg',
        labels=ade,
        layers=6,
        image_size=640,
        out_indices=[2, 3, 4, 5],
        pool_scales=[1, 2, 3, 6],
        auxiliary_channels=8)
    add('upernet_beit-large_hf-ade20k-640x640',
        'configs/upernet_beit/upernet_beit-large_hf-ade20k-640x640.py',
        f"""\
        model = dict(
            backbone=dict(arch={TINY.format(n=6)}, out_indices=(2, 3, 4, 5)),
            neck=dict(embed_dim=64),
            decode_head=dict(in_channels=[64] * 4, channels=64),
            auxiliary_head=dict(in_channels=64, channels=8))
        """,
        _serve_hf(hub, tmp, repo, hf),
        alias=repo)
    ns = _run(SECTIONS['001']['python'], monkeypatch)
    assert ns['mask'].shape == (300, 451)  # demo/cat.jpg's size
    assert 0 <= ns['mask'].min() and ns['mask'].max() < 150
    assert tuple(ns['logits'].shape) == (1, 150, 160, 160)
    assert list(ns['model'].dataset_meta['classes']) == ade


def test_seed_003_classification_at_384(zoo, monkeypatch):
    from mmbeit.apis.class_names import imagenet1k_class_names
    hub, tmp, add = zoo
    repo = 'microsoft/beit-base-patch16-384'
    names = list(imagenet1k_class_names())
    hf = _hf('cls', labels=names, image_size=384)
    add('beit-base-p16_beit-in21k-pre_3rdparty_in1k-384px',
        'configs/beit/benchmarks/beit-base-p16_8xb64_in1k-384px.py',
        f'model = dict(backbone=dict(arch={TINY.format(n=2)}), head=dict(in_channels=64))\n',
        _serve_hf(hub, tmp, repo, hf),
        alias=repo)
    ns = _run(SECTIONS['003']['python'], monkeypatch)
    assert ns['pred']['pred_class'] == names[ns['pred']['pred_label']]
    x = torch.randn(1, 3, 384, 384)
    with torch.no_grad():
        assert (ns['model'](x, mode='tensor') - hf(pixel_values=x).logits).abs().max() <= 1e-4


def _save_hashed(obj, folder, stem):
    tmp = osp.join(folder, 'tmp.pth')
    torch.save(obj, tmp)
    with open(tmp, 'rb') as f:
        name = f'{stem}-{hashlib.sha256(f.read()).hexdigest()[:8]}.pth'
    os.replace(tmp, osp.join(folder, name))
    return name


def test_seed_004_the_mmpretrain_page(zoo, monkeypatch):
    from mmbeit.apis import get_model
    from mmbeit.apis.class_names import imagenet1k_class_names
    real_index = model_zoo.load_model_index([osp.join(ROOT, 'model-index.yml')])
    hub, tmp, add = zoo
    www = tmp / 'www'
    www.mkdir()
    cls_cfg = ('configs/beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py',
               f'model = dict(backbone=dict(arch={TINY.format(n=2)}), head=dict(in_channels=64))\n')
    mim_cfg = ('configs/beit/beit_beit-base-p16_8xb256-amp-coslr-300e_in1k.py',
               f'model = dict(backbone=dict(arch={TINY.format(n=2)}), target_generator=dict('
               '_delete_=True, type="mmbeit.DALLEEncoder", n_hid=8, n_blk_per_group=1, '
               'vocab_size=32))\n')
    with serve_folder(str(www)) as url:
        for name, (base, overrides) in {
                'beit-base-p16_beit-pre_8xb128-coslr-100e_in1k': cls_cfg,
                'beit_beit-base-p16_8xb256-amp-coslr-300e_in1k': mim_cfg
        }.items():
            add(name, base, overrides, 'http://unused.invalid/x.pth')
            model = get_model(name)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * 0.05)
            file = _save_hashed({'state_dict': model.state_dict(), 'meta': {}}, str(www), name)
            add(name, base, overrides, f'{url}/{file}')
        ns = _run(SECTIONS['004']['python'], monkeypatch)
    assert ns['predict']['pred_class'] in imagenet1k_class_names()
    assert isinstance(ns['out'], tuple) and isinstance(ns['feats'], tuple)
    assert ns['feats'][0].shape[-1] == 64
    # the README's example is the same: it runs as well
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        readme = f.read().split('## Using it', 1)[1]
    # (the weights are in the download cache by now; the server is closed)
    ns = _run(re.findall(r'```python\n(.*?)```', readme, flags=re.S)[:1], monkeypatch)
    assert ns['pred']['pred_class'] in imagenet1k_class_names()
    assert ns['feats'][0].shape == (1, 197, 64)  # the MIM backbone's tokens
    # the shell commands name tools and configs that exist, and the zoo's own weights
    commands = [c.split() for c in SECTIONS['004']['shell'][0].strip().splitlines()]
    for argv in commands:
        assert argv[0] == 'python' and osp.isfile(osp.join(ROOT, argv[1]))
        assert osp.isfile(osp.join(ROOT, argv[2]))
    test_cmd = commands[1]
    assert test_cmd[3] == real_index['beit-base-p16_beit-pre_8xb128-coslr-100e_in1k'].weights
    # (tools/test.py CONFIG URL itself runs in tests/test_apis.py against a local server)
