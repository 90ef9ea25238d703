"""Config mistakes that used to pass silently or fail without a hint: a misspelled top-level
key, a misspelled BEiT argument, malformed ``out_indices`` and ``img_size``."""
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config

from mmbeit.apis.run import build_runner_cfg
from mmbeit.models.backbones.beit import BEiT
from mmbeit.registry import MODELS
from mmbeit.utils.config_check import UnknownConfigKeyError, check_top_level_keys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_TINY = osp.join(REPO, 'configs/upernet_beit/upernet_beit-tiny_1xb8-500_sample-64x64.py')


def _config(tmp_path, body: str) -> str:
    path = tmp_path / 'my_config.py'
    path.write_text(f'_base_ = [{SEG_TINY!r}]\n{body}\n')
    return str(path)


def test_misspelled_top_level_key_names_the_right_one(tmp_path):
    config = _config(tmp_path, 'train_dataloder = dict(batch_size=2)')
    with pytest.raises(KeyError, match=r"'train_dataloder': did you mean 'train_dataloader'\?"):
        build_runner_cfg(config)  # tools/train.py and tools/test.py both start here
    with pytest.raises(UnknownConfigKeyError, match="'val_evaluator'"):
        build_runner_cfg(_config(tmp_path, 'val_evalutor = None'))
    with pytest.raises(UnknownConfigKeyError, match="'optim_wrapper'"):
        build_runner_cfg(SEG_TINY, cfg_options={'optim_wraper': dict(type='OptimWrapper')})


def test_own_variables_stay_free(tmp_path):
    # names far from every Runner key, conventional names, and _private close ones
    body = 'my_crop = 32\ntest_pipline = []\n_train_dataloder = 1\nnorm_cfg = None'
    cfg = build_runner_cfg(_config(tmp_path, body))
    assert cfg.my_crop == 32
    for config in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True):
        check_top_level_keys(Config.fromfile(config))  # no shipped config trips it


def test_unknown_beit_argument_names_the_closest():
    with pytest.raises(TypeError, match=r"'drop_path_rat' \(did you mean 'drop_path_rate'\?\)"):
        BEiT(arch='tiny', drop_path_rat=0.1)
    with pytest.raises(TypeError, match="did you mean 'drop_path_rate'"):
        MODELS.build(dict(type='BEiT', arch='tiny', drop_path_rat=0.1))
    import inspect
    assert 'drop_path_rate' in inspect.signature(BEiT).parameters  # the signature is kept


@pytest.mark.parametrize('value', [{1: 1}, 'all', [0.5], [True], (4, ), (-5, ), []])
def test_out_indices_must_be_ints_in_range(value):
    with pytest.raises(ValueError, match=r'out_indices.*\[-4, 4\)'):
        BEiT(arch='tiny', img_size=64, out_indices=value)


def test_out_indices_accepted_forms():
    assert BEiT(arch='tiny', img_size=64, out_indices=-1).out_indices == [3]
    assert BEiT(arch='tiny', img_size=64, out_indices=[0, -2]).out_indices == [0, 2]


@pytest.mark.parametrize('value', [(224, 224, 224), (224, ), (64, 0), -64, 64.0, '224', None])
def test_img_size_must_be_int_or_pair(value):
    with pytest.raises(
            ValueError,
            match=r'img_size must be a positive int or \(H, W\).*got ' + re.escape(repr(value))):
        BEiT(arch='tiny', img_size=value, patch_size=8)


def test_img_size_accepted_forms():
    assert BEiT(arch='tiny', img_size=64, patch_size=8).img_size == (64, 64)
    assert BEiT(arch='tiny', img_size=[64, 32], patch_size=8).img_size == (64, 32)
