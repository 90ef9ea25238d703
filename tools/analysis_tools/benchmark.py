"""Images/s and peak memory of mmbeit and the other BEiT implementations, in one process.

Examples:
    # the CPU target: BEiT-B/16 inference at batch 8, fp32, one thread
    python tools/analysis_tools/benchmark.py --jobs cls-infer --threads 1 --out cpu.json
    # fp32, bf16 and int8 side by side (with accuracy against fp32), at 1 and 2 threads
    python tools/analysis_tools/benchmark.py --jobs cls-infer --dtype fp32 bf16 int8 \\
        --threads 1 2 --compile --exclude hf-eager --out cpu_dtypes.json
    # everything on a GPU with bf16 autocast (the default there), mmbeit also compiled
    python tools/analysis_tools/benchmark.py --device cuda --compile --adamw fused --out gpu.json

See benchmark_lib.py (next to this file) for what is measured and how.
"""
import argparse
import dataclasses
import json
import sys

from benchmark_lib import DTYPES, JOBS, SIZES, markdown_table, parse_batch_sizes, run_benchmark


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--jobs',
        nargs='+',
        default=list(JOBS),
        choices=list(JOBS),
        help='jobs to run (default: all)')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument(
        '--batch-size',
        nargs='+',
        default=[],
        metavar='[JOB=]N',
        help='batch per job, e.g. cls-infer=8 seg-train=1, or one N for every job '
        '(default: the job\'s GPU or CPU batch)')
    parser.add_argument(
        '--dtype',
        nargs='+',
        choices=list(DTYPES),
        help='one or more dtypes, run in the same interleaved rounds: fp32, bf16 / fp16 '
        '(autocast), int8 (inference on the CPU: dynamic int8 linear layers for every '
        'implementation, plus torchao PT2E and onnxruntime QDQ entries in cls-infer); '
        'default: bf16 on CUDA, fp32 on the CPU')
    parser.add_argument('--iters', type=int, default=5, help='steps per timed round')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps before timing')
    parser.add_argument(
        '--rounds',
        type=int,
        default=3,
        help='interleaved timed rounds; the report gives the median')
    parser.add_argument(
        '--threads',
        type=int,
        nargs='+',
        help='torch.set_num_threads; several counts run one after the other')
    parser.add_argument(
        '--compile',
        action='store_true',
        help="add 'mmbeit+compile' entries (inductor, with freezing for inference)")
    parser.add_argument(
        '--adamw',
        choices=['default', 'foreach', 'fused'],
        default='default',
        help='AdamW implementation, the same for every model')
    parser.add_argument('--only', nargs='+', help='run only these implementations (labels)')
    parser.add_argument(
        '--exclude',
        nargs='+',
        default=[],
        help="drop implementations whose label contains one of these, e.g. '+compile'; "
        "fp32 labels match with an '@fp32' suffix ('timm+compile@fp32')")
    parser.add_argument(
        '--sizes', choices=list(SIZES), default='base', help="'tiny' to smoke-test the tool itself")
    parser.add_argument(
        '--seg-img', type=int, help='segmentation input side instead of 640 (e.g. 320 on a CPU)')
    parser.add_argument('--out', help='write the JSON report here')
    parser.add_argument(
        '--list', action='store_true', help='list jobs and implementations, then exit')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.list:
        for name, job in JOBS.items():
            print(f'{name:10s} {job.title}: {", ".join(job.entries)}')
        return
    sizes = SIZES[args.sizes]
    if args.seg_img:
        sizes = dataclasses.replace(sizes, seg_img=args.seg_img)
    report = run_benchmark(
        args.jobs,
        device=args.device,
        batch_sizes=parse_batch_sizes(args.batch_size),
        dtype=args.dtype,
        iters=args.iters,
        warmup=args.warmup,
        rounds=args.rounds,
        threads=args.threads,
        sizes=sizes,
        compile_mmbeit=args.compile,
        only=args.only,
        exclude=args.exclude,
        adamw=args.adamw,
        log=lambda s: print(s, file=sys.stderr, flush=True))
    meta = report['meta']
    print(f'\n{meta["device_name"]}, threads {meta["threads"]}, dtype {meta["dtype"]}, '
          f'torch {meta["torch"]}, {meta["date"]}; memory: {meta["memory_method"]}\n')
    print(markdown_table(report))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=1)
        print(f'\nwrote {args.out}')


if __name__ == '__main__':
    main()
