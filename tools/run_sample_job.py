"""The main job on the bundled sample data, end to end, through the configs and the shared tools.

MIM pretraining of a tiny BEiT -> classification and segmentation fine-tuning
from its checkpoint -> tools/test.py on both (segmentation: whole, slide and
multi-scale + flip) -> inference_model on a sample image -> a segmentation
overlay PNG -> a summary table. Next to them, a tiny VQ-KD tokenizer (BEiT v2's)
is trained on the same images and its code usage measured.

    python tools/run_sample_job.py [--work-dir work_dirs/sample_job] [--data data/sample]
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MIM_CFG = 'configs/beit/beit_beit-tiny-p8_1xb32-10e_sample.py'
CLS_CFG = 'configs/beit/benchmarks/beit-tiny-p8_1xb32-20e_sample.py'
SEG_CFG = 'configs/upernet_beit/upernet_beit-tiny_1xb8-500_sample-64x64.py'
VQKD_CFG = 'configs/vqkd/vqkd_vit-tiny-p8_1xb32-4e_sample.py'


def run_tool(args: List[str], log: str) -> float:
    """Run ``python tools/...`` with output to ``log``; return seconds; on failure raise with the
    log's tail."""
    start = time.time()
    print(f'$ python {" ".join(args)}', flush=True)
    with open(log, 'w') as f:
        # one compute thread: the data workers use the other core (2 threads plus busy workers
        # on 2 cores stall every op at OpenMP barriers, ~100x slower for a tiny model)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
        proc = subprocess.Popen(
            [sys.executable, '-u'] + args,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env)
        for line in proc.stdout:
            f.write(line)
            if ' - mmengine - INFO - ' in line and ('Epoch(' in line or 'Iter(' in line):
                print('   ' + line.split(' - INFO - ', 1)[1].rstrip()[:160], flush=True)
        proc.wait()
    if proc.returncode:
        tail = open(log).read()[-3000:]
        raise RuntimeError(f'{args[0]} failed (exit {proc.returncode}); log {log}:\n{tail}')
    return time.time() - start


