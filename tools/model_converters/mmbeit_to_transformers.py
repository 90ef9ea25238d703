"""Export an mmbeit checkpoint to a transformers model folder.

    python tools/model_converters/mmbeit_to_transformers.py SRC OUT_DIR --task classification

The folder (config.json + model.safetensors + preprocessor_config.json) loads with
``BeitForImageClassification`` / ``BeitForMaskedImageModeling`` /
``BeitForSemanticSegmentation.from_pretrained(OUT_DIR)`` and with transformers'
``pipeline('image-classification', model=OUT_DIR)``. The image preprocessing comes from
``--config`` (the model's mmbeit config: its data preprocessor and test pipeline) or
``--mean``/``--std``; without either, a resize to the model's image size and BEiT's 0.5
mean/std (BEiT v2 models normalise with ImageNet's: pass their config).
"""
import argparse

from mmbeit.converters import read_checkpoint, save_transformers
from mmbeit.converters.transformers import TASKS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export an mmbeit checkpoint to transformers')
    parser.add_argument('src', help='mmbeit checkpoint file or URL (any format mmbeit reads)')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--task', required=True, choices=TASKS)
    parser.add_argument(
        '--num-heads',
        type=int,
        help='attention heads (read from the weights '
        'when the model has relative position tables)')
    parser.add_argument('--img-size', type=int, help='image size (default: from the weights)')
    parser.add_argument(
        '--out-indices',
        type=int,
        nargs=4,
        help='segmentation: the backbone out_indices (0-based), e.g. 3 5 7 11')
    parser.add_argument(
        '--pool-scales',
        type=int,
        nargs='+',
        default=[1, 2, 3, 6],
        help='segmentation: UPerHead pool scales')
    parser.add_argument('--classes', help='text file with one label name per line')
    parser.add_argument('--norm-eps', type=float, default=1e-6, help='LayerNorm epsilon')
    parser.add_argument(
        '--config', help="the model's mmbeit config: the export's image preprocessing")
    parser.add_argument(
        '--mean', type=float, nargs=3, help='RGB mean of [0, 1] pixels (overrides --config)')
    parser.add_argument(
        '--std', type=float, nargs=3, help='RGB std of [0, 1] pixels (overrides --config)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    classes = None
    if args.classes:
        with open(args.classes) as f:
            classes = [line.strip() for line in f if line.strip()]
    processor = {}
    if args.config:
        from mmengine.config import Config

        from mmbeit.apis.folder_config import processor_from_config
        processor = processor_from_config(Config.fromfile(args.config))
    processor.update({k: getattr(args, k) for k in ('mean', 'std') if getattr(args, k)})
    save_transformers(
        read_checkpoint(args.src),
        args.out_dir,
        args.task,
        processor=processor,
        num_heads=args.num_heads,
        img_size=args.img_size,
        out_indices=args.out_indices,
        pool_scales=args.pool_scales,
        classes=classes,
        norm_eps=args.norm_eps)
    print(f'wrote {args.out_dir}: config.json, model.safetensors, preprocessor_config.json '
          f'({args.task})')


if __name__ == '__main__':
    main()
