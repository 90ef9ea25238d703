"""Helpers shared by the tests (``from helpers import ...``: pytest puts tests/ on sys.path).

* :func:`randomize_` moves every parameter off its init, so a parity test cannot pass on
  weights that happen to agree (zeros, ones, a shared seed).
* :func:`assert_close` is the parity check: same shape, fp32 max abs diff <= ``TOL``, and a
  non-trivial output.
* :func:`serve` / :func:`serve_folder` run an http server on 127.0.0.1 (a free port): the
  tests' only "network".
* :func:`free_port`: a TCP port free on 127.0.0.1 now (distributed tests' rendezvous).
"""
import contextlib
import functools
import http.server
import socket
import threading
from typing import Callable, Iterator

import torch

__all__ = [
    'TOL', 'randomize_', 'assert_close', 'serve', 'serve_folder', 'QuietFileHandler', 'free_port'
]

TOL = 1e-4  # fp32 max abs diff against the reference libraries


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values for every parameter and norm statistic, scaled to keep activations O(1).

    Integer buffers and position indices are left alone; the module is put in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    norms = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm)
    with torch.no_grad():
        for m in module.modules():
            is_norm = isinstance(m, norms)
            tensors = list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
            for name, t in tensors:
                if not t.is_floating_point() or 'index' in name:
                    continue
                noise = torch.randn(t.shape, generator=gen)
                if name == 'running_var':
                    t.copy_(1 + 0.2 * noise.abs())
                elif is_norm and name == 'weight':
                    t.copy_(1 + 0.1 * noise)
                elif is_norm:
                    t.copy_(0.1 * noise)
                elif t.dim() >= 2 and 'table' not in name and t.shape[0] > 1:
                    t.copy_(noise / t[0].numel()**0.5)  # weights: 1 / sqrt(fan in)
                else:
                    t.copy_(0.2 * noise)
    module.eval()
    return module


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> None:
    """Same shape, max abs diff <= ``tol``, and ``a`` is not (near) zero everywhere."""
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = (a - b).abs().max().item()
    assert diff <= tol, f'max abs diff {diff:.3g} > {tol}'
    assert a.abs().max() > 1e-2  # a non-trivial output


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (the OS picks it; released before returning)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder (``directory=``) without logging every request to stderr."""

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run ``handler`` in a threaded http server on 127.0.0.1 (a free port); yield its base URL.

    Errors of a request whose client gave up (a timed-out download) are not printed.
    """
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    httpd.daemon_threads = True
    httpd.handle_error = lambda request, address: None
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05, ), daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{httpd.server_address[1]}'
    finally:
        httpd.shutdown()
        httpd.server_close()


def serve_folder(folder) -> 'contextlib.AbstractContextManager[str]':
    """:func:`serve` for the files under ``folder``."""
    return serve(functools.partial(QuietFileHandler, directory=str(folder)))
