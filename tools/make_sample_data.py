"""Write mmbeit's bundled sample dataset (ImageNet and ADE20K folder formats).

    python tools/make_sample_data.py [--out data/sample] [--seed 0]

Always rewrites the dataset; ``mmbeit.utils.sample_data.ensure_sample_data``
writes it only when it is missing. See that module for the layout and for how
mmpretrain and mmseg read it.
"""
import argparse
import time
from typing import List, Optional

from mmbeit.utils.sample_data import generate_sample_data


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/sample', help='output folder (default: data/sample)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default: 0)')
    parser.add_argument(
        '--cls-train-per-class',
        type=int,
        default=100,
        help='classification training images per class (default: 100)')
    parser.add_argument(
        '--cls-val-per-class',
        type=int,
        default=20,
        help='classification validation images per class (default: 20)')
    parser.add_argument(
        '--seg-train', type=int, default=200, help='segmentation training images (default: 200)')
    parser.add_argument(
        '--seg-val', type=int, default=40, help='segmentation validation images (default: 40)')
    parser.add_argument(
        '--img-size', type=int, default=64, help='image side in pixels (default: 64)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    start = time.time()
    root = generate_sample_data(
        args.out,
        seed=args.seed,
        cls_train_per_class=args.cls_train_per_class,
        cls_val_per_class=args.cls_val_per_class,
        seg_train=args.seg_train,
        seg_val=args.seg_val,
        img_size=args.img_size)
    print(f'Wrote the sample data to {root} in {time.time() - start:.1f}s: '
          f'{root}/imagenet (classification), {root}/ade (segmentation), {root}/demo')


if __name__ == '__main__':
    main()
