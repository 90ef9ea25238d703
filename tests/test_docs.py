"""The docs: the model zoo page is what tools/misc/gen_model_zoo.py makes of model-index.yml,
every relative link of docs/ and every repository path of docs/ and configs/*/README.md
points at a file that exists, and the troubleshooting messages are what the code raises."""
import glob
import os.path as osp
import re
import runpy

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
LINK = re.compile(r'\]\(([^)#\s]+)(?:#[^)]*)?\)')


def _generator():
    return runpy.run_path(osp.join(ROOT, 'tools', 'misc', 'gen_model_zoo.py'))


def test_model_zoo_page_is_up_to_date():
    gen = _generator()
    with open(osp.join(ROOT, 'docs', 'model_zoo.md'), encoding='utf-8') as f:
        committed = f.read()
    assert committed == gen['render'](), \
        'docs/model_zoo.md is out of date: run python tools/misc/gen_model_zoo.py'


def test_model_zoo_lists_every_model_under_its_task():
    import yaml
    text = _generator()['render']()
    with open(osp.join(ROOT, 'model-index.yml'), encoding='utf-8') as f:
        metafiles = yaml.safe_load(f)['Import']
    names = []
    for rel in metafiles:
        with open(osp.join(ROOT, rel), encoding='utf-8') as f:
            names += [m['Name'] for m in yaml.safe_load(f)['Models']]
    rows = re.findall(r'^\| `([^`]+)` \|', text, flags=re.M)
    assert sorted(rows) == sorted(names)
    seg = text.split('## Semantic segmentation', 1)[1]
    assert all(n in seg for n in names if n.startswith('upernet_'))


def test_every_relative_link_in_docs_exists():
    pages = glob.glob(osp.join(ROOT, 'docs', '**', '*.md'), recursive=True)
    for name in ('getting_started.md', 'model_zoo.md', 'algorithms/beit_pretrain.md',
                 'algorithms/beit_classification.md', 'algorithms/upernet_beit.md',
                 'algorithms/beitv2.md'):
        assert osp.join(ROOT, 'docs', name) in pages
    broken = []
    for page in pages:
        with open(page, encoding='utf-8') as f:
            for target in LINK.findall(f.read()):
                if target.startswith(('http://', 'https://')):
                    continue
                if not osp.exists(osp.normpath(osp.join(osp.dirname(page), target))):
                    broken.append(f'{osp.relpath(page, ROOT)} -> {target}')
    assert not broken, broken


def test_configs_named_in_docs_exist():
    missing = []
    for page in glob.glob(osp.join(ROOT, 'docs', '**', '*.md'), recursive=True):
        with open(page, encoding='utf-8') as f:
            text = f.read()
        for path in re.findall(r'`(configs/[\w./-]+\.py)`', text):
            if not osp.isfile(osp.join(ROOT, path)):
                missing.append(f'{osp.relpath(page, ROOT)}: {path}')
        for name in re.findall(r'`((?:beit|upernet)[\w.-]*\.py)`', text):
            found = glob.glob(osp.join(ROOT, 'configs', '**', name), recursive=True)
            if '*' not in name and not found:
                missing.append(f'{osp.relpath(page, ROOT)}: {name}')
    assert not missing, missing


def test_every_file_the_readme_names_exists():
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    named = set(
        re.findall(
            r'(?<![\w/.-])((?:mmbeit|configs|tools|docs|demo|scripts|tests|'
            r'requirements)/[\w./-]*\w/?)', text))
    assert 'demo/cat.jpg' in named
    missing = sorted(p for p in named if not osp.exists(osp.join(ROOT, p)))
    assert not missing, missing


# paths of this repository as the docs write them (data/ and work_dirs/ are made by commands)
REPO_PATH = re.compile(r'(?<![\w/.-])((?:mmbeit|configs|tools|docs|demo|scripts|tests|'
                       r'requirements)/[\w./*-]*[\w*]/?)')


def _doc_pages():
    pages = glob.glob(osp.join(ROOT, 'docs', '**', '*.md'), recursive=True)
    return sorted(pages + glob.glob(osp.join(ROOT, 'configs', '*', 'README.md')))


def test_every_repo_path_in_docs_and_config_readmes_exists():
    assert osp.join(ROOT, 'configs', 'beit', 'README.md') in _doc_pages()
    missing, outside = [], []
    for page in _doc_pages():
        with open(page, encoding='utf-8') as f:
            text = f.read()
        rel = osp.relpath(page, ROOT)
        for path in set(REPO_PATH.findall(text)):
            if '...' in path:  # a placeholder in a tree ('configs/beit/....py')
                continue
            found = glob.glob(osp.join(ROOT, path)) if '*' in path else [osp.join(ROOT, path)]
            if not any(osp.exists(p) for p in found):
                missing.append(f'{rel}: {path}')
        # files of the machine the docs were written on (a reader has none of them)
        outside += [
            f'{rel}: {m}' for m in re.findall(r'(?<![\w.:/-])/(?:work|home|root)/\S+', text)
        ]
    assert not missing, missing
    assert not outside, outside


def _message_pattern(quoted: str) -> 're.Pattern':
    """A quoted message as a regex: ``<...>`` stands for a name or value, ``...`` for any text,
    a space for any white space (line breaks of long messages)."""
    parts = re.split(r'(<[^<>]+>|\.\.\.)', quoted)

    def literal(text: str) -> str:  # words apart by white space; none needed next to `...`
        inner = r'\s+'.join(re.escape(w) for w in text.split(' '))
        return re.sub(r'^(\\s\+)|(\\s\+)$', lambda m: r'\s*', inner)

    return re.compile(
        ''.join('.+?' if p.startswith('<') else '.*?' if p == '...' else literal(p) for p in parts),
        re.S)


