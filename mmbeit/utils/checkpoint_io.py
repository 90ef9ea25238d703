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
import functools
import hashlib
import http.client
import inspect
import os
import os.path as osp
import pickle
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Union

import torch

__all__ = [
    'CACHE_DIR_ENV', 'CheckpointDownloadError', 'load_checkpoint_file', 'download_checkpoint',
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
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{name}.', suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as f:
            digest = _fetch(url, f, timeout)
        if match and not digest.startswith(match.group(1)):
            raise CheckpointDownloadError(
                f'Downloaded {url} but its sha256 {digest} does not start with '
                f'{match.group(1)}, the hash prefix in its file name; the file '
                'was discarded (corrupt download, or a wrong URL).')
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
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


def safe_torch_load(path: str, map_location: MapLocation = 'cpu') -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Only tensors, containers and the allowlisted types
    (:func:`register_safe_globals`) are accepted; a pickle that would build
    anything else, or call a function, is refused.

    Raises:
        pickle.UnpicklingError: The file is refused for safety.
        RuntimeError: The file is not a readable torch checkpoint.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = str(e).split('WeightsUnpickler error:')[-1].strip()
        detail = detail.split('\n\nCheck the documentation')[0].strip()
        raise pickle.UnpicklingError(
            f'Refused to load the checkpoint {path} for safety: it holds '
            'objects outside the weights-only allowlist, and unpickling them '
            'could run code. Convert it to a plain state dict (or safetensors) '
            'where you trust it. Reason: ' + detail) from e
    except (RuntimeError, EOFError, ValueError) as e:
        raise RuntimeError(f'Cannot read the checkpoint {path}: {type(e).__name__}: {e}') from e


def _is_safetensors(path: str) -> bool:
    if path.endswith('.safetensors'):
        return True
    # safetensors: u64 little-endian header length, then a JSON object
    with open(path, 'rb') as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b'{':
        return False
    return 0 < int.from_bytes(head[:8], 'little') < osp.getsize(path)


def _load_safetensors(path: str, map_location: MapLocation) -> Dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as e:
        raise ImportError(f'Loading {path} needs safetensors: '
                          'pip install safetensors') from e
    if map_location is None:
        device = 'cpu'
    elif isinstance(map_location, (str, torch.device)):
        device = str(map_location)
    else:
        raise ValueError(f'map_location for the safetensors file {path} must be '
                         f'a device (str or torch.device), got {map_location!r}')
    try:
        return load_file(path, device=device)
    except Exception as e:
        raise RuntimeError(f'Cannot read the safetensors file {path}: {e}') from e


def load_checkpoint_file(path_or_url: Union[str, os.PathLike],
                         map_location: MapLocation = 'cpu',
                         *,
                         cache_dir: Optional[str] = None,
                         timeout: float = DEFAULT_TIMEOUT,
                         check_hash: bool = True) -> dict:
    """Load a checkpoint safely from a path or an http(s) URL.

    ``.safetensors`` files are read with safetensors (no pickle); anything else
    with :func:`safe_torch_load`. URLs are downloaded first with
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
    """
    if is_url(path_or_url):
        path = download_checkpoint(path_or_url, cache_dir, timeout=timeout, check_hash=check_hash)
    else:
        path = osp.expanduser(os.fspath(path_or_url))
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint file not found: {path}')
    if _is_safetensors(path):
        checkpoint = _load_safetensors(path, map_location)
    else:
        checkpoint = safe_torch_load(path, map_location)
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
