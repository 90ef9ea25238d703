"""The docs: the model zoo page is what tools/misc/gen_model_zoo.py makes of model-index.yml,
and every relative link of docs/ points at a file that exists."""
import glob
import os.path as osp
import re
import runpy

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