def _raised(fn) -> BaseException:
    try:
        fn()
    except BaseException as e:  # noqa: B902  (whatever it raises is what we compare)
        return e
    raise AssertionError(f'{fn} raised nothing')


def _troubleshooting_errors(tmp_path):
    """Each troubleshooting message, produced by the code: ``{message start: exception}``."""
    import fractions
    import types

    import numpy as np
    import torch
    from mmengine.config import Config

    from mmbeit.apis.builder import load_weights
    from mmbeit.datasets.load_color_image_from_file import LoadColorImageFromFile
    from mmbeit.engine.non_finite_check_hook import NonFiniteCheckHook
    from mmbeit.layers.patch_embed import PatchEmbed
    from mmbeit.models.backbones.beit import BEiT
    from mmbeit.utils.checkpoint_io import download_checkpoint, load_checkpoint_file
    from mmbeit.utils.config_check import (check_data_roots, check_top_level_keys,
                                           suggest_registered_names)
    from mmbeit.utils.image_io import read_image

    def unknown_type():
        from mmengine.registry import MODELS, DefaultScope
        with DefaultScope.overwrite_default_scope('mmpretrain'), \
                suggest_registered_names('mmpretrain'):
            MODELS.build(dict(type='mmbeit.BEit'))

    def data_root(loader: str):
        cfg = Config({loader: dict(dataset=dict(data_root='data/sample/imagenet'))})
        check_data_roots(cfg, (loader, ))

    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'not an image at all')
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    tiny = tmp_path / 'tiny.pth'
    torch.save(BEiT(arch='tiny', img_size=32, patch_size=8).state_dict(), tiny)
    unknown = tmp_path / 'unknown.pth'
    torch.save({'foo.bar': torch.zeros(2)}, unknown)
    unsafe = tmp_path / 'unsafe.pth'
    torch.save({'state_dict': {}, 'ratio': fractions.Fraction(1, 3)}, unsafe)  # not allowlisted
    onnx_model = types.SimpleNamespace(
        _input=types.SimpleNamespace(shape=[None] * 4), patch_size=8, onnx_path='model.onnx')
    from mmbeit.deployment.onnx_model import ONNXModel
    return [
        _raised(unknown_type),
        _raised(lambda: check_top_level_keys(Config(dict(train_dataloder=1)))),
        _raised(lambda: BEiT(arch='tiny', drop_path_rat=0.1)),
        _raised(lambda: BEiT(arch='tiny', img_size=(224, ))),
        _raised(lambda: BEiT(arch='base', out_indices={1: 1})),
        _raised(lambda: data_root('test_dataloader')),
        _raised(lambda: data_root('train_dataloader')),
        _raised(lambda: LoadColorImageFromFile()(dict(img_path=str(tmp_path / 'missing.jpg')))),
        _raised(lambda: LoadColorImageFromFile()(dict(img_path=str(bad)))),
        _raised(lambda: read_image(str(tmp_path / 'missing.jpg'))),
        _raised(lambda: read_image(str(bad))),
        _raised(lambda: read_image(str(empty))),
        _raised(lambda: read_image(np.zeros((2, 2, 3), np.float32))),
        _raised(lambda: PatchEmbed(3, 8, 16)(torch.zeros(1, 3, 40, 32))),
        _raised(lambda: ONNXModel.run(onnx_model, torch.zeros(1, 3, 43, 64))),
        _raised(lambda: PatchEmbed(3, 8, 16)(torch.zeros(1, 1, 32, 32))),
        _raised(lambda: load_weights(
            BEiT(arch='tiny', img_size=32, patch_size=8, use_abs_pos_emb=True), str(tiny))),
        _raised(lambda: load_weights(BEiT(arch='tiny', img_size=32, patch_size=8), str(unknown))),
        _raised(lambda: load_checkpoint_file(str(unsafe))),
        _raised(lambda: download_checkpoint(
            'http://127.0.0.1:9/x.pth', cache_dir=str(tmp_path / 'cache'), timeout=5)),
        _raised(lambda: NonFiniteCheckHook().after_train_iter(
            types.SimpleNamespace(iter=6, epoch=0), 6, None, dict(loss=torch.tensor(np.nan)))),
    ]


# pages whose troubleshooting tables quote error messages
TROUBLESHOOTING_PAGES = ('docs/troubleshooting.md', 'README.md')


@pytest.mark.parametrize('page', TROUBLESHOOTING_PAGES)
def test_troubleshooting_messages_are_what_the_code_raises(page, tmp_path, monkeypatch):
    with open(osp.join(ROOT, page), encoding='utf-8') as f:
        text = f.read()
    monkeypatch.chdir(tmp_path)  # data/sample/imagenet does not exist here
    quoted = re.findall(r'`(\w+(?:Error|Exception): [^`]+)`', text)
    assert len(quoted) >= 10, quoted
    raised = [f'{type(e).__name__}: {e}' for e in _troubleshooting_errors(tmp_path)]
    unmatched = [q for q in quoted if not any(_message_pattern(q).match(r) for r in raised)]
    assert not unmatched, (unmatched, raised)
