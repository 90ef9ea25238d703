"""model-index.yml and the metafiles it imports: names, configs, weights, results."""
import os.path as osp
import re

import pytest
import torch
import yaml
from mmengine.config import Config

from mmbeit.apis.inference import _build, load_model_index, model_index_paths, task_of

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
INDEX = osp.join(ROOT, 'model-index.yml')
URL = re.compile(r'^https?://[^\s/]+/\S+$')


def _metafiles():
    with open(INDEX, encoding='utf-8') as f:
        return [osp.join(ROOT, rel) for rel in yaml.safe_load(f)['Import']]


def _entries():
    out = []
    for metafile in _metafiles():
        with open(metafile, encoding='utf-8') as f:
            data = yaml.safe_load(f)
        out += [(osp.relpath(metafile, ROOT), m) for m in data['Models']]
    return out


ENTRIES = _entries()
NAMES = [m['Name'] for _, m in ENTRIES]


def test_the_index_is_found_and_imports_existing_metafiles():
    assert model_index_paths()[0] == INDEX  # a clone / editable install reads the repo root
    metafiles = _metafiles()
    assert 'configs/beit/metafile.yml' in [osp.relpath(m, ROOT) for m in metafiles]
    for metafile in metafiles:
        assert osp.isfile(metafile), metafile


def test_names_are_unique():
    lowered = [n.lower() for n in NAMES]
    duplicates = sorted({n for n in lowered if lowered.count(n) > 1})
    assert not duplicates
    assert len(load_model_index()) == len(NAMES)


def test_the_seed_page_models_are_there():
    """mmpretrain's BEiT page and the transformers checkpoints of the seeds, by name."""
    index = load_model_index()
    for name in ('beit_beit-base-p16_8xb256-amp-coslr-300e_in1k',
                 'beit-base-p16_beit-pre_8xb128-coslr-100e_in1k',
                 'beit-base-p16_beit-in21k-pre_3rdparty_in1k',
                 'beit-base-p16_beit-in21k-pre_3rdparty_in21k',
                 'beit-base-p16_beit-in21k-pre_3rdparty_in1k-384px'):
        assert name in index
    assert index['beit-base-p16_beit-pre_8xb128-coslr-100e_in1k'].config.endswith(
        'configs/beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py')
    assert index['beit-base-p16_beit-in21k-pre_3rdparty_in21k'].weights == (
        'https://huggingface.co/microsoft/beit-base-patch16-224-pt22k-ft22k/resolve/main/'
        'pytorch_model.bin')
    assert index['beit-base-p16_beit-in21k-pre_3rdparty_in1k-384px'].weights == (
        'https://huggingface.co/microsoft/beit-base-patch16-384/resolve/main/pytorch_model.bin')


@pytest.mark.parametrize('metafile,entry', ENTRIES, ids=NAMES)
def test_entry(metafile, entry):
    assert set(entry) >= {'Name', 'Config', 'In Collection'}, metafile
    assert osp.isfile(osp.join(ROOT, entry['Config'])), entry['Config']
    weights = entry.get('Weights')
    if weights is not None:
        assert URL.match(weights), weights
    converted = entry.get('Converted From')
    if converted is not None:
        assert URL.match(converted['Weights']) and URL.match(converted['Code'])
    for result in entry.get('Results') or []:
        assert result['Task'] and result['Dataset'] and result['Metrics'], entry['Name']
        for value in result['Metrics'].values():
            assert isinstance(value, (int, float))


def test_collections_readme_exist():
    for metafile in _metafiles():
        with open(metafile, encoding='utf-8') as f:
            for coll in yaml.safe_load(f).get('Collections') or []:
                if coll.get('README'):
                    assert osp.isfile(osp.join(ROOT, coll['README'])), coll['README']


@pytest.mark.parametrize('config', sorted({m['Config'] for _, m in ENTRIES}))
def test_config_loads(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert cfg.get('default_scope') in ('mmpretrain', 'mmseg')
    assert 'mmbeit' in cfg.custom_imports['imports']
    assert 'mmbeit.' in cfg.model.backbone.type or 'mmbeit.' in cfg.model.type


def _shrink(cfg: Config) -> Config:
    """The config's model with a tiny backbone at 32x32 and widths to match."""
    cfg.model.backbone.update(arch='tiny', img_size=32, init_cfg=None)
    if cfg.model.get('head') and 'in_channels' in cfg.model.head:
        cfg.model.head.in_channels = 64
    if cfg.model.get('neck') and 'input_features' in cfg.model.neck:
        cfg.model.neck.input_features = 64
    tok = cfg.model.get('target_generator')
    if tok and str(tok.type).endswith('VQKD'):  # a small tokenizer, random (no download)
        tok.update(
            encoder=dict(arch='tiny', img_size=32),
            num_embed=32,
            kmeans_init=False,
            checkpoint=None)
    elif tok:  # a small tokenizer: building DALL-E is slow
        tok.update(n_hid=8, n_blk_per_group=1, vocab_size=32)
    if cfg.model.get('neck') and str(cfg.model.neck.type).endswith('BEiTV2Neck'):
        cfg.model.neck.early_layers = cfg.model.backbone.out_indices[0] % 4 + 1  # of 4 tiny
    return cfg


CLS_AND_MIM = sorted({
    m['Config']
    for _, m in ENTRIES
    if Config.fromfile(osp.join(ROOT, m['Config'])).get('default_scope') == 'mmpretrain'
})


@pytest.mark.parametrize('config', CLS_AND_MIM)
def test_config_builds_and_extracts_features(config):
    cfg = _shrink(Config.fromfile(osp.join(ROOT, config)))
    torch.manual_seed(0)
    model = _build(cfg).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 32, 32))
    feats = feats if isinstance(feats, (tuple, list)) else (feats, )
    assert all(torch.isfinite(f).all() for f in feats)
    if task_of(cfg) == 'classification':
        with torch.no_grad():
            logits = model(torch.randn(1, 3, 32, 32), mode='tensor')
        assert logits.shape == (1, cfg.model.head.num_classes)


def test_index_lookup_source_tree_then_package_copy(tmp_path, monkeypatch):
    from mmbeit.apis import model_zoo as api
    monkeypatch.delenv('MMBEIT_MODEL_INDEX', raising=False)
    # an installed wheel: site-packages/mmbeit/.mim/model-index.yml, no setup.py above
    site = tmp_path / 'site-packages'
    (site / 'mmbeit' / '.mim').mkdir(parents=True)
    (site / 'mmbeit' / '.mim' / 'model-index.yml').write_text('Import: []\n')
    (site / 'model-index.yml').write_text('Import: []\n')  # someone else's: not ours
    monkeypatch.setattr(api, '_PACKAGE_DIR', str(site / 'mmbeit'))
    assert api.model_index_paths() == [str(site / 'mmbeit' / '.mim' / 'model-index.yml')]
    # a source tree with a stale build copy: the tree's own index wins
    (site / 'setup.py').write_text('')
    assert api.model_index_paths() == [str(site / 'model-index.yml')]
    # neither: a clear error
    monkeypatch.setattr(api, '_PACKAGE_DIR', str(tmp_path / 'nowhere' / 'mmbeit'))
    with pytest.raises(FileNotFoundError, match='MMBEIT_MODEL_INDEX'):
        api.model_index_paths()
