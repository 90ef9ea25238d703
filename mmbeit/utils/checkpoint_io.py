"""Safe checkpoint loading: local files, URLs and mmengine's loaders.

Since torch 2.6, ``torch.load`` unpickles with ``weights_only=True``: only
tensors, containers and an allowlist of types. mmengine's checkpoints carry a
few more (``HistoryBuffer``, numpy arrays and scalars), so its resume fails.
Turning ``weights_only`` off is not the fix: it lets a downloaded checkpoint run
code. Here we allow exactly the types mmengine's own checkpoints carry
(:func:`register_safe_globals`), load ``.safetensors`` without pickle at all,
download URLs atomically with the torch.hub hash check, and route mmengine's
``load_checkpoint`` / ``Runner(load_from=..., resume=...)`` through the same code
(:func:`register_mmengine_loaders`). :mod:`mmbeit.compat` applies all of it on
``import mmbeit``.
"""
import contextlib
import ctypes
import functools
import hashlib
import http.client
import inspect
import json
import math
import mmap
import os
import os.path as osp
import pickle
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import weakref
import zipfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch

__all__ = [
    'CACHE_DIR_ENV', 'CheckpointDownloadError', 'CheckpointFileError', 'check_checkpoint_file',
    'release_file_pages', 'file_of', 'load_checkpoint_file', 'download_checkpoint', 'atomic_path',
    'safe_torch_load', 'get_cache_dir', 'cached_path_for', 'is_url', 'register_safe_globals',
    'mmengine_safe_globals', 'make_hub_weights_only', 'register_mmengine_loaders',
    'load_from_safe_local', 'load_from_safe_http'
]

CACHE_DIR_ENV = 'MMBEIT_CACHE_DIR'
DEFAULT_CACHE_DIR = osp.join('~', '.cache', 'mmbeit', 'checkpoints')
# torch.hub's convention, name-<first 8+ hex digits of the sha256>.ext
HASH_PREFIX_RE = re.compile(r'-([a-f0-9]{8,64})\.')
DEFAULT_TIMEOUT = 60.0
_CHUNK_BYTES = 1 << 20

MapLocation = Union[None, str, torch.device, Dict[str, str], Callable]  # as torch.load


class CheckpointDownloadError(RuntimeError):
    """A checkpoint URL could not be downloaded, or its content was wrong."""


class CheckpointFileError(ValueError):
    """A file that is not a readable checkpoint: empty, truncated, text, an HTML page, ...

    The message names the file, what it is and what was expected. Catch it as
    ``ValueError`` (or as this class, ``mmbeit.utils.checkpoint_io.CheckpointFileError``).
    """


def is_url(path: Any) -> bool:
    """Whether ``path`` is an http(s) URL."""
    return isinstance(path, str) and path.startswith(('http://', 'https://'))


def get_cache_dir(cache_dir: Optional[str] = None) -> str:
    """The download cache: ``cache_dir``, else ``$MMBEIT_CACHE_DIR``, else
    ``~/.cache/mmbeit/checkpoints``."""
    chosen = cache_dir or os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR
    return osp.abspath(osp.expanduser(chosen))


def cached_path_for(url: str,
                    cache_dir: Optional[str] = None,
                    file_name: Optional[str] = None) -> str:
    """Where :func:`download_checkpoint` keeps ``url``.

    A name with a hash prefix is unique by content and lies directly in the
    cache (as torch.hub does); any other name (``pytorch_model.bin``,
    ``model.safetensors``) gets a folder per URL so that two URLs never share
    a file.
    """
    name = file_name or osp.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if not name or name in ('.', '..') or '/' in name or '\\' in name:
        raise ValueError(f'Cannot derive a file name from the URL {url!r}; '
                         'pass file_name=...')
    root = get_cache_dir(cache_dir)
    if HASH_PREFIX_RE.search(name):
        return osp.join(root, name)
    url_digest = hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]
    return osp.join(root, url_digest, name)


