"""VQ-KD's quantizer against mmpretrain's ``NormEMAVectorQuantizer``, and under DDP.

* From the same seed, mmpretrain's quantizer and ours give the same k-means init, the same
  codes, losses and ids, and the same codebook and usage counts after several EMA steps.
* Two gloo CPU processes, each with half of every batch, end with the codebook and counts
  that one process gets on the whole batches: the counts and sums are all-reduced, the
  k-means init is distributed (means drawn on rank 0, counts and sums all-reduced).
"""
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from mmbeit.layers.norm_ema_quantizer import NormEMAVectorQuantizer, kmeans, sample_vectors
from helpers import free_port  # tests/helpers.py

K, D = 32, 8
STEPS = 4


def _batches(seed: int = 0, n: int = STEPS, shape=(4, D, 3, 3)):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen) for _ in range(n)]


def test_training_steps_match_mmpretrain():
    from mmpretrain.models.utils import vector_quantizer as ref_mod
    ref = ref_mod.NormEMAVectorQuantizer(K, D, beta=0.5, decay=0.9, kmeans_init=True).train()
    ours = NormEMAVectorQuantizer(K, D, beta=0.5, decay=0.9, kmeans_init=True).train()
    for step, z in enumerate(_batches()):
        z_ref = z.clone().requires_grad_()
        z_ours = z.clone().requires_grad_()
        torch.manual_seed(step)  # k-means draws its first means with the global RNG
        q_ref, loss_ref, ids_ref = ref(z_ref)
        torch.manual_seed(step)
        q, loss, ids = ours(z_ours)
        assert torch.equal(ids, ids_ref), step
        torch.testing.assert_close(q, q_ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(loss, loss_ref, rtol=0, atol=1e-6)
        # the same gradient: straight-through plus the commitment loss
        (q.square().sum() + loss).backward()
        (q_ref.square().sum() + loss_ref).backward()
        torch.testing.assert_close(z_ours.grad, z_ref.grad, rtol=0, atol=1e-6)
        torch.testing.assert_close(ours.embedding.weight, ref.embedding.weight, rtol=0, atol=1e-6)
        torch.testing.assert_close(ours.cluster_size, ref.cluster_size, rtol=0, atol=1e-6)
    # the codebook moved and stays on the unit sphere
    assert bool(ours.embedding.initted)
    torch.testing.assert_close(ours.embedding.weight.norm(dim=-1), torch.ones(K))
    assert ours.cluster_size.sum() > 0


def test_eval_is_a_pure_function():
    q = NormEMAVectorQuantizer(K, D, kmeans_init=False).eval()
    state = {k: v.clone() for k, v in q.state_dict().items()}
    q(_batches(1, 1)[0])
    assert all(torch.equal(v, q.state_dict()[k]) for k, v in state.items())


def test_kmeans_keeps_empty_clusters_and_normalises():
    samples = F.normalize(torch.randn(50, D, generator=torch.Generator().manual_seed(0)), dim=-1)
    means, bins = kmeans(samples, 64, 5)  # more clusters than samples: some stay empty
    assert bins.sum() == 50 and (bins == 0).any()
    torch.testing.assert_close(means.norm(dim=-1), torch.ones(64))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='decay'):
        NormEMAVectorQuantizer(K, D, decay=1.5)
    with pytest.raises(ValueError, match='expected 8 channels'):
        NormEMAVectorQuantizer(K, D)(torch.zeros(1, 4, 2, 2))


# --------------------------------------------------------------------------- DDP (gloo, CPU)
def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world)
    try:
        q = NormEMAVectorQuantizer(K, D, decay=0.9, kmeans_init=True).train()
        ids = []
        for z in _batches():
            torch.manual_seed(0)  # rank 0 draws the k-means means; the others get them
            ids.append(q(z.chunk(world)[rank])[2])
        torch.save(
            dict(
                weight=q.embedding.weight.detach(), cluster_size=q.cluster_size,
                ids=torch.cat(ids)), os.path.join(out, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


def test_ddp_codebook_equals_one_process_on_the_whole_batch(tmp_path):
    world = 2
    mp.spawn(_ddp_worker, args=(world, free_port(), str(tmp_path)), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pth', weights_only=True) for r in range(world)]

    # one process on the concatenated batches, k-means from rank 0's means
    batches = _batches()
    torch.manual_seed(0)
    flat0 = F.normalize(batches[0].chunk(world)[0].permute(0, 2, 3, 1), dim=-1).reshape(-1, D)
    means0 = sample_vectors(flat0, K)
    flat = F.normalize(batches[0].permute(0, 2, 3, 1), dim=-1).reshape(-1, D)
    single = NormEMAVectorQuantizer(K, D, decay=0.9, kmeans_init=True).train()
    with torch.no_grad():
        single.embedding.weight.copy_(kmeans(flat, K, 10, means=means0)[0])
        single.embedding.initted.fill_(1.)
    ids = [single(z)[2] for z in batches]

    for r, got in enumerate(ranks):
        torch.testing.assert_close(got['weight'], single.embedding.weight, rtol=0, atol=1e-5)
        torch.testing.assert_close(got['cluster_size'], single.cluster_size, rtol=0, atol=1e-5)
        mine = torch.cat([i.view(4, -1).chunk(world)[r].reshape(-1) for i in ids])
        assert torch.equal(got['ids'], mine)
    # the update used both halves: rank 0's half alone gives another codebook
    alone = NormEMAVectorQuantizer(K, D, decay=0.9, kmeans_init=True).train()
    torch.manual_seed(0)
    for z in batches:
        alone(z.chunk(world)[0])
    assert not torch.allclose(alone.embedding.weight, single.embedding.weight, atol=1e-3)
