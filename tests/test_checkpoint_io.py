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
    with pytest.raises(ValueError, match='garbage.pth'):
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


# ----------------------------------------------------------------- files that are no checkpoint
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CFG = os.path.join(REPO, 'configs', 'beit', 'benchmarks', 'beit-tiny-p8_1xb32-20e_sample.py')


def _tiny_state():
    from mmbeit.models.backbones.beit import BEiT
    torch.manual_seed(0)
    return {
        'backbone.' + k: v
        for k, v in BEiT(arch='tiny', img_size=32, patch_size=8).state_dict().items()
    }


def _save_as(path, kind):
    state = _tiny_state()
    if kind == 'safetensors':
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, str(path), _use_new_zipfile_serialization=kind == 'zip')
    return path


def _truncated(path, kind):
    full = _save_as(path.with_name('full_' + path.name), kind).read_bytes()
    path.write_bytes(full[:len(full) // 2])


# name -> (how to write it, what the message must say it is)
BROKEN = {
    'text.pth': (lambda p: p.write_text('hello, these are my notes\n'), r'is a text file'),
    'page.pth': (lambda p: p.write_text('<!DOCTYPE html>\n<html><head><title>BEiT</title>'),
                 r'is an HTML page \(a web page was saved instead of the file'),
    'empty.pth': (lambda p: p.write_bytes(b''), r'is an empty file \(0 bytes\)'),
    'lfs.bin':
    (lambda p: p.write_text('version https://git-lfs.github.com/spec/v1\noid sha256:ab\n'),
     r'is a Git LFS pointer'),
    'zip_cut.pth':
    (lambda p: _truncated(p, 'zip'), r'is truncated or damaged: a torch checkpoint \(zip format\)'),
    'legacy_cut.pth':
    (lambda p: _truncated(p, 'legacy'), r'is truncated or damaged: a torch checkpoint'),
    'cut.safetensors':
    (lambda p: _truncated(p, 'safetensors'), r'is truncated or damaged: a safetensors file'),
}


def _load_pretrained(path):
    from mmbeit.converters import load_pretrained
    from mmbeit.models.backbones.beit import BEiT
    load_pretrained(BEiT(arch='tiny', img_size=32, patch_size=8), path)


def _get_model(path):
    from mmbeit.apis import get_model
    get_model(TINY_CFG, pretrained=path)


def _mmengine(path):
    from mmengine.runner import load_checkpoint

    from mmbeit.apis import get_model
    load_checkpoint(get_model(TINY_CFG), path, map_location='cpu')


DOORS = {
    'load_checkpoint_file': load_checkpoint_file,
    'load_pretrained': _load_pretrained,
    'get_model(cfg, pretrained=file)': _get_model,
    'mmengine load_checkpoint': _mmengine
}


@pytest.mark.parametrize('door', list(DOORS))
@pytest.mark.parametrize('name', list(BROKEN))
def test_broken_files_are_named_with_what_they_are(name, door, tmp_path, monkeypatch):
    from mmbeit.utils.checkpoint_io import CheckpointFileError
    path = tmp_path / name
    make, what = BROKEN[name]
    make(path)
    if name in ('text.pth', 'page.pth', 'empty.pth', 'lfs.bin'):  # told from the bytes alone
        monkeypatch.setattr(torch, 'load', lambda *a, **k: pytest.fail('torch.load was called'))
    with pytest.raises(CheckpointFileError) as info:
        DOORS[door](str(path))
    msg = str(info.value)
    assert str(path) in msg
    assert __import__('re').search(what, msg), msg
    assert 'expected a checkpoint' in msg or 'Download or copy it again' in msg
    assert isinstance(info.value, ValueError)  # what a caller catches


@pytest.mark.parametrize('kind', ['zip', 'legacy', 'safetensors'])
def test_good_files_of_each_kind_load(kind, tmp_path):
    path = _save_as(tmp_path / f'good.{"safetensors" if kind == "safetensors" else "pth"}', kind)
    assert checkpoint_io.check_checkpoint_file(str(path)) == kind
    loaded = load_checkpoint_file(str(path))
    torch.testing.assert_close(dict(loaded), _tiny_state())


def test_mapped_files_give_their_pages_back(tmp_path):
    """zip and safetensors files are mapped: their tensors name the file, and after release
    their pages are no longer resident (the values stay readable)."""
    from safetensors.torch import save_file
    big = {'w': torch.randn(4096, 1024)}  # 16 MiB
    for path in (tmp_path / 'big.pth', tmp_path / 'big.safetensors'):
        if path.suffix == '.pth':
            torch.save(big, str(path))
        else:
            save_file(big, str(path))
        loaded = load_checkpoint_file(str(path))
        assert checkpoint_io.file_of(loaded) == str(path)
        before = _rss_mib()
        total = float(loaded['w'].sum())  # reads every page
        assert _rss_mib() - before > 12
        assert checkpoint_io.release_file_pages(loaded) > 15 << 20
        assert _rss_mib() - before < 4
        assert float(loaded['w'].sum()) == total
        torch.testing.assert_close(loaded['w'], big['w'])
        assert checkpoint_io.release_file_pages({'x': torch.ones(1 << 20)}) == 0  # not mapped


def _rss_mib() -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    raise RuntimeError('no VmRSS')


def test_a_transformers_index_without_weight_map_is_named(tmp_path):
    import json

    from mmbeit.converters import read_checkpoint
    from mmbeit.converters.transformers import CONFIG_FILE, INDEX_FILES
    (tmp_path / CONFIG_FILE).write_text(json.dumps({'model_type': 'beit'}))
    (tmp_path / INDEX_FILES[0]).write_text(json.dumps({'metadata': {}}))
    with pytest.raises(ValueError, match=f'{INDEX_FILES[0]}: not a weight index.*weight_map'):
        read_checkpoint(str(tmp_path))