@contextlib.contextmanager
def atomic_path(dst: str) -> Iterator[str]:
    """A temporary path beside ``dst`` to write to; moved onto ``dst`` (``os.replace``) only
    when the block ends without an error, removed otherwise.

    A reader, or a kill, sees the old file or the new one, never half of one; and ``dst``
    may be the very file whose mapped tensors are being written (converting a file onto
    itself: writing in place would truncate the pages being read).
    """
    folder, name = osp.split(osp.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{name}.', suffix='.part')
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def download_checkpoint(url: str,
                        cache_dir: Optional[str] = None,
                        *,
                        timeout: float = DEFAULT_TIMEOUT,
                        check_hash: bool = True,
                        file_name: Optional[str] = None) -> str:
    """Download ``url`` into the cache (once) and return the local path.

    The body goes to a temporary file in the cache folder and is moved into
    place with ``os.replace`` only when complete (and, when the file name
    carries a hash prefix, when its sha256 matches), so an interrupted or bad
    download never leaves a file that a later call would use.

    Args:
        url: http(s) URL of the checkpoint.
        cache_dir: Cache folder; see :func:`get_cache_dir`.
        timeout: Seconds to wait for the connection and for each read.
        check_hash: Check the sha256 prefix in ``name-<hash>.ext`` names.
        file_name: Name to store the file under instead of the URL's.

    Raises:
        CheckpointDownloadError: On HTTP/network errors, time-outs, a body
            shorter than announced, or a hash mismatch; the message names the URL.
    """
    dst = cached_path_for(url, cache_dir, file_name)
    if osp.isfile(dst):
        return dst
    folder, name = osp.split(dst)
    os.makedirs(folder, exist_ok=True)
    match = HASH_PREFIX_RE.search(name) if check_hash else None

    from mmengine.logging import print_log
    print_log(f'Downloading {url} to {dst}', logger='current')
    with atomic_path(dst) as tmp:
        with open(tmp, 'wb') as f:
            digest = _fetch(url, f, timeout)
        if match and not digest.startswith(match.group(1)):
            raise CheckpointDownloadError(
                f'Downloaded {url} but its sha256 {digest} does not start with '
                f'{match.group(1)}, the hash prefix in its file name; the file '
                'was discarded (corrupt download, or a wrong URL).')
    return dst


def _fetch(url: str, f, timeout: float) -> str:
    """Stream ``url`` into the open file ``f``; return the body's sha256."""
    request = urllib.request.Request(url, headers={'User-Agent': 'mmbeit'})
    sha256 = hashlib.sha256()
    size, expected = 0, None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get('Content-Length')
            expected = int(length) if length and length.isdigit() else None
            while True:
                chunk = response.read(_CHUNK_BYTES)
                if not chunk:
                    break
                f.write(chunk)
                sha256.update(chunk)
                size += len(chunk)
    except urllib.error.HTTPError as e:
        raise CheckpointDownloadError(f'Downloading {url} failed: HTTP {e.code} {e.reason}') from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise CheckpointDownloadError(f'Downloading {url} timed out after {timeout} s') from e
        raise CheckpointDownloadError(f'Downloading {url} failed: {e.reason}') from e
    except TimeoutError as e:
        raise CheckpointDownloadError(
            f'Downloading {url} timed out: no data for {timeout} s') from e
    except (OSError, http.client.HTTPException) as e:
        raise CheckpointDownloadError(f'Downloading {url} failed: {type(e).__name__}: {e}') from e
    # http.client does not complain when the server closes early; we do
    if expected is not None and size != expected:
        raise CheckpointDownloadError(
            f'Downloading {url} failed: the connection closed after {size} of '
            f'{expected} bytes')
    return sha256.hexdigest()


def safe_torch_load(path: str, map_location: MapLocation = 'cpu', mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Only tensors, containers and the allowlisted types
    (:func:`register_safe_globals`) are accepted; a pickle that would build
    anything else, or call a function, is refused.

    Args:
        path: a ``torch.save`` file.
        map_location: as in ``torch.load``.
        mmap: map the file instead of reading it (zip files only): the tensors are
            backed by the file's pages, so loading holds no second copy in memory.

    Raises:
        pickle.UnpicklingError: The file is refused for safety.
        CheckpointFileError: The file is not a readable torch checkpoint (a ``ValueError``).
    """
    try:
        loaded = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if 'truncated' in str(e):
            raise _truncated(path, 'a torch checkpoint (legacy format)') from e
        detail = str(e).split('WeightsUnpickler error:')[-1].strip()
        detail = detail.split('\n\nCheck the documentation')[0].strip()
        raise pickle.UnpicklingError(
            f'Refused to load the checkpoint {path} for safety: it holds '
            'objects outside the weights-only allowlist, and unpickling them '
            'could run code. Convert it to a plain state dict (or safetensors) '
            'where you trust it. Reason: ' + detail) from e
    except EOFError as e:
        raise _truncated(path, 'a torch checkpoint') from e
    except (RuntimeError, ValueError, OSError, KeyError) as e:
        if 'EOF' in str(e) or 'truncated' in str(e):
            raise _truncated(path, 'a torch checkpoint', f'; {e}') from e
        raise CheckpointFileError(f'Cannot read the checkpoint {path}: {type(e).__name__}: {e}; '
                                  f'{EXPECTED_CHECKPOINT}') from e
    if mmap:
        _register_file_backed(loaded, path)
    return loaded


# ---------------------------------------------------------------------------
# What a file is, before anything unpickles it.

EXPECTED_CHECKPOINT = ('expected a checkpoint: a torch.save file (.pth / .bin / .pt) or a '
                       '.safetensors file')
_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_PROTOCOLS = (b'\x80\x02', b'\x80\x03', b'\x80\x04', b'\x80\x05')


def _truncated(path: str, what: str, detail: str = '') -> CheckpointFileError:
    size = osp.getsize(path)
    return CheckpointFileError(f'{path} is truncated or damaged: {what} that ends early '
                               f'({size} bytes{detail}). Download or copy it again.')


def _safetensors_header(path: str, head: bytes, size: int) -> Optional[dict]:
    """The parsed header of a safetensors file (None if it is not one)."""
    if len(head) < 10 or head[8:9] != b'{':
        return None
    n = int.from_bytes(head[:8], 'little')
    if n > 100 << 20:  # no safetensors header is 100 MB of JSON
        return None
    if 8 + n > size:
        raise _truncated(path, 'a safetensors file', f'; its header alone needs {8 + n}')
    with open(path, 'rb') as f:
        f.seek(8)
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return None
    if not isinstance(header, dict):
        return None
    ends = [
        v['data_offsets'][1] for k, v in header.items()
        if k != '__metadata__' and isinstance(v, dict) and 'data_offsets' in v
    ]
    need = 8 + n + max(ends, default=0)
    if need > size:
        raise _truncated(path, 'a safetensors file', f'; its header promises {need}')
    return header


def _describe_other(head: bytes) -> str:
    """What a file that is no checkpoint is, from its first bytes."""
    text = head.lstrip(b'\xef\xbb\xbf \t\r\n')
    low = text[:64].lower()
    if text.startswith(b'version https://git-lfs'):
        return 'a Git LFS pointer, not the weights it points to (run `git lfs pull`)'
    if low.startswith((b'<!doctype html', b'<html', b'<head', b'<body')) or b'<html' in low:
        return ('an HTML page (a web page was saved instead of the file: download the file '
                'itself, e.g. the "resolve" URL on the Hugging Face Hub, not the "blob" page)')
    if low.startswith(b'<'):
        return 'an XML or HTML document (an error page of a server?)'
    if text.startswith((b'{', b'[')):
        return 'a JSON file'
    try:
        head.decode('utf-8')
        printable = True
    except UnicodeDecodeError:
        printable = False
    if printable:
        return f'a text file (it starts with {head[:40]!r})'
    return f'not a checkpoint (it starts with the bytes {head[:16]!r})'


def check_checkpoint_file(path: str) -> str:
    """What kind of checkpoint ``path`` is, read from its bytes (nothing is unpickled).

    Returns:
        ``'zip'`` (torch.save's format since torch 1.6), ``'legacy'`` (older torch.save
        files, and other pickles) or ``'safetensors'``.

    Raises:
        CheckpointFileError: an empty, truncated or damaged file, or a file that is no
            checkpoint (text, an HTML page, a Git LFS pointer, ...): the message says which.
    """
    size = osp.getsize(path)
    if size == 0:
        raise CheckpointFileError(f'{path} is an empty file (0 bytes); {EXPECTED_CHECKPOINT}')
    with open(path, 'rb') as f:
        head = f.read(512)
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise _truncated(path, 'a torch checkpoint (zip format)', '; its archive has no end')
        return 'zip'
    if _safetensors_header(path, head, size) is not None:
        return 'safetensors'
    if head.startswith(_PICKLE_PROTOCOLS):
        return 'legacy'
    raise CheckpointFileError(f'{path} is {_describe_other(head)}; {EXPECTED_CHECKPOINT}')


# ---------------------------------------------------------------------------
# Tensors backed by a file's pages (torch.load(mmap=True), safetensors): after the
# loader copied one into the model, its pages can go back to the kernel, so that a
# whole load never holds the file's weights besides the model's.

_ST_DTYPES = {
    'F64': torch.float64,
    'F32': torch.float32,
    'F16': torch.float16,
    'BF16': torch.bfloat16,
    'I64': torch.int64,
    'I32': torch.int32,
    'I16': torch.int16,
    'I8': torch.int8,
    'U8': torch.uint8,
    'BOOL': torch.bool
}
# data_ptr of a file-backed storage -> (its size in bytes, the file); an entry goes with its
# tensor (weakref.finalize), so an address reused by other memory is never taken for the file
_FILE_BACKED: Dict[int, Tuple[int, str]] = {}
_MADV_PAGEOUT = 21  # Linux >= 5.4: reclaim the pages (written-to pages are kept)
_PAGE = mmap.PAGESIZE


def _register_file_backed(obj: Any, path: str) -> None:
    if isinstance(obj, torch.Tensor):
        if obj.device.type == 'cpu' and obj.untyped_storage().nbytes():
            storage = obj.untyped_storage()
            ptr = storage.data_ptr()
            _FILE_BACKED[ptr] = (storage.nbytes(), path)
            weakref.finalize(obj, _FILE_BACKED.pop, ptr, None)
    elif isinstance(obj, dict):
        for v in obj.values():
            _register_file_backed(v, path)


def file_of(tensors: Any) -> Optional[str]:
    """The file that :func:`load_checkpoint_file` mapped these tensors from, if any."""
    values = tensors.values() if isinstance(tensors, dict) else tensors
    for t in values:
        if isinstance(t, torch.Tensor) and t.device.type == 'cpu':
            entry = _FILE_BACKED.get(t.untyped_storage().data_ptr())
            if entry is not None:
                return entry[1]
    return None


@functools.lru_cache(maxsize=None)
def _madvise() -> Optional[Callable]:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def release_file_pages(tensors: Any) -> int:
    """Give the resident pages of file-backed tensors back to the kernel.

    Only tensors that :func:`load_checkpoint_file` mapped from a file are touched; they
    stay valid (a later read maps the pages in again). Others are left alone.

    Returns:
        How many bytes were released (0 where the OS has no ``MADV_PAGEOUT``).
    """
    fn = _madvise()
    if fn is None:
        return 0
    released = 0
    values = tensors.values() if isinstance(tensors, dict) else tensors
    for t in values:
        if not isinstance(t, torch.Tensor) or t.device.type != 'cpu':
            continue
        storage = t.untyped_storage()
        nbytes = _FILE_BACKED.get(storage.data_ptr(), (None, ))[0]
        if nbytes is None:
            continue
        start = -(-storage.data_ptr() // _PAGE) * _PAGE  # whole pages inside the storage
        end = (storage.data_ptr() + nbytes) // _PAGE * _PAGE
        if end > start and fn(start, end - start, _MADV_PAGEOUT) == 0:
            released += end - start
    return released


def _load_safetensors(path: str, map_location: MapLocation) -> Dict[str, torch.Tensor]:
    """A safetensors file as tensors backed by the file's pages (mapped, copy-on-write)."""
    if map_location is None:
        device = 'cpu'
    elif isinstance(map_location, (str, torch.device)):
        device = str(map_location)
    else:
        raise ValueError(f'map_location for the safetensors file {path} must be '
                         f'a device (str or torch.device), got {map_location!r}')
    with open(path, 'rb') as f:
        n = int.from_bytes(f.read(8), 'little')
        header = json.loads(f.read(n))
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if osp.getsize(path) else None
    out: Dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        dtype = _ST_DTYPES.get(info.get('dtype'))
        if dtype is None:
            raise CheckpointFileError(f'{path}: tensor {name!r} has dtype {info.get("dtype")!r}; '
                                      f'mmbeit reads {sorted(_ST_DTYPES)}')
        shape, (start, end) = info['shape'], info['data_offsets']
        numel = math.prod(shape)
        if end - start != numel * dtype.itemsize:
            raise CheckpointFileError(f'{path} is damaged: tensor {name!r} of shape {shape} '
                                      f'has {end - start} bytes')
        if numel == 0:
            tensor = torch.empty(shape, dtype=dtype)
        else:
            tensor = torch.frombuffer(
                mapped, dtype=dtype, count=numel, offset=8 + n + start).view(shape)
            _register_file_backed(tensor, path)
        out[name] = tensor if device == 'cpu' else tensor.to(device)
    return out


def load_checkpoint_file(path_or_url: Union[str, os.PathLike],
                         map_location: MapLocation = 'cpu',
                         *,
                         cache_dir: Optional[str] = None,
                         timeout: float = DEFAULT_TIMEOUT,
                         check_hash: bool = True) -> dict:
    """Load a checkpoint safely from a path or an http(s) URL.

    What the file is comes from its bytes (:func:`check_checkpoint_file`), not its name.
    ``.safetensors`` files are mapped (no pickle), zip ``torch.save`` files are mapped
    and read by :func:`safe_torch_load`: the tensors are backed by the file's pages, so
    loading holds no second copy of the weights in memory (the loader gives the pages
    back once copied: :func:`release_file_pages`). URLs are downloaded first with
    :func:`download_checkpoint`.

    Args:
        path_or_url: Local path, or http(s) URL.
        map_location: As in ``torch.load``; a device for safetensors.
            Defaults to ``'cpu'``.
        cache_dir: Download cache for URLs; see :func:`get_cache_dir`.
        timeout: Seconds to wait for the connection and for each read.
        check_hash: Check the sha256 prefix of ``name-<hash>.ext`` URLs.

    Returns:
        The checkpoint (a state dict, or a dict holding one).

    Raises:
        FileNotFoundError: no such file.
        CheckpointFileError: a ``ValueError``: the file is empty, truncated, or no
            checkpoint (text, an HTML page, ...); the message says which.
        pickle.UnpicklingError: the file holds objects that could run code (refused).
        TypeError: the file holds something other than a dict.
    """
    if is_url(path_or_url):
        path = download_checkpoint(path_or_url, cache_dir, timeout=timeout, check_hash=check_hash)
    else:
        path = osp.expanduser(os.fspath(path_or_url))
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint file not found: {path}')
    kind = check_checkpoint_file(path)
    if kind == 'safetensors':
        checkpoint = _load_safetensors(path, map_location)
    else:
        on_cpu = map_location is None or str(map_location) == 'cpu'
        checkpoint = safe_torch_load(path, map_location, mmap=kind == 'zip' and on_cpu)
    if not isinstance(checkpoint, dict):
        raise TypeError(f'The checkpoint {path} holds a {type(checkpoint).__name__}; '
                        'expected a dict (a state dict, or a dict with one).')
    return checkpoint


# ---------------------------------------------------------------------------
# What torch.load(weights_only=True) may build from mmengine's checkpoints.


class _ClassReference:
    """Stands for a class in a checkpoint from which only named static methods
    may be fetched; it cannot be called or instantiated."""

    def __init__(self, qualified_name: str):
        self.qualified_name = qualified_name  # named, not imported: see _one_cycle_reference

    def __repr__(self) -> str:
        return f'<reference to {self.qualified_name}>'


@functools.lru_cache(maxsize=None)
def _getattr_rules() -> tuple:
    """(owner as seen in the pickle, allowed names, object to read them from)."""
    from mmengine.logging import HistoryBuffer
    from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
    return (
        # HistoryBuffer pickles its statistics methods as getattr(cls, name)
        (HistoryBuffer, frozenset({'min', 'max', 'current', 'mean'}), HistoryBuffer),
        # OneCycle schedulers keep their anneal function (a staticmethod)
        (_one_cycle_reference(), frozenset({'_annealing_cos',
                                            '_annealing_linear'}), OneCycleParamScheduler),
    )


@functools.lru_cache(maxsize=None)
def _one_cycle_reference() -> _ClassReference:
    # by name: importing mmengine.optim costs seconds that ``import mmbeit`` must not
    return _ClassReference('mmengine.optim.scheduler.param_scheduler.OneCycleParamScheduler')


def _restricted_getattr(owner: Any, name: str) -> Any:
    """``builtins.getattr`` as weights-only ``torch.load`` sees it: only the
    methods listed in :func:`_getattr_rules` may be fetched."""
    for allowed_owner, names, source in _getattr_rules():
        if owner is allowed_owner and name in names:
            return getattr(source, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not allowed in a weights-only checkpoint')


@functools.lru_cache(maxsize=None)
def mmengine_safe_globals() -> List[Any]:
    """The globals that mmengine checkpoints carry, for ``add_safe_globals``.

    Found by saving a Runner checkpoint and listing
    ``torch.serialization.get_unsafe_globals_in_checkpoint``: the message
    hub's ``HistoryBuffer`` (with its statistics methods fetched by getattr)
    and numpy arrays, scalars and dtypes. numpy 1.x spelled ``numpy._core`` as
    ``numpy.core``, so both names are mapped.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    import argparse

    # unilm's released checkpoints carry their training arguments (a Namespace of plain values)
    entries: List[Any] = [HistoryBuffer, np.ndarray, np.dtype, argparse.Namespace]
    # dtype classes (numpy.dtypes.Float64DType, ...)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        entries += [
            v for v in vars(dtypes).values() if isinstance(v, type) and issubclass(v, np.dtype)
        ]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries.append((multiarray._reconstruct, f'{module}._reconstruct'))
        entries.append((multiarray.scalar, f'{module}.scalar'))
    entries.append((_restricted_getattr, 'builtins.getattr'))
    entries.append(
        (_one_cycle_reference(), 'mmengine.optim.scheduler.param_scheduler.OneCycleParamScheduler'))
    return entries


def register_safe_globals() -> bool:
    """Allow :func:`mmengine_safe_globals` in weights-only ``torch.load``.

    Returns:
        False where torch has no ``add_safe_globals`` (torch < 2.4).
    """
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:
        return False
    add_safe_globals(mmengine_safe_globals())
    return True


def make_hub_weights_only() -> bool:
    """Make ``torch.hub.load_state_dict_from_url`` default to ``weights_only=True``.

    torch.load defaults to weights-only since torch 2.6, but
    ``load_state_dict_from_url`` (also ``torch.utils.model_zoo.load_url`` and
    mmengine's ``load_url``) still defaults to ``weights_only=False``: a
    downloaded checkpoint could run code. The default is changed on the
    function object itself, so every alias of it is covered; an explicit
    ``weights_only=False`` is still honoured.

    Returns:
        True if the default was changed now.
    """
    import torch.hub
    fn = torch.hub.load_state_dict_from_url
    param = inspect.signature(fn).parameters.get('weights_only')
    if param is None or param.default is not False:
        return False
    if param.kind is inspect.Parameter.KEYWORD_ONLY:
        fn.__kwdefaults__ = {**fn.__kwdefaults__, 'weights_only': True}
        return True
    with_defaults = [
        p.name for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty
    ]
    defaults = list(fn.__defaults__)
    defaults[with_defaults.index('weights_only')] = True
    fn.__defaults__ = tuple(defaults)
    return True


# ---------------------------------------------------------------------------
# mmengine's CheckpointLoader schemes (``load_from_`` + name, as mmengine logs
# ``name`` as the backend).


def with_meta(checkpoint: Any) -> Any:
    """A checkpoint as mmengine's callers read it: with a ``meta`` dict.

    mmseg's ``init_model`` reads ``checkpoint['meta']`` unguarded, so a file that is
    not mmengine's (a bare state dict of timm or transformers, unilm's ``{'model':
    ...}``) would fail there after loading. A bare state dict becomes
    ``{'state_dict': ..., 'meta': {}}``; a wrapped one gets an empty ``meta``.
    """
    if not isinstance(checkpoint, dict) or 'meta' in checkpoint:
        return checkpoint
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return {'state_dict': checkpoint, 'meta': {}}
    return dict(checkpoint, meta={})


def load_from_safe_local(filename: str, map_location: MapLocation = None) -> dict:
    """mmengine loader for local paths: :func:`load_checkpoint_file` (see :func:`with_meta`)."""
    return with_meta(load_checkpoint_file(filename, map_location))


def load_from_safe_http(filename: str,
                        map_location: MapLocation = None,
                        model_dir: Optional[str] = None,
                        progress: bool = False) -> dict:
    """mmengine loader for http(s) URLs: our downloader, then a safe load.

    In distributed runs rank 0 downloads first and the others read its cache,
    as mmengine's own http loader does. ``progress`` is accepted for
    compatibility and ignored.
    """
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    if rank == 0:
        download_checkpoint(filename, model_dir)
    if world_size > 1:
        torch.distributed.barrier()
    return with_meta(load_checkpoint_file(filename, map_location, cache_dir=model_dir))


def register_mmengine_loaders() -> None:
    """Route mmengine's local and http(s) checkpoint loading through this module.

    Affects ``mmengine.runner.load_checkpoint``, ``Runner(load_from=...)`` and
    resume, and the ``torchvision://``, ``open-mmlab://`` and ``mmcls://``
    schemes (they call mmengine's ``load_from_http`` by name).
    """
    from mmengine.runner import checkpoint as mmengine_checkpoint
    loader = mmengine_checkpoint.CheckpointLoader
    loader.register_scheme(prefixes=('http://', 'https://'), loader=load_from_safe_http, force=True)
    loader.register_scheme(prefixes='', loader=load_from_safe_local, force=True)
    mmengine_checkpoint.load_from_http = load_from_safe_http
