"""Draw what a BEiT pretraining model sees and predicts on images (a PNG grid per image).

    python tools/visualization/vis_mim.py CONFIG IMAGE [IMAGE ...] --checkpoint CKPT \
        [--out-dir work_dirs/vis_mim] [--num-masked N] [--seed 0]

Panels: the image, the masked input, the tokenizer's target tokens, the predicted tokens
at the masked patches, right (green) / wrong (red). Token colours are fixed per token id.
"""
import argparse
import os.path as osp


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a masked image modeling config (mmbeit.BEiTPretrain)')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument(
        '--checkpoint',
        help='weights (any format mmbeit converts); '
        'without it the model is randomly initialised')
    parser.add_argument('--out-dir', default='work_dirs/vis_mim')
    parser.add_argument('--num-masked', type=int, help='masked patches (default 40%%)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the blockwise mask')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from mmbeit.apis import get_model
    from mmbeit.visualization.mim_visualizer import visualize_mim
    model = get_model(args.config, pretrained=args.checkpoint or False, device=args.device)
    for image in args.images:
        out = osp.join(args.out_dir, osp.splitext(osp.basename(image))[0] + '_mim.png')
        result = visualize_mim(
            model, image, out, num_masking_patches=args.num_masked, seed=args.seed)
        print(f'{out}: {int(result["mask"].sum())} masked patches, '
              f'{result["accuracy"]:.1f}% predicted right')


if __name__ == '__main__':
    main()
