"""Draw a BEiT's attention maps over an image (a PNG grid): per head, the class token's and a
chosen patch's attention at one layer, and the attention rollout up to it.

    python tools/visualization/vis_attention.py CONFIG IMAGE [--checkpoint CKPT] \
        [--layer -1] [--patch ROW COL] [--size H [W]] [--keep-ratio | --crop] \
        [--out work_dirs/vis_attention/IMAGE_attn.png]

CONFIG: a classifier, segmentor or pretraining config (or a zoo name, hub id, model folder).
See docs/visualization.md.
"""
import argparse
import os.path as osp


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a classifier, segmentor or pretraining config')
    parser.add_argument('image', help='an image file')
    parser.add_argument(
        '--checkpoint',
        help='weights (any format mmbeit converts); '
        'without it the model is randomly initialised')
    parser.add_argument(
        '--layer', type=int, default=-1, help='layer whose heads are drawn (default: -1, the last)')
    parser.add_argument(
        '--patch',
        type=int,
        nargs=2,
        metavar=('ROW', 'COL'),
        help='the patch whose attention is drawn (default: the centre one)')
    parser.add_argument(
        '--size',
        type=int,
        nargs='+',
        metavar='PIXELS',
        help='view size H [W], multiples of the patch size (default: the backbone\'s img_size)')
    ratio = parser.add_mutually_exclusive_group()
    ratio.add_argument(
        '--keep-ratio',
        dest='keep_ratio',
        action='store_true',
        default=None,
        help='short side to min(size), long side keeps the aspect (default for segmentors)')
    ratio.add_argument(
        '--crop',
        dest='keep_ratio',
        action='store_false',
        help='resize and centre-crop to the size (default for classifiers and pretraining)')
    parser.add_argument('--out', help='PNG path (default: work_dirs/vis_attention/IMAGE_attn.png)')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    if args.size is not None and len(args.size) not in (1, 2):
        parser.error(f'--size takes H or H W, got {len(args.size)} values')
    return args


def main() -> None:
    args = parse_args()
    from mmbeit.apis import get_model
    from mmbeit.visualization.attention_maps import visualize_attention
    model = get_model(args.config, pretrained=args.checkpoint or False, device=args.device)
    out = args.out or osp.join('work_dirs', 'vis_attention',
                               osp.splitext(osp.basename(args.image))[0] + '_attn.png')
    size = None if args.size is None else (args.size * 2)[:2]
    maps = visualize_attention(
        model,
        args.image,
        out,
        layer=args.layer,
        patch=args.patch,
        size=size,
        keep_ratio=args.keep_ratio)
    print(f'{out}: layer {maps["layer"]}, {maps["cls"].shape[0]} heads, patch grid '
          f'{maps["grid"][0]}x{maps["grid"][1]}, patch {maps["patch"]}')


if __name__ == '__main__':
    main()
