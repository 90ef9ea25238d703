"""onnxruntime (CPU) against PyTorch eager on the same model, input and threads, in one run.

    python tools/deployment/benchmark_onnx.py CONFIG [--shape H W] [--batch B] \
        [--threads T] [--iters N] [--dynamic]

The model keeps its initial weights (speed does not depend on them). It is exported to a
temporary ONNX file (fixed shape unless --dynamic), both backends run ``--iters`` timed
forwards in alternation after 2 warm-up ones, and the median time per batch is printed
with the machine (``lscpu`` model name), torch and onnxruntime versions and the date.
"""
import argparse
import datetime
import os.path as osp
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--dynamic', action='store_true', help='time a dynamic-shape export')
    return parser.parse_args(argv)


def cpu_model() -> str:
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith('Model name:'):
                return line.split(':', 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or 'unknown CPU'


def median_seconds(fns, iters: int) -> list:
    """Median seconds of each function, timed in alternation (a shared machine's load
    then weighs on all of them alike), after 2 warm-up calls each."""
    for fn in fns:
        fn()
        fn()
    times = [[] for _ in fns]
    for _ in range(iters):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(argv=None) -> int:
    args = parse_args(argv)
    import onnxruntime as ort
    import torch

    from mmbeit.apis import get_model
    from mmbeit.deployment import wrap_for_export
    from mmbeit.deployment.export import _default_shape, _patch_size, export_module

    torch.set_num_threads(args.threads)
    model = get_model(args.config)
    module = wrap_for_export(model)
    H, W = args.shape or _default_shape(model)
    x = torch.randn(args.batch, 3, H, W)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_module(
            module,
            x,
            osp.join(tmp, 'model.onnx'),
            dynamic=args.dynamic,
            multiple=_patch_size(model),
            min_side=2)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        feed = {session.get_inputs()[0].name: x.numpy()}
        with torch.no_grad():
            t_torch, t_ort = median_seconds([lambda: module(x), lambda: session.run(None, feed)],
                                            args.iters)
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    print(f'{osp.basename(args.config)}  input {args.batch}x3x{H}x{W}  '
          f'{"dynamic" if args.dynamic else "fixed"}-shape export')
    print(f'{cpu_model()}, {args.threads} thread(s), torch {torch.__version__}, '
          f'onnxruntime {ort.__version__}, {now}')
    print(f'PyTorch eager: {1e3 * t_torch:.1f} ms/batch  ({args.batch / t_torch:.2f} img/s)')
    print(f'onnxruntime:   {1e3 * t_ort:.1f} ms/batch  ({args.batch / t_ort:.2f} img/s)  '
          f'{t_torch / t_ort:.2f}x PyTorch')
    return 0


if __name__ == '__main__':
    sys.exit(main())
