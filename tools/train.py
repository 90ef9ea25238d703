"""Train a model from a config: CLI -> config -> Runner."""
import argparse

from mmbeit.apis.run import DictAction, build_runner_cfg, train


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a BEiT model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from a checkpoint; without a path, from the latest one in work-dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision training')
    parser.add_argument(
        '--no-validate', action='store_true', help='skip validation during training')
    parser.add_argument(
        '--auto-scale-lr', action='store_true', help='scale lr by the actual batch size')
    parser.add_argument(
        '--tensorboard',
        action='store_true',
        help='log to TensorBoard too (<work_dir>/<timestamp>/vis_data)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_dataloader.batch_size=8')
    # torchrun (tools/dist_train.sh) passes LOCAL_RANK in the environment, not as an argument
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help="job launcher; 'pytorch' under torchrun")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = build_runner_cfg(
        args.config,
        cfg_options=args.cfg_options,
        work_dir=args.work_dir,
        launcher=args.launcher,
        amp=args.amp,
        resume=args.resume,
        no_validate=args.no_validate,
        auto_scale_lr=args.auto_scale_lr,
        tensorboard=args.tensorboard)
    train(cfg)


if __name__ == '__main__':
    main()
