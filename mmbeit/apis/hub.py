"""Hugging Face hub ids: ``owner/name``, timm's ``hf-hub:owner/name``, ``@revision``.

A hub id names a model repository. :func:`parse_hub_id` tells one from a path or
a zoo name; :func:`download_model_folder` fetches the repository's
``config.json``, its image processor config and its weights through
``huggingface_hub`` (its cache, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``revision``)
and returns the cached snapshot folder, which reads like a ``save_pretrained``
folder. Weights URLs on ``huggingface.co`` (``.../resolve/<rev>/<file>``, as the
zoo's metafiles write them) go the same way (:func:`parse_hub_url`).

``HF_ENDPOINT``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` are read when a download
starts (huggingface_hub itself reads them once, when it is imported), so setting
them in a running session takes effect too.
"""
import os
import os.path as osp
import re
import urllib.parse
from typing import List, Optional, Tuple

from mmbeit.converters import transformers as hf_format

__all__ = [
    'HF_HUB_PREFIX', 'parse_hub_id', 'parse_hub_url', 'download_file', 'download_model_folder',
    'WEIGHT_FILES'
]

HF_HUB_PREFIX = 'hf-hub:'
HUB_HOSTS = ('huggingface.co', 'hf.co')
#: The weight files of a model repository, in the order transformers looks for them.
WEIGHT_FILES = hf_format.HUB_WEIGHT_FILES
#: Other files a model folder may have: the image processor's settings.
EXTRA_FILES = (hf_format.PROCESSOR_FILE, )
_REPO_RE = re.compile(r'^[A-Za-z0-9][\w.-]*/[\w.-]+$')
_WEIGHT_SUFFIXES = ('.py', '.pth', '.pt', '.bin', '.safetensors', '.ckpt', '.pkl', '.onnx')


def parse_hub_id(name: object) -> Optional[Tuple[str, Optional[str]]]:
    """``(repo_id, revision or None)`` if ``name`` is a hub id, else None.

    ``hf-hub:owner/name[@rev]`` is always one; ``owner/name[@rev]`` is one unless a
    file or folder of that name exists (a local path wins) or it ends like a
    config or weights file.
    """
    if not isinstance(name, str):
        return None
    explicit = name.startswith(HF_HUB_PREFIX)
    repo = name[len(HF_HUB_PREFIX):] if explicit else name
    revision = None
    if '@' in repo:
        repo, revision = repo.split('@', 1)
        revision = revision or None
    if not _REPO_RE.match(repo):
        if explicit:
            raise ValueError(f'{name!r}: expected {HF_HUB_PREFIX}owner/name[@revision]')
        return None
    if not explicit and (os.path.exists(name) or repo.lower().endswith(_WEIGHT_SUFFIXES)):
        return None
    return repo, revision


def parse_hub_url(url: object) -> Optional[Tuple[str, str, str]]:
    """``(repo_id, revision, file)`` of ``https://huggingface.co/<repo>/resolve/<rev>/<file>``,
    else None."""
    if not isinstance(url, str) or not url.startswith('https://'):
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.hostname not in HUB_HOSTS:
        return None
    m = re.match(r'^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$', urllib.parse.unquote(parts.path))
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _settings() -> dict:
    """huggingface_hub keywords from the environment as it is now."""
    offline = os.environ.get('HF_HUB_OFFLINE', '').strip().lower() in ('1', 'on', 'yes', 'true')
    kwargs = dict(local_files_only=offline)
    if os.environ.get('HF_ENDPOINT'):
        kwargs['endpoint'] = os.environ['HF_ENDPOINT'].rstrip('/')
    if os.environ.get('HF_HUB_CACHE'):
        kwargs['cache_dir'] = os.environ['HF_HUB_CACHE']
    return kwargs


def _hub():
    try:
        import huggingface_hub
    except ImportError as e:
        raise ImportError('loading Hugging Face hub ids needs huggingface_hub: '
                          'pip install huggingface_hub') from e
    return huggingface_hub


def download_file(repo_id: str, filename: str, revision: Optional[str] = None) -> str:
    """One file of a model repository, through huggingface_hub's cache; its local path.

    Raises:
        FileNotFoundError: the repository, revision or file does not exist, or (offline)
            is not in the cache; the message names the id and what was looked for.
    """
    hub = _hub()
    from huggingface_hub import errors
    settings = _settings()
    try:
        return hub.hf_hub_download(repo_id, filename, revision=revision, **settings)
    except errors.LocalEntryNotFoundError as e:
        why = ('HF_HUB_OFFLINE is set and it is not in the cache'
               if settings['local_files_only'] else f'the hub could not be reached ({e})')
        raise FileNotFoundError(
            f'{repo_id}/{filename}: {why} '
            f'({settings.get("cache_dir", hub.constants.HF_HUB_CACHE)})') from None
    except errors.RepositoryNotFoundError:
        raise FileNotFoundError(f'hub model {repo_id!r} not found at '
                                f'{settings.get("endpoint", hub.constants.ENDPOINT)} (and no '
                                'local file or folder has that name)') from None
    except errors.RevisionNotFoundError:
        raise FileNotFoundError(f'hub model {repo_id!r} has no revision {revision!r}') from None
    except errors.EntryNotFoundError:
        raise FileNotFoundError(f'hub model {repo_id!r}'
                                f'{"@" + revision if revision else ""} has no file '
                                f'{filename!r}') from None


def download_model_folder(repo_id: str,
                          revision: Optional[str] = None,
                          weights: bool = True) -> str:
    """A model repository's ``config.json`` (+ image processor config, + weights) in the
    hub cache; returns the snapshot folder that holds them.

    Args:
        repo_id: ``owner/name``.
        revision: branch, tag or commit; the repository's default branch if None.
        weights: also fetch the weights (the first of :data:`WEIGHT_FILES` the
            repository has, with the shards an index names).

    Raises:
        FileNotFoundError: no config.json, or no weights, in the repository or cache.
    """
    config = download_file(repo_id, hf_format.CONFIG_FILE, revision)
    folder = osp.dirname(config)
    for name in EXTRA_FILES:
        try:
            download_file(repo_id, name, revision)
        except FileNotFoundError:
            pass  # optional
    if not weights:
        return folder
    tried: List[str] = []
    for name in WEIGHT_FILES:
        try:
            path = download_file(repo_id, name, revision)
        except FileNotFoundError as e:
            tried.append(str(e))
            continue
        if name.endswith('.index.json'):
            import json
            with open(path, encoding='utf-8') as f:
                shards = sorted(set(json.load(f)['weight_map'].values()))
            for shard in shards:
                download_file(repo_id, shard, revision)
        return folder
    raise FileNotFoundError(f'hub model {repo_id!r} has no weights: expected one of '
                            f'{list(WEIGHT_FILES)}:\n  ' + '\n  '.join(tried))
