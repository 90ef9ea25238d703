"""docs/offline.md: a zoo name whose weights URL is in the mmbeit cache loads without any
request, at the path the page's command prints; without it, the error names the URL.
(Hub ids offline, ``HF_HUB_OFFLINE=1``: tests/test_hub.py.)"""
import os
import os.path as osp
import urllib.error
import urllib.request

import pytest
import torch

from mmbeit.apis import get_model, get_model_info, model_zoo
from mmbeit.utils.checkpoint_io import CheckpointDownloadError, cached_path_for
from helpers import randomize_  # tests/helpers.py

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLS_TINY = osp.join(ROOT, 'configs/beit/benchmarks/beit-tiny-p8_1xb32-20e_sample.py')
URL = 'https://download.openmmlab.com/mmbeit/beit-tiny_offline-0123abcd.pth'


@pytest.fixture
def offline_zoo(tmp_path, monkeypatch):
    """A zoo entry with a weights URL, the mmbeit cache in tmp_path, and no network."""
    monkeypatch.setenv('MMBEIT_CACHE_DIR', str(tmp_path / 'cache'))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError('no network (test)')

    monkeypatch.setattr(urllib.request, 'urlopen', no_network)
    metafile = tmp_path / 'metafile.yml'
    metafile.write_text(f'Models:\n  - Name: beit-tiny_offline-test\n    Config: {CLS_TINY}\n'
                        f'    Weights: {URL}\n')
    model_zoo.register_model_index(str(metafile))
    yield 'beit-tiny_offline-test'
    model_zoo._EXTRA_INDEXES.remove(osp.abspath(str(metafile)))
    model_zoo.clear_cache()


def test_cached_url_is_used_without_a_request(offline_zoo, tmp_path):
    # weights no fresh model has: every float entry moved off its init, each to other values
    # (a shared offset would not catch swapped layers)
    weights = randomize_(get_model(CLS_TINY)).state_dict()
    # what docs/offline.md's command prints: where to put a file downloaded elsewhere
    path = cached_path_for(get_model_info(offline_zoo).weights)
    assert path == str(tmp_path / 'cache' / 'beit-tiny_offline-0123abcd.pth')
    with pytest.raises(CheckpointDownloadError, match='Downloading .*beit-tiny_offline'):
        get_model(offline_zoo, pretrained=True)  # not cached yet, and no network
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({'state_dict': weights}, path)
    model = get_model(offline_zoo, pretrained=True)
    fresh = get_model(CLS_TINY).state_dict()
    assert model.state_dict().keys() == weights.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
        if value.is_floating_point():
            assert not torch.equal(value, fresh[key]), key  # from the file, not the init
