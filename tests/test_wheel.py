"""The built wheel works on its own: installed into a fresh virtual environment (its
dependencies taken from the running one), run from a folder outside the repository, so no
source checkout is importable, the model zoo and inference_model work from the package."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]  # tiers: docs/testing.md

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLS_CFG = 'configs/beit/benchmarks/beit-tiny-p8_1xb32-20e_sample.py'
SEG_NAME = 'upernet_beit-tiny_1xb8-500_sample-64x64'


def _source_files():
    """The files a clone has: tracked, and new ones git does not ignore."""
    out = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard', '-z'],
                         cwd=ROOT,
                         capture_output=True,
                         check=True).stdout.decode()
    return [f for f in out.split('\0') if f and osp.isfile(osp.join(ROOT, f))]


@pytest.fixture(scope='module')
def wheel_env(tmp_path_factory):
    """(python of a fresh venv with the mmbeit wheel installed, a folder outside the repo)."""
    if shutil.which('git') is None or not osp.isdir(osp.join(ROOT, '.git')) and \
            not osp.isfile(osp.join(ROOT, '.git')):
        pytest.fail('the wheel test builds from the git checkout; run it from one')
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'
    for rel in _source_files():  # a clean copy: no build leftovers, no mmbeit/.mim
        os.makedirs(osp.dirname(src / rel), exist_ok=True)
        shutil.copy2(osp.join(ROOT, rel), src / rel)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    subprocess.run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w',
        str(tmp / 'dist'),
        str(src)
    ],
                   check=True,
                   env=env,
                   capture_output=True,
                   timeout=300)
    (wheel, ) = os.listdir(tmp / 'dist')
    assert wheel.startswith('mmbeit-') and wheel.endswith('.whl')
    venv.create(tmp / 'venv', with_pip=False)
    python = str(tmp / 'venv' / 'bin' / 'python')
    site = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        capture_output=True,
        text=True,
        check=True).stdout.strip()
    subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', site,
        str(tmp / 'dist' / wheel)
    ],
                   check=True,
                   env=env,
                   capture_output=True,
                   timeout=300)
    # the dependencies: the running environment's site-packages, after the venv's own (a
    # path, not a site dir: its .pth files, such as an editable mmbeit, are not run)
    with open(osp.join(site, 'zz_deps.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    work = tmp / 'elsewhere'
    work.mkdir()
    return python, work, env


def test_the_wheel_runs_the_zoo_and_inference_outside_the_repo(wheel_env, tmp_path):
    python, work, env = wheel_env
    # a checkpoint of the tiny classifier, made here from the source tree
    sys.path.insert(0, ROOT)
    from mmbeit.apis import get_model, inference_model
    model = get_model(osp.join(ROOT, CLS_CFG))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ckpt = tmp_path / 'tiny.pth'
    torch.save(
        {
            'state_dict': model.state_dict(),
            'meta': {
                'dataset_meta': {
                    'classes': list('abcde')
                }
            }
        }, ckpt)
    image = osp.join(ROOT, 'demo', 'cat.jpg')
    want = inference_model(osp.join(ROOT, CLS_CFG), image, checkpoint=str(ckpt))

    script = work / 'run.py'
    script.write_text(
        textwrap.dedent(f"""\
        import json, os.path as osp
        import mmbeit
        from mmbeit.apis import get_model_info, inference_model, list_models
        from mmbeit.apis.model_zoo import model_index_paths
        out = dict(package=osp.dirname(mmbeit.__file__), index=model_index_paths(),
                   models=list_models())
        info = get_model_info({SEG_NAME!r})
        out['seg_config'] = info.config
        cls_config = osp.join(osp.dirname(out['index'][0]), {CLS_CFG!r})
        pred = inference_model(cls_config, {image!r}, checkpoint={str(ckpt)!r})
        out['scores'] = pred['pred_scores'].tolist()
        out['cls'] = pred['pred_class']
        print('RESULT' + json.dumps(out))
        """))
    proc = subprocess.run([python, str(script)],
                          cwd=str(work),
                          env=dict(env, OMP_NUM_THREADS='1'),
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    import json
    out = json.loads(proc.stdout.split('RESULT', 1)[1])
    venv_root = osp.dirname(osp.dirname(python))
    assert out['package'].startswith(venv_root), out['package']  # the wheel, not the checkout
    assert out['index'] == [osp.join(out['package'], '.mim', 'model-index.yml')]
    assert SEG_NAME in out['models'] and 'beit-base-p16_beit-pre_8xb128-coslr-100e_in1k' in \
        out['models']
    assert out['seg_config'].startswith(osp.join(out['package'], '.mim', 'configs'))
    assert osp.isfile(out['seg_config'])
    np.testing.assert_allclose(out['scores'], want['pred_scores'], atol=1e-6)
    assert out['cls'] == want['pred_class']
