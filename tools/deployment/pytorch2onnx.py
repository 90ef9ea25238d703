"""Export a BEiT classifier or UperNet segmentor to ONNX (or a torch.export program) and check it.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --out model.onnx \
        [--shape H W] [--dynamic] [--format onnx|pt2]

CHECKPOINT is anything ``mmbeit.apis.get_model`` reads (path, URL, transformers folder;
``none`` for the initial weights). The file is run on the traced input and a second one
(onnxruntime for ONNX) and compared with PyTorch; a max abs diff above --tol exits with 1.
The model is built by ``mmbeit.apis.get_model(CONFIG, pretrained=CHECKPOINT)``; the export
and check are :func:`mmbeit.deployment.export_model`.
"""
import argparse
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file of a classifier or segmentor')
    parser.add_argument('checkpoint', help="checkpoint path / URL / folder, or 'none'")
    parser.add_argument('--out', required=True, help='the file to write (.onnx or .pt2)')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help="traced input size (default: the backbone's img_size)")
    parser.add_argument(
        '--dynamic',
        action='store_true',
        help='symbolic batch, height and width (multiples of the patch size)')
    parser.add_argument('--format', default='onnx', choices=('onnx', 'pt2'))
    parser.add_argument(
        '--tol',
        type=float,
        default=1e-4,
        help='largest accepted max abs diff against PyTorch (default 1e-4)')
    parser.add_argument('--no-check', action='store_true', help='skip the comparison')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmbeit.apis import get_model
    from mmbeit.deployment import ExportCheckError, export_model
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    model = get_model(args.config, pretrained=checkpoint or False)
    try:
        result = export_model(
            model,
            args.out,
            shape=args.shape,
            dynamic=args.dynamic,
            fmt=args.format,
            check=not args.no_check,
            tol=args.tol)
    except ExportCheckError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(result.summary())
    return 0


if __name__ == '__main__':
    sys.exit(main())