def last_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def scalars(work_dir: str) -> List[dict]:
    """Training log records (mmengine's vis_data/scalars.json) of the newest run in ``work_dir``."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def first_last(records: List[dict], key: str, n: int = 3) -> tuple:
    values = [r[key] for r in records if key in r]
    head, tail = values[:n], values[-n:]
    return sum(head) / len(head), sum(tail) / len(tail)


def token_baseline(config: str, checkpoint: str, image_dir: str, size: int) -> tuple:
    """What guessing needs no context for: the most frequent tokenizer token's share (%) and
    the tokens' entropy (nats) over the training images, by the pretrained model's tokenizer."""
    import numpy as np
    import torch
    from PIL import Image

    from mmbeit.apis import get_model
    from mmbeit.models.target_generators.dalle_encoder import map_pixels
    model = get_model(config, pretrained=checkpoint)
    files = sorted(glob.glob(osp.join(image_dir, '*', '*')))
    imgs = [
        np.asarray(Image.open(f).convert('RGB').resize((size, size), Image.LANCZOS)) for f in files
    ]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.
    with torch.no_grad():
        tokens = model.target_generator.get_tokens(map_pixels(x)).flatten()
    p = torch.bincount(tokens).float() / tokens.numel()
    p = p[p > 0]
    return 100 * p.max().item(), -(p * p.log()).sum().item()


def vqkd_code_usage(config: str, checkpoint: str, image_dir: str) -> tuple:
    """Codes the trained VQ-KD tokenizer (loaded from the training checkpoint into
    ``mmbeit.VQKD``) uses over the training images: (in use, codebook size, perplexity)."""
    import numpy as np
    import torch
    from mmengine.config import Config
    from PIL import Image

    from mmbeit.converters import load_pretrained
    from mmbeit.registry import MODELS
    tok = MODELS.build(Config.fromfile(config).model.tokenizer.to_dict())
    load_pretrained(tok, checkpoint)
    files = sorted(glob.glob(osp.join(image_dir, '*', '*')))
    x = torch.from_numpy(np.stack([np.asarray(Image.open(f).convert('RGB')) for f in files]))
    x = x.permute(0, 3, 1, 2).float() / 127.5 - 1  # [-1, 1], as the config's preprocessor
    ids = torch.cat([tok(x[i:i + 100]) for i in range(0, len(x), 100)]).flatten()
    counts = torch.bincount(ids, minlength=tok.vocab_size).float()
    p = counts[counts > 0] / counts.sum()
    return int((counts > 0).sum()), tok.vocab_size, torch.exp(-(p * p.log()).sum()).item()


def test_metrics(work_dir: str) -> dict:
    with open(osp.join(work_dir, 'test_metrics.json')) as f:
        return json.load(f)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/sample_job')
    parser.add_argument('--data', default='data/sample')
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    wd = args.work_dir
    os.makedirs(wd, exist_ok=True)
    rows = []
    t0 = time.time()

    from mmbeit.utils.sample_data import SAMPLE_CLS_CLASSES, SAMPLE_SEG_CLASSES, ensure_sample_data
    print('[1/7] sample data', flush=True)
    start = time.time()
    ensure_sample_data(args.data)
    rows.append(('sample data', time.time() - start, f'{args.data} (imagenet + ade formats)'))

    print('[2/7] MIM pretraining (tiny BEiT, DALL-E tokenizer targets)', flush=True)
    mim_dir = osp.join(wd, 'mim')
    sec = run_tool(['tools/train.py', MIM_CFG, '--work-dir', mim_dir], osp.join(wd, 'mim.log'))
    mim_ckpt = last_checkpoint(mim_dir)
    rec = scalars(mim_dir)
    l0, l1 = first_last(rec, 'loss')
    a0, a1 = first_last(rec, 'accuracy')
    top, entropy = token_baseline(MIM_CFG, mim_ckpt, osp.join(args.data, 'imagenet', 'train'), 64)
    rows.append(('MIM pretrain', sec, f'loss {l0:.3f} -> {l1:.3f} (token entropy {entropy:.2f}), '
                 f'masked acc {a0:.1f}% -> {a1:.1f}% (most frequent token {top:.1f}%)'))

    print('[2b/7] VQ-KD tokenizer training (BEiT v2; tiny, random tiny teacher)', flush=True)
    vqkd_dir = osp.join(wd, 'vqkd')
    sec = run_tool(['tools/train.py', VQKD_CFG, '--work-dir', vqkd_dir], osp.join(wd, 'vqkd.log'))
    l0, l1 = first_last(scalars(vqkd_dir), 'loss_rec')
    used, size, ppl = vqkd_code_usage(VQKD_CFG, last_checkpoint(vqkd_dir),
                                      osp.join(args.data, 'imagenet', 'train'))
    rows.append(('VQ-KD tokenizer', sec, f'cosine loss {l0:.3f} -> {l1:.3f}, codes in use over '
                 f'the training images {used}/{size} (perplexity {ppl:.1f})'))

    init = [
        '--cfg-options', 'model.backbone.init_cfg.type=Pretrained',
        f'model.backbone.init_cfg.checkpoint={mim_ckpt}', 'model.backbone.init_cfg.prefix=backbone.'
    ]
    print('[3/7] classification fine-tuning from the MIM checkpoint', flush=True)
    cls_dir = osp.join(wd, 'cls')
    sec = run_tool(['tools/train.py', CLS_CFG, '--work-dir', cls_dir] + init,
                   osp.join(wd, 'cls.log'))
    cls_ckpt = last_checkpoint(cls_dir)
    rows.append(('cls fine-tune', sec, f'{len(SAMPLE_CLS_CLASSES)} classes'))

    print('[4/7] segmentation fine-tuning from the MIM checkpoint', flush=True)
    seg_dir = osp.join(wd, 'seg')
    sec = run_tool(['tools/train.py', SEG_CFG, '--work-dir', seg_dir] + init,
                   osp.join(wd, 'seg.log'))
    seg_ckpt = last_checkpoint(seg_dir)
    rows.append(('seg fine-tune', sec, f'{len(SAMPLE_SEG_CLASSES)} classes'))

    print('[5/7] tools/test.py', flush=True)
    d = osp.join(wd, 'cls_test')
    sec = run_tool(['tools/test.py', CLS_CFG, cls_ckpt, '--work-dir', d],
                   osp.join(wd, 'cls_test.log'))
    m = test_metrics(d)
    top1 = m.get('accuracy/top1')
    rows.append(
        ('cls test', sec, f'top-1 {top1:.1f}% (chance {100 / len(SAMPLE_CLS_CLASSES):.0f}%)'))
    overlay_dir = osp.join(wd, 'seg_overlays')
    for mode, extra in (('whole', ['--show-dir', overlay_dir]), ('slide', [
            '--cfg-options', 'model.test_cfg.mode=slide', 'model.test_cfg.crop_size=(48,48)',
            'model.test_cfg.stride=(32,32)'
    ]), ('ms+flip', ['--tta'])):
        d = osp.join(wd, f'seg_test_{mode}')
        sec = run_tool(['tools/test.py', SEG_CFG, seg_ckpt, '--work-dir', d] + extra,
                       osp.join(wd, f'seg_test_{mode}.log'))
        miou = test_metrics(d).get('mIoU')
        rows.append((f'seg test ({mode})', sec,
                     f'mIoU {miou:.1f}% (chance ~{100 / len(SAMPLE_SEG_CLASSES):.0f}% or less)'))

    print('[6/7] inference_model on a sample image', flush=True)
    from mmbeit.apis import inference_model
    start = time.time()
    image = osp.join(args.data, 'demo', 'circle.png')
    pred = inference_model(CLS_CFG, image, checkpoint=cls_ckpt)
    rows.append(('inference_model', time.time() - start,
                 f'{image}: {pred["pred_class"]} ({pred["pred_score"]:.2f})'))

    print('[7/7] segmentation overlay', flush=True)
    from mmbeit.apis.seg_inference import inference_segmentor, save_overlay
    start = time.time()
    image = osp.join(args.data, 'demo', 'shapes.png')
    result = inference_segmentor(SEG_CFG, image, checkpoint=seg_ckpt)
    out_png = osp.join(wd, 'shapes_overlay.png')
    save_overlay(image, result['pred_mask'], out_png=out_png)
    rows.append(('seg overlay', time.time() - start, out_png))

    width = max(len(r[0]) for r in rows)
    print('\n| step' + ' ' * (width - 4) + ' | seconds | result |')
    print('|' + '-' * (width + 2) + '|---------|--------|')
    for name, sec, result in rows:
        print(f'| {name:<{width}} | {sec:7.1f} | {result} |')
    print(f'\ntotal {time.time() - t0:.0f} s; logs and checkpoints in {wd}')


if __name__ == '__main__':
    main()
