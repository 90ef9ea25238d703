"""The benchmark tool on tiny models: every entry reported, failures kept, memory measured."""
import json
import os.path as osp
import sys

import pytest
import torch

# the benchmark library is a tool (tools/analysis_tools/benchmark_lib.py), not part of mmbeit
sys.path.insert(
    0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'analysis_tools'))
import benchmark_lib as bm  # noqa: E402


def _tiny(jobs, **kwargs):
    args = dict(
        batch_sizes={j: 2
                     for j in jobs},
        iters=1,
        warmup=1,
        rounds=2,
        sizes=bm.TINY,
        exclude=['+compile'])
    args.update(kwargs)
    return bm.run_benchmark(jobs, **args)


def test_every_entry_is_reported_and_mmbeit_runs():
    jobs = ['cls-infer', 'seg-train', 'tokenizer']  # one inference and one training job at least
    report = _tiny(jobs)
    json.dumps(report)  # the --out file
    table = bm.markdown_table(report)
    assert report['meta']['dtype'] == 'fp32' and report['meta']['torch'] == torch.__version__
    for job in jobs:
        res = report['jobs'][job]['results']
        expected = [k for k in bm.JOBS[job].entries if '+compile' not in k]
        assert list(res) == expected
        for label, r in res.items():
            assert r['status'] == 'ok' or r['status'].startswith(('missing: ', 'error: '))
            assert f'| {job} | {torch.get_num_threads()} | 2 | {label} |' in table
        mm = res['mmbeit']
        assert mm['status'] == 'ok', mm['status']
        assert mm['img_per_s'] > 0 and len(mm['img_per_s_rounds']) == 2
        assert mm['params_m'] > 0 and mm['static_mib'] > 0
    # the peers this environment installs run too (a failure here is a benchmark bug)
    assert report['jobs']['cls-infer']['results']['timm']['status'] == 'ok'
    assert report['jobs']['cls-infer']['results']['mmpretrain']['status'] == 'ok'
    assert report['jobs']['seg-train']['results']['mmseg']['status'] == 'ok'
    assert report['jobs']['tokenizer']['results']['dall_e']['status'] == 'ok'


def test_mim_step_runs_for_every_implementation():
    res = _tiny(['mim-train'], rounds=1)['jobs']['mim-train']['results']
    assert list(res) == ['mmbeit', 'mmpretrain', 'hf-sdpa+dall_e']
    assert all(r['status'] == 'ok' for r in res.values()), res
    assert 'tokenizer fast=False' in res['mmbeit']['note']  # an fp32 run keeps the tokenizer fp32


def test_missing_and_broken_peers_are_reported(monkeypatch):

    def ghost(ctx):
        raise bm.Missing('ghostlib not importable; install with `pip install ghostlib`')

    def broken(ctx):
        raise RuntimeError('boom')

    job = bm.JOBS['cls-infer']
    monkeypatch.setitem(
        bm.JOBS, 'cls-infer',
        bm.Job(job.title, False, 8, 8, {
            'mmbeit': bm.build_cls_mmbeit,
            'ghost': ghost,
            'broken': broken
        }))
    report = _tiny(['cls-infer'])
    res = report['jobs']['cls-infer']['results']
    assert res['ghost']['status'].startswith('missing: ghostlib')
    assert res['broken']['status'] == 'error: RuntimeError: boom'
    assert res['broken']['img_per_s'] is None
    assert res['mmbeit']['status'] == 'ok'
    table = bm.markdown_table(report)
    assert 'missing: ghostlib' in table and 'error: RuntimeError: boom' in table


def test_compile_entry_compiles_only_mmbeit(monkeypatch):
    compiled = []

    def fake_compile(fn, **kwargs):
        compiled.append(fn)
        return fn

    monkeypatch.setattr(torch, 'compile', fake_compile)
    res = bm.run_job(
        'cls-infer',
        2,
        torch.device('cpu'),
        iters=1,
        warmup=1,
        rounds=1,
        sizes=bm.TINY,
        compile_mmbeit=True,
        only=['mmbeit', 'mmbeit+compile', 'timm'])
    assert [e.label for e in res] == ['mmbeit', 'mmbeit+compile', 'timm']
    assert all(e.status == 'ok' for e in res)
    assert len(compiled) == 1


def test_peak_memory_sees_an_allocation():
    device = torch.device('cpu')
    if bm.memory_method(device) == 'unavailable':
        pytest.skip('no /proc peak-RSS reset on this system')
    with bm.PeakMemory(device) as mem:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB, pages touched
        del x
    assert mem.transient >= 48 * 2**20


def test_inputs_are_shared_and_masks_exact():
    a = bm.make_inputs('mim-train', 3, bm.TINY, torch.device('cpu'))
    b = bm.make_inputs('mim-train', 3, bm.TINY, torch.device('cpu'))
    assert torch.equal(a['img'], b['img']) and torch.equal(a['mask'], b['mask'])
    assert a['mask'].flatten(1).sum(1).tolist() == [bm.TINY.num_masked] * 3
    assert a['tok_img'].shape[-1] * 2 == bm.TINY.mim_img  # tokenizer grid == patch grid
    assert 0.1 <= a['tok_img'].min() and a['tok_img'].max() <= 0.9


