"""A local stand-in for the Hugging Face hub's file API, for tests (127.0.0.1, a free port).

Serves what ``huggingface_hub`` 2.x asks for::

    HEAD/GET /{repo_id}/resolve/{revision}/{file}   (X-Repo-Commit, ETag, Content-Length)
    GET      /api/models/{repo_id}/revision/{revision}

with the ``X-Error-Code`` headers that make huggingface_hub raise its own errors
(RepoNotFound, RevisionNotFound, EntryNotFound). Point ``HF_ENDPOINT`` at
``server.url`` and ``HF_HUB_CACHE`` at a temporary folder::

    with HubServer() as hub:
        hub.add_folder('microsoft/beit-tiny', folder)            # revision 'main'
        hub.add_folder('microsoft/beit-tiny', other, revision='v2')
        os.environ['HF_ENDPOINT'] = hub.url
"""
import hashlib
import http.server
import json
import os
import os.path as osp
import re
import threading
from typing import Dict, List, Tuple

__all__ = ['HubServer', 'serve_folder']

_RESOLVE = re.compile(r'^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$')
_API = re.compile(r'^/api/models/([^/]+/[^/]+)/revision/([^/]+)$')


def _etag(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


class HubServer:
    """Model repositories served from local folders; ``requests`` logs (method, path)."""

    def __init__(self) -> None:
        # repo_id -> revision -> (commit sha, {file: local path})
        self.repos: Dict[str, Dict[str, Tuple[str, Dict[str, str]]]] = {}
        self.requests: List[Tuple[str, str]] = []
        self._etags: Dict[str, str] = {}
        self._httpd = None

    def add_folder(self, repo_id: str, folder: str, revision: str = 'main') -> str:
        """Serve every file under ``folder`` as ``repo_id`` at ``revision``; returns the commit."""
        files = {}
        for root, _, names in os.walk(folder):
            for name in names:
                path = osp.join(root, name)
                files[osp.relpath(path, folder).replace(os.sep, '/')] = path
        commit = hashlib.sha1(f'{repo_id}@{revision}'.encode()).hexdigest()
        self.repos.setdefault(repo_id, {})[revision] = (commit, files)
        self.repos[repo_id][commit] = (commit, files)
        return commit

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self._httpd.server_address[1]}'

    def etag(self, path: str) -> str:
        if path not in self._etags:
            self._etags[path] = _etag(path)
        return self._etags[path]

    def __enter__(self) -> 'HubServer':
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):

            def log_message(self, *args):
                pass

            def _error(self, code: int, error: str, commit: str = None):
                self.send_response(code)
                self.send_header('X-Error-Code', error)
                self.send_header('X-Error-Message', error)
                if commit:
                    self.send_header('X-Repo-Commit', commit)
                body = json.dumps({'error': error}).encode()
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                if self.command != 'HEAD':
                    self.wfile.write(body)

            def _serve(self):
                path = self.path.split('?', 1)[0]
                server.requests.append((self.command, path))
                m = _API.match(path)
                if m:
                    return self._api(*m.groups())
                m = _RESOLVE.match(path)
                if not m:
                    return self._error(404, 'RepoNotFound')
                repo, revision, file = m.groups()
                if repo not in server.repos:
                    return self._error(401, 'RepoNotFound')
                if revision not in server.repos[repo]:
                    return self._error(404, 'RevisionNotFound')
                commit, files = server.repos[repo][revision]
                if file not in files:
                    return self._error(404, 'EntryNotFound', commit)
                local = files[file]
                size = osp.getsize(local)
                self.send_response(200)
                self.send_header('X-Repo-Commit', commit)
                self.send_header('ETag', f'"{server.etag(local)}"')
                self.send_header('Content-Length', str(size))
                self.send_header('Content-Type', 'application/octet-stream')
                self.end_headers()
                if self.command == 'GET':
                    with open(local, 'rb') as f:
                        for chunk in iter(lambda: f.read(1 << 20), b''):
                            self.wfile.write(chunk)

            def _api(self, repo, revision):
                if repo not in server.repos:
                    return self._error(401, 'RepoNotFound')
                if revision not in server.repos[repo]:
                    return self._error(404, 'RevisionNotFound')
                commit, files = server.repos[repo][revision]
                body = json.dumps({
                    'id': repo,
                    'modelId': repo,
                    'sha': commit,
                    'private': False,
                    'siblings': [{
                        'rfilename': f
                    } for f in sorted(files)]
                }).encode()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = _serve

        self._httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args):
        pass


class serve_folder:  # noqa: N801  (used as a context manager, like open())
    """A plain http server on 127.0.0.1 serving ``folder``; ``with serve_folder(d) as url``."""

    def __init__(self, folder: str) -> None:
        import functools
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self._httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)

    def __enter__(self) -> str:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return f'http://127.0.0.1:{self._httpd.server_address[1]}'

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
