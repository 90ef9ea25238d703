"""Safe checkpoint loading: .pth, .safetensors, atomic hash-checked URL downloads, mmengine's
loaders."""
import hashlib
import http.server
import io
import os
import pickle
import time

import numpy as np
import pytest
import torch

from mmbeit.utils import checkpoint_io
from mmbeit.utils.checkpoint_io import (CheckpointDownloadError, cached_path_for,
                                        download_checkpoint, get_cache_dir, load_checkpoint_file)
from helpers import serve  # tests/helpers.py


def _checkpoint_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _sha8(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def _files_under(folder) -> list:
    return [os.path.join(root, f) for root, _, files in os.walk(folder) for f in files]


class _Handler(http.server.BaseHTTPRequestHandler):
    """/ok/<name>: the body; /truncated/<name>: half of it, then close;
    /stall/<name>: half of it, then silence; anything else: 404."""

    files: dict = {}
    hits: dict = {}

    def do_GET(self):
        kind, _, name = self.path.lstrip('/').partition('/')
        data = self.files.get(name)
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if data is None or kind not in ('ok', 'truncated', 'stall'):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if kind == 'ok':
            self.wfile.write(data)
            return
        self.wfile.write(data[:len(data) // 2])
        self.wfile.flush()
        if kind == 'stall':
            time.sleep(3)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    """A local http server on a free port; yields (base URL, files dict, hits)."""
    _Handler.files, _Handler.hits = {}, {}
    with serve(_Handler) as base_url:
        yield base_url, _Handler.files, _Handler.hits


@pytest.fixture()
def state():
    torch.manual_seed(0)
    return {'backbone.w': torch.randn(3, 4), 'backbone.b': torch.randn(4)}


def test_local_pth_with_numpy_meta(tmp_path, state):
    path = tmp_path / 'model.pth'
    torch.save(dict(state_dict=state, meta=dict(score=np.float32(0.25), arr=np.ones(2))), path)
    checkpoint = load_checkpoint_file(str(path))
    torch.testing.assert_close(checkpoint['state_dict'], state)
    assert checkpoint['meta']['score'] == np.float32(0.25)


def test_safetensors_loads_without_pickle(tmp_path, state, monkeypatch):
    from safetensors.torch import save_file
    save_file(state, str(tmp_path / 'model.safetensors'))
    save_file(state, str(tmp_path / 'model.bin'))  # recognised by its header

    def refuse(*args, **kwargs):
        raise AssertionError('pickle was used')

    monkeypatch.setattr(pickle, 'Unpickler', refuse)
    monkeypatch.setattr(pickle, 'load', refuse)
    monkeypatch.setattr(pickle, 'loads', refuse)
    monkeypatch.setattr(torch, 'load', refuse)
    for name in ('model.safetensors', 'model.bin'):
        loaded = load_checkpoint_file(str(tmp_path / name))
        torch.testing.assert_close(loaded, state)


def test_load_errors_name_the_file(tmp_path):
    missing = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_checkpoint_file(missing)
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'\x00not a checkpoint' * 10)
    with pytest.raises((RuntimeError, pickle.UnpicklingError), match='garbage.pth'):
        load_checkpoint_file(str(garbage))
    tensor_only = tmp_path / 'tensor.pth'
    torch.save(torch.zeros(2), tensor_only)
    with pytest.raises(TypeError, match='tensor.pth'):
        load_checkpoint_file(str(tensor_only))


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(checkpoint_io.CACHE_DIR_ENV, raising=False)
    assert get_cache_dir() == os.path.expanduser('~/.cache/mmbeit/checkpoints')
    monkeypatch.setenv(checkpoint_io.CACHE_DIR_ENV, str(tmp_path / 'env'))
    assert get_cache_dir() == str(tmp_path / 'env')
    assert get_cache_dir(str(tmp_path / 'arg')) == str(tmp_path / 'arg')


def test_cached_paths():
    hashed = 'https://x.org/beit_20221128-0ca393e9.pth'
    assert cached_path_for(hashed, '/c') == '/c/beit_20221128-0ca393e9.pth'
    first = cached_path_for('https://a.org/m1/pytorch_model.bin', '/c')
    second = cached_path_for('https://a.org/m2/pytorch_model.bin', '/c')
    assert first != second and first.endswith('/pytorch_model.bin')
    with pytest.raises(ValueError, match='file name'):
        cached_path_for('https://a.org/', '/c')


def test_url_download_loads_and_caches(tmp_path, server, state):
    base, files, hits = server
    data = _checkpoint_bytes(dict(state_dict=state))
    name = f'tiny_20240101-{_sha8(data)}.pth'
    files[name] = data
    url = f'{base}/ok/{name}'
    checkpoint = load_checkpoint_file(url, cache_dir=str(tmp_path))
    torch.testing.assert_close(checkpoint['state_dict'], state)
    assert _files_under(tmp_path) == [str(tmp_path / name)]
    load_checkpoint_file(url, cache_dir=str(tmp_path))
    assert hits[f'/ok/{name}'] == 1  # the second load read the cache


def test_wrong_hash_prefix_is_refused(tmp_path, server, state):
    base, files, _ = server
    data = _checkpoint_bytes(dict(state_dict=state))
    wrong = 'deadbeef' if not _sha8(data).startswith('deadbeef') else 'feedface'
    name = f'tiny-{wrong}.pth'
    files[name] = data
    url = f'{base}/ok/{name}'
    with pytest.raises(CheckpointDownloadError, match=f'{url}.*sha256'):
        load_checkpoint_file(url, cache_dir=str(tmp_path))
    assert _files_under(tmp_path) == []
    # without the check the same file is accepted
    assert download_checkpoint(url, str(tmp_path), check_hash=False)


@pytest.mark.parametrize('kind,message', [('truncated', 'closed after'), ('stall', 'timed out')])
def test_broken_download_leaves_nothing(tmp_path, server, state, kind, message):
    base, files, _ = server
    files['broken.pth'] = _checkpoint_bytes(dict(state_dict=state))
    url = f'{base}/{kind}/broken.pth'
    with pytest.raises(CheckpointDownloadError, match=message) as info:
        load_checkpoint_file(url, cache_dir=str(tmp_path), timeout=0.5)
    assert url in str(info.value)
    assert _files_under(tmp_path) == []


def test_http_error_names_the_url(tmp_path, server):
    base, _, _ = server
    url = f'{base}/ok/absent.pth'
    with pytest.raises(CheckpointDownloadError, match='404') as info:
        load_checkpoint_file(url, cache_dir=str(tmp_path))
    assert url in str(info.value)


def test_mmengine_loads_urls_through_our_downloader(tmp_path, server, state, monkeypatch):
    from mmengine.runner import CheckpointLoader, load_checkpoint
    monkeypatch.setenv(checkpoint_io.CACHE_DIR_ENV, str(tmp_path))
    base, files, _ = server
    model = torch.nn.Linear(3, 4)
    expected = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    data = _checkpoint_bytes(dict(state_dict=expected))
    files[f'linear-{_sha8(data)}.pth'] = data
    url = f'{base}/ok/linear-{_sha8(data)}.pth'

    assert CheckpointLoader._get_checkpoint_loader(url) is checkpoint_io.load_from_safe_http
    assert CheckpointLoader._get_checkpoint_loader('x.pth') is checkpoint_io.load_from_safe_local
    load_checkpoint(model, url, strict=True)
    torch.testing.assert_close(model.state_dict(), expected)
    assert _files_under(tmp_path) == [str(tmp_path / f'linear-{_sha8(data)}.pth')]
