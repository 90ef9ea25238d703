"""Loading holds no second copy of the weights: files are mapped and copied into the model a part
at a time (:func:`mmbeit.converters.load.load_in_parts`), each part's pages given back.

The measurement runs in a fresh interpreter: the model is built first, then for each file the
peak resident set is reset (``/proc/self/clear_refs``) and the load's own peak read (``VmHWM``).
The bound is a fraction of the file's size: a second copy would be 1.0. Converting
transformers' separate q/k/v into BEiT's fused qkv makes new tensors (a quarter of each
layer's weights); everything else is mapped from the file.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# BEiT-B's width with 4 layers: the weights (~115 MiB) dominate the noise
WIDTH, LAYERS, HEADS, IMG, PATCH = 768, 4, 12, 224, 16

_PROBE = r'''
import json, sys
def status(field):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1]) / 1024
import torch, mmbeit
from mmbeit.apis import get_model
from mmbeit.converters import load_pretrained
model = get_model(sys.argv[1])  # built, no weights
peaks = []
for weights in sys.argv[2:]:
    before = status('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # VmHWM := VmRSS
    load_pretrained(model, weights)
    peaks.append(status('VmHWM') - before)
print(json.dumps(peaks))
'''


@pytest.mark.skipif(not osp.exists('/proc/self/clear_refs'), reason='needs Linux /proc')
def test_loading_holds_no_second_copy_of_the_weights(tmp_path):
    from transformers import BeitConfig, BeitForImageClassification

    from mmbeit.apis import get_model
    torch.manual_seed(0)
    hf = BeitForImageClassification(
        BeitConfig(
            hidden_size=WIDTH,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=4 * WIDTH,
            image_size=IMG,
            patch_size=PATCH,
            use_relative_position_bias=True,
            use_mean_pooling=True,
            layer_scale_init_value=0.1,
            num_labels=1000))
    folder = str(tmp_path / 'beit')
    hf.save_pretrained(folder)
    del hf
    own = str(tmp_path / 'mmbeit.pth')  # mmbeit's own keys, torch's zip format
    torch.save({'state_dict': get_model(folder).state_dict()}, own)

    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    p = subprocess.run([sys.executable, '-c', _PROBE, folder, folder, own],
                       env=env,
                       capture_output=True,
                       text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    peak_folder, peak_own = json.loads(p.stdout.strip().splitlines()[-1])
    mib = osp.getsize(osp.join(folder, 'model.safetensors')) / 2**20
    # transformers' folder: the fused qkv and the q/k/v pages read for it (1/4 of the layers
    # each), one part in flight; main before this change: 1.23
    assert peak_folder < 0.75 * mib, (peak_folder, mib)
    # mmbeit's own file: nothing to convert, one part in flight; before: 0.99
    assert peak_own < 0.3 * osp.getsize(own) / 2**20, (peak_own, osp.getsize(own) / 2**20)
