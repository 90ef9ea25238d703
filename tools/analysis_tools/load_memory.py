"""Peak memory of loading a checkpoint: mmbeit's ``get_model`` against transformers.

Each step runs in a fresh subprocess that reports its resident set before the step (after
the imports of the library and its model classes, and for the last row after building the
model) and its peak during the step
(``VmHWM`` of ``/proc/self/status``, reset first: it counts the file pages a memory map
touched as well as allocations). The model is BEiT-L/16 UperNet for ADE20K at 640x640,
the architecture of ``microsoft/beit-large-finetuned-ade-640-640`` (random weights: nothing
is downloaded), written once by transformers' ``save_pretrained``.

Usage::

    python tools/analysis_tools/load_memory.py WORK_DIR [--size large|base|tiny]

Prints one Markdown table (docs/benchmark.md, "Loading memory").
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys

# BeitConfig of microsoft/beit-large-finetuned-ade-640-640, and smaller ones of the same kind
SIZES = {
    'large':
    dict(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        image_size=640,
        out_indices=[7, 11, 15, 23]),
    'base':
    dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        image_size=640,
        out_indices=[3, 5, 7, 11]),
    'tiny':
    dict(
        hidden_size=192,
        num_hidden_layers=12,
        num_attention_heads=3,
        intermediate_size=768,
        image_size=640,
        out_indices=[3, 5, 7, 11]),
}
COMMON = dict(
    patch_size=16,
    use_relative_position_bias=True,
    use_absolute_position_embeddings=False,
    layer_scale_init_value=0.1,
    use_auxiliary_head=True,
    auxiliary_channels=256,
    pool_scales=[1, 2, 3, 6],
    num_labels=150,
    layer_norm_eps=1e-6,
    architectures=['BeitForSemanticSegmentation'])

# what each subprocess runs: the setup, then the measured step; prints the RSS before the step,
# the peak during it (VmHWM reset by /proc/self/clear_refs) and the RSS after it
_PROBE = r'''
import json, sys
def status(field):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1]) / 1024  # MiB
{setup}
before = status('VmRSS')
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')
{step}
print(json.dumps(dict(before=before, peak=status('VmHWM'), end=status('VmRSS'))))
'''
# the model classes are imported before the step, as transformers' setup imports its class
_MMBEIT = ('import torch\nimport mmbeit\nfrom mmbeit.apis import get_model\n'
           'import mmbeit.models, mmseg.models')
# name -> (setup, measured step)
LOADERS = {
    'transformers `BeitForSemanticSegmentation.from_pretrained(folder)`':
    ('import torch\nfrom transformers import BeitForSemanticSegmentation',
     'model = BeitForSemanticSegmentation.from_pretrained(sys.argv[1])'),
    'mmbeit `get_model(folder, pretrained=True)`':
    (_MMBEIT, 'model = get_model(sys.argv[1], pretrained=True)'),
    'mmbeit `get_model(folder)` (builds the model, no weights)': (_MMBEIT,
                                                                  'model = get_model(sys.argv[1])'),
    'mmbeit `no_init()` build + `load_pretrained(model, folder, assign=True, '
    'uninitialized=True)`':
    (_MMBEIT + '\nfrom mmbeit.apis.builder import build_model, load_config\n'
     'from mmbeit.converters.load import load_pretrained, no_init',
     'with no_init():\n    model = build_model(load_config(sys.argv[1]).cfg)\n'
     'load_pretrained(model, sys.argv[1], assign=True, uninitialized=True)'),
    'mmbeit `load_pretrained(model, folder)` (the load alone, into the built model)':
    (_MMBEIT + '\nfrom mmbeit.converters import load_pretrained\nmodel = get_model(sys.argv[1])',
     'load_pretrained(model, sys.argv[1])'),
}


def make_folder(folder: str, size: str = 'large') -> str:
    """Write a random BeitForSemanticSegmentation of ``size`` with ``save_pretrained``."""
    if osp.isfile(osp.join(folder, 'config.json')):
        return folder
    import torch
    from transformers import BeitConfig, BeitForSemanticSegmentation
    torch.manual_seed(0)
    model = BeitForSemanticSegmentation(BeitConfig(**SIZES[size], **COMMON))
    model.save_pretrained(folder)
    return folder


def measure(folder: str, code: tuple, threads: int = 1) -> dict:
    """Run one loader in a fresh interpreter: RSS before its step, peak during it, in MiB."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    script = _PROBE.format(setup=code[0], step=code[1])
    p = subprocess.run([sys.executable, '-c', script, folder],
                       env=env,
                       capture_output=True,
                       text=True,
                       check=False)
    if p.returncode != 0:
        raise RuntimeError(f'the loader failed:\n{p.stderr[-3000:]}')
    return json.loads(p.stdout.strip().splitlines()[-1])


def weights_mib(folder: str) -> float:
    return sum(
        osp.getsize(osp.join(folder, f))
        for f in os.listdir(folder) if f.endswith(('.safetensors', '.bin'))) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dir', help='where the model folder is written (once)')
    parser.add_argument('--size', choices=tuple(SIZES), default='large')
    args = parser.parse_args()
    folder = make_folder(osp.join(args.work_dir, f'beit-{args.size}-ade-640'), args.size)
    print(f'weights: {weights_mib(folder):.0f} MiB ({folder})\n')
    print('| step (fresh process) | RSS before the step (MiB) | peak (MiB) | '
          'peak - before (MiB) |')
    print('|---|---:|---:|---:|')
    for name, code in LOADERS.items():
        r = measure(folder, code)
        print(f"| {name} | {r['before']:.0f} | {r['peak']:.0f} | {r['peak'] - r['before']:.0f} |")


if __name__ == '__main__':
    main()
