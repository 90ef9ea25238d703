"""A checkpoint whose pickle would run code is refused on every loading path; the code never
runs."""
import os
import pickle

import numpy as np
import pytest
import torch

from mmbeit.utils.checkpoint_io import load_checkpoint_file
from helpers import serve_folder  # tests/helpers.py


class WritesMarker:
    """Unpickling this writes a file (through exec and open().write)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return exec, (f'open({self.marker!r}, "w").write("pwned")', )


class SystemMarker:
    """Unpickling this runs a shell command (os.system) that creates a file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


class FetchesAttribute:
    """Unpickling this calls getattr(owner, name): allowed for mmengine's own uses only."""

    def __init__(self, owner, name: str):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return getattr, (self.owner, self.name)


@pytest.fixture(params=[WritesMarker, SystemMarker])
def evil(request, tmp_path):
    """(path of a malicious checkpoint, path its payload would create)."""
    marker = str(tmp_path / 'marker')
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict=dict(weight=torch.zeros(2)), payload=request.param(marker)), path)
    # control: the payload really runs when unpickled without weights_only
    torch.load(path, weights_only=False)
    assert os.path.exists(marker)
    os.remove(marker)
    return path, marker


def test_refused_from_a_path(evil):
    path, marker = evil
    with pytest.raises(pickle.UnpicklingError, match='refused|Refused') as info:
        load_checkpoint_file(path)
    assert path in str(info.value) and 'safety' in str(info.value)
    assert not os.path.exists(marker)


def test_refused_by_mmengine(evil):
    from mmengine.runner import load_checkpoint
    path, marker = evil
    with pytest.raises(pickle.UnpicklingError, match='safety'):
        load_checkpoint(torch.nn.Linear(2, 2), path)
    assert not os.path.exists(marker)
    # torch's own default (weights_only=True) refuses it too
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    assert not os.path.exists(marker)


@pytest.fixture()
def served(tmp_path):
    """Serve tmp_path/'www' on 127.0.0.1 at a free port; yields the base URL."""
    root = tmp_path / 'www'
    root.mkdir()
    with serve_folder(root) as base_url:
        yield base_url, root


def test_refused_from_a_url(evil, served, tmp_path, monkeypatch):
    from mmengine.runner import load_checkpoint
    path, marker = evil
    base, root = served
    os.replace(path, root / 'evil.pth')
    url = f'{base}/evil.pth'
    cache = tmp_path / 'cache'
    monkeypatch.setenv('MMBEIT_CACHE_DIR', str(cache))

    with pytest.raises(pickle.UnpicklingError, match='safety'):
        load_checkpoint_file(url)
    with pytest.raises(pickle.UnpicklingError, match='safety'):
        load_checkpoint(torch.nn.Linear(2, 2), url)
    # torch.hub (and mmengine's load_url, which is it) now defaults to weights_only
    with pytest.raises(pickle.UnpicklingError):
        torch.hub.load_state_dict_from_url(url, model_dir=str(tmp_path / 'hub'), progress=False)
    assert not os.path.exists(marker)


def test_getattr_is_limited_to_mmengine_uses(tmp_path):
    from mmengine.logging import HistoryBuffer
    allowed = tmp_path / 'allowed.pth'
    torch.save(dict(stat=FetchesAttribute(HistoryBuffer, 'mean')), allowed)
    assert load_checkpoint_file(str(allowed))['stat'] is HistoryBuffer.mean
    for owner, name in [(HistoryBuffer, '__init__'), (np.ndarray, 'tofile'),
                        (HistoryBuffer, '__class__')]:
        path = tmp_path / f'gadget_{name}.pth'
        torch.save(dict(stat=FetchesAttribute(owner, name)), path)
        with pytest.raises(pickle.UnpicklingError, match=r'getattr\(.*is not allowed'):
            load_checkpoint_file(str(path))
