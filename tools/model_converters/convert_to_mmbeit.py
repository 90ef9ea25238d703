"""Convert a BEiT checkpoint of any supported format to mmbeit's layout.

    python tools/model_converters/convert_to_mmbeit.py SRC DST [--format auto] [--target auto]

SRC: a file, an http(s) URL or a transformers model folder. DST: ``.pth``
(``{'state_dict', 'meta'}``, loads with ``load_from``) or ``.safetensors``.
"""
import argparse

from mmbeit.converters import FORMATS, TARGETS, convert_file


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Convert a BEiT checkpoint to mmbeit')
    parser.add_argument('src', help='checkpoint file, URL or transformers model folder')
    parser.add_argument('dst', help='output file (.pth or .safetensors)')
    parser.add_argument(
        '--format',
        default='auto',
        choices=('auto', ) + FORMATS,
        help='source format (default: detect it)')
    parser.add_argument(
        '--target',
        default='auto',
        choices=('auto', ) + TARGETS,
        help='the mmbeit model the weights are for (default: from the heads present)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    info = convert_file(
        args.src,
        args.dst,
        fmt=None if args.format == 'auto' else args.format,
        target=None if args.target == 'auto' else args.target)
    print(
        f"{args.src} ({info['fmt']}) -> {args.dst}: {info['num_keys']} keys for a {info['target']}")
    if info['left_out']:
        print(f"left out (no place in a {info['target']}): {', '.join(info['left_out'])}")


if __name__ == '__main__':
    main()
