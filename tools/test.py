"""Test a model: a config and a checkpoint (path, URL, model folder or hub id; any format)."""
import argparse
import json
import os
import os.path as osp

from mmbeit.apis.run import DictAction, build_runner_cfg, test
from mmbeit.engine.inference_dtype_hook import add_inference_dtype_hook


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a BEiT model')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        'checkpoint',
        help='checkpoint: file path, URL, model folder or '
        'Hugging Face hub id (owner/name, hf-hub:owner/name[@revision])')
    parser.add_argument('--work-dir', help='where logs and results go')
    parser.add_argument(
        '--out',
        help='dump predictions to this .pkl file (metrics always go to '
        'WORK_DIR/test_metrics.json)')
    parser.add_argument('--show-dir', help='write visualized predictions (overlays) to this folder')
    parser.add_argument(
        '--tta', action='store_true', help='test-time augmentation (config tta_model/tta_pipeline)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config entries')
    parser.add_argument(
        '--dtype',
        choices=['fp32', 'bf16', 'int8'],
        default='fp32',
        help='bf16 (autocast) or int8 (dynamic int8 linear layers, CPU) inference')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = build_runner_cfg(
        args.config,
        cfg_options=args.cfg_options,
        work_dir=args.work_dir,
        launcher=args.launcher,
        checkpoint=args.checkpoint,
        out=args.out,
        show_dir=args.show_dir,
        tta=args.tta)
    add_inference_dtype_hook(cfg, args.dtype)
    metrics = test(cfg)
    os.makedirs(cfg.work_dir, exist_ok=True)
    with open(osp.join(cfg.work_dir, 'test_metrics.json'), 'w') as f:
        json.dump({k: _plain(v) for k, v in metrics.items()}, f)
    print({k: _plain(v) for k, v in metrics.items()})


def _plain(value):
    """A metric as a JSON-friendly number (numpy scalars included) or a string."""
    try:
        return round(float(value), 4)
    except (TypeError, ValueError):
        return str(value)


if __name__ == '__main__':
    main()