def test_parse_batch_sizes_and_bad_options():
    assert bm.parse_batch_sizes(['cls-infer=8', 'seg-train=1']) == {'cls-infer': 8, 'seg-train': 1}
    assert set(bm.parse_batch_sizes(['4']).values()) == {4}
    with pytest.raises(ValueError, match='unknown job'):
        bm.parse_batch_sizes(['cls=8'])
    with pytest.raises(ValueError, match='unknown jobs'):
        bm.run_benchmark(['nope'])
    with pytest.raises(ValueError, match='unknown dtype'):
        bm.run_benchmark(['cls-infer'], dtype='int4')
    with pytest.raises(ValueError, match='int8 is for inference jobs'):
        bm.run_benchmark(['cls-infer', 'cls-train'], dtype=['fp32', 'int8'])


def test_variant_labels_and_split():
    labels = bm.variant_labels('cls-infer', ['fp32', 'bf16', 'int8'], compile_mmbeit=True)
    assert labels[:3] == ['mmbeit', 'mmbeit+compile', 'timm']
    assert 'mmbeit+compile@bf16' in labels and 'timm+compile@bf16' in labels
    assert 'timm+compile@int8' not in labels  # dynamic int8 runs eager
    assert labels[-3:] == ['mmbeit+pt2e@int8', 'timm+pt2e@int8', 'mmbeit+ort@int8']
    assert bm.split_label('mmbeit+pt2e@int8') == ('mmbeit', 'pt2e', 'int8')
    assert bm.split_label('hf-sdpa+dall_e') == ('hf-sdpa+dall_e', 'eager', 'fp32')
    assert 'mmbeit+pt2e@int8' not in bm.variant_labels('seg-infer', ['int8'], False)


def test_dtypes_and_threads_in_one_run():
    """fp32, bf16 and int8 side by side at two thread counts, accuracy against fp32."""
    report = _tiny(['cls-infer'],
                   dtype=['fp32', 'bf16', 'int8'],
                   threads=[1, 2],
                   rounds=1,
                   exclude=['+compile', '+pt2e', '+ort', 'hf-eager'])
    json.dumps(report)
    assert list(report['jobs']) == ['cls-infer@1t', 'cls-infer@2t']
    for key, threads in (('cls-infer@1t', 1), ('cls-infer@2t', 2)):
        job = report['jobs'][key]
        assert job['threads'] == threads and job['job'] == 'cls-infer'
        res = job['results']
        assert list(res) == [
            f'{name}{suffix}' for suffix in ('', '@bf16', '@int8')
            for name in ('mmbeit', 'timm', 'hf-sdpa', 'mmpretrain')
        ]
        for label, r in res.items():
            assert r['status'] == 'ok', (label, r['status'])
            name, _, reduced = label.partition('@')
            # every entry is compared with the fp32 logits of its own implementation (an fp32
            # entry with itself, so its diff says nothing), and those logits are not flat
            assert r['ref_logit_std'] == res[name]['ref_logit_std'] > 0.05, label
            if reduced:  # reduced precision moves the logits, a little against their spread
                diff = r['max_abs_diff']
                assert 0 < diff < min(0.1, 0.1 * r['ref_logit_std']), (label, diff)
                assert r['top1_agree'] >= 0.75, label
        assert 'qkv kept fp32' in res['timm@int8']['note']
    table = bm.markdown_table(report)
    assert '| cls-infer | 2 | 2 | mmbeit@int8 |' in table and 'top-1 = fp32' in table


def test_sample_image_batches():
    a, b = bm.sample_image_batches(3, 2, 32)
    assert a.shape == b.shape == (3, 3, 32, 32)
    assert not torch.equal(a, b) and a.abs().max() < 3


def test_static_int8_entries(monkeypatch):
    """The PT2E and onnxruntime int8 entries build, run and report accuracy (PT2E's graph runs
    eager here: inductor's lowering takes minutes on 2 cores; the benchmark compiles it)."""
    import onnxruntime  # noqa: F401
    import torchao  # noqa: F401

    from mmbeit.deployment import quantize
    monkeypatch.setattr(quantize, 'compile_frozen', lambda fn: fn)
    res = bm.run_job(
        'cls-infer',
        2,
        torch.device('cpu'),
        dtype=['int8'],
        iters=1,
        warmup=1,
        rounds=1,
        sizes=bm.TINY,
        only=['mmbeit+pt2e@int8', 'mmbeit+ort@int8'])
    assert [e.label for e in res] == ['mmbeit+pt2e@int8', 'mmbeit+ort@int8']
    for e in res:
        assert e.status == 'ok', e.status
        assert e.rounds and 0 < e.max_abs_diff < 0.1 and e.top1_agree >= 0.75
    assert 'onnxruntime' in res[1].note


def test_table_ratios_without_an_fp32_run():
    """A bf16-only run (CUDA's default) divides by its own mmbeit and best peer (it had no
    'mmbeit' label, so both ratio columns were empty)."""

    def entry(speed):
        return dict(status='ok', img_per_s=speed, img_per_s_rounds=[speed], peak_mib=None, note='')

    for suffix in ('', '@bf16'):
        report = dict(
            meta=dict(device='cuda'),
            jobs={
                'cls-infer':
                dict(
                    job='cls-infer',
                    batch=8,
                    results={
                        f'mmbeit{suffix}': entry(300.),
                        f'timm{suffix}': entry(200.),
                        f'timm+compile{suffix}': entry(250.)
                    })
            })
        rows = bm.markdown_table(report).splitlines()
        assert rows[2].startswith(f'| cls-infer |  | 8 | mmbeit{suffix} | ')
        cells = [c.strip() for c in rows[3].split('|')]
        assert '1.50x' in cells  # mmbeit / timm
        if suffix:
            assert '0.80x' in cells  # timm / best peer (timm+compile)
