"""VQ-KD's vector quantizer: l2-normalised codes, an EMA codebook, k-means init, DDP-aware.

BEiT v2 (Peng et al., 2022), unilm's ``beit2/norm_ema_quantizer.py``, mmpretrain's
``NormEMAVectorQuantizer``. Each feature ``z`` is l2-normalised and replaced by its
nearest code of an l2-normalised codebook (nearest in Euclidean distance, which on the
unit sphere is the largest cosine). The codebook is not learnt by gradient: in training,
each code moves towards the normalised mean of the features assigned to it,
``e <- l2norm(decay * e + (1 - decay) * l2norm(mean z))`` (codes no feature chose keep
their value; there is no dead-code restart, as in the references). The encoder learns
through the straight-through estimator and the commitment loss
``beta * mse(sg(z_q), z)``.

Distributed training: the per-code counts and feature sums are all-reduced before the
update, so every rank applies the update of the global batch and the codebooks stay
identical. The k-means initialisation is distributed too (means drawn on rank 0 and
broadcast, counts and sums all-reduced each iteration): it equals k-means over the
concatenated batches. The references run k-means on each rank's own batch, which leaves
the ranks with different codebooks that only the EMA slowly pulls together.

In eval mode the quantizer is a pure function (nothing is updated); the references also
count code usage in eval mode, which only fed their logs.

Key names are mmpretrain's (``embedding.weight``, ``embedding.initted``, ``cluster_size``).
"""
from typing import Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['NormEMAVectorQuantizer', 'EMACodebook', 'kmeans', 'sample_vectors', 'all_reduce_sum']


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the ranks in place (a no-op without a process group)."""
    if _distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    """``num`` rows of ``samples`` [N, D]: without replacement if N >= num, else with."""
    n = samples.shape[0]
    if n >= num:
        idx = torch.randperm(n, device=samples.device)[:num]
    else:
        idx = torch.randint(0, n, (num, ), device=samples.device)
    return samples[idx]


def kmeans(samples: torch.Tensor,
           num_clusters: int,
           num_iters: int = 10,
           means: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means (cosine similarity, l2-normalised means), over all ranks.

    Args:
        samples: [N, D] l2-normalised vectors (this rank's).
        num_clusters: K.
        num_iters: Lloyd iterations. Defaults to 10 (unilm's).
        means: [K, D] initial means; None draws them from the samples (on rank 0,
            broadcast to the others).

    Returns:
        (means [K, D], counts [K] of the last assignment, summed over the ranks).
        A cluster that gets no sample keeps its previous mean.
    """
    if means is None:
        means = sample_vectors(samples, num_clusters)
        if _distributed():
            dist.broadcast(means, src=0)
    dim = samples.shape[-1]
    bins = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    for _ in range(num_iters):
        buckets = (samples @ means.t()).max(dim=-1).indices  # [N], nearest mean
        bins = all_reduce_sum(torch.bincount(buckets, minlength=num_clusters))  # [K]
        sums = samples.new_zeros(num_clusters, dim)
        sums.scatter_add_(0, buckets[:, None].expand(-1, dim), samples)
        sums = all_reduce_sum(sums)  # [K, D]
        empty = bins == 0
        new_means = F.normalize(sums / bins.masked_fill(empty, 1)[:, None], p=2, dim=-1)
        means = torch.where(empty[:, None], means, new_means)
    return means, bins


class EMACodebook(nn.Module):
    """The codebook: ``weight`` [K, D] (not a gradient parameter) and ``initted``.

    Args:
        num_tokens: K.
        codebook_dim: D.
        kmeans_init: start from zeros and run k-means on the first batch; otherwise
            start from random unit vectors. Defaults to True.
    """

    def __init__(self, num_tokens: int, codebook_dim: int, kmeans_init: bool = True) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.codebook_dim = codebook_dim
        if kmeans_init:
            weight = torch.zeros(num_tokens, codebook_dim)
        else:
            weight = F.normalize(torch.randn(num_tokens, codebook_dim), p=2, dim=-1)
        # a Parameter without gradient, as the references: the optimizer never moves it,
        # DDP does not broadcast it (every rank computes the same all-reduced update)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.register_buffer('initted', torch.tensor([float(not kmeans_init)]))

    @torch.no_grad()
    def init_embed_(self, data: torch.Tensor) -> None:
        """k-means over ``data`` [N, D] the first time, then never again."""
        if bool(self.initted):
            return
        embed, _ = kmeans(data, self.num_tokens, 10)
        self.weight.data.copy_(embed)
        self.initted.fill_(1.)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)  # [..., D]


class NormEMAVectorQuantizer(nn.Module):
    """Nearest-code quantizer of l2-normalised features with an EMA codebook.

    Args:
        num_embed: codebook size K. Defaults to 8192.
        embed_dims: code dimension D. Defaults to 32.
        beta: weight of the commitment loss. Defaults to 1.0.
        decay: EMA decay of the codebook and usage counts. Defaults to 0.99.
        kmeans_init: initialise the codebook by k-means on the first training (or
            first) batch. Defaults to True.
    """

    def __init__(self,
                 num_embed: int = 8192,
                 embed_dims: int = 32,
                 beta: float = 1.0,
                 decay: float = 0.99,
                 kmeans_init: bool = True) -> None:
        super().__init__()
        if num_embed < 1 or embed_dims < 1:
            raise ValueError(f'NormEMAVectorQuantizer: num_embed and embed_dims must be positive, '
                             f'got {num_embed} and {embed_dims}')
        if not 0. <= decay < 1.:
            raise ValueError(f'NormEMAVectorQuantizer: decay must be in [0, 1), got {decay}')
        self.num_tokens = num_embed
        self.codebook_dim = embed_dims
        self.beta = beta
        self.decay = decay
        self.embedding = EMACodebook(num_embed, embed_dims, kmeans_init)
        # EMA of how many features each code took per (global) training batch
        self.register_buffer('cluster_size', torch.zeros(num_embed))

    def reset_cluster_size(self) -> None:
        """Zero the usage counts (unilm does it at every epoch start)."""
        self.cluster_size.zero_()

    def forward(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize a feature map.

        Args:
            z: [B, D, h, w] features.

        Returns:
            (z_q [B, D, h, w] normalised codes with the straight-through gradient,
            commitment loss (scalar), ids LongTensor [B * h * w], row-major).
        """
        B, D, h, w = z.shape
        if D != self.codebook_dim:
            raise ValueError(f'NormEMAVectorQuantizer: expected {self.codebook_dim} channels, '
                             f'got features of shape {tuple(z.shape)}')
        z = F.normalize(z.permute(0, 2, 3, 1), p=2, dim=-1)  # [B, h, w, D]
        flat = z.reshape(-1, D)  # [N, D]
        self.embedding.init_embed_(flat.detach())

        codebook = self.embedding.weight  # [K, D]
        # squared distances written as the references write them, so that the ids agree
        # with theirs bit for bit (a plain argmax of z @ e.T can break near-ties otherwise)
        d = (flat.pow(2).sum(dim=1, keepdim=True) + codebook.pow(2).sum(dim=1) -
             2 * torch.einsum('nd,kd->nk', flat, codebook))  # [N, K]
        ids = d.argmin(dim=1)  # [N]
        z_q = self.embedding(ids).view(z.shape)  # [B, h, w, D]

        if self.training:
            self._ema_update(flat.detach(), ids)

        loss = self.beta * F.mse_loss(z_q.detach(), z)
        z_q = z + (z_q - z).detach()  # straight-through
        return z_q.permute(0, 3, 1, 2).contiguous(), loss, ids

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, ids: torch.Tensor) -> None:
        """Move each chosen code towards its features' normalised mean (global batch)."""
        onehot = F.one_hot(ids, self.num_tokens).type(flat.dtype)  # [N, K]
        bins = all_reduce_sum(onehot.sum(0))  # [K]
        self.cluster_size.mul_(self.decay).add_(bins, alpha=1 - self.decay)
        empty = bins == 0
        embed_sum = all_reduce_sum(flat.t() @ onehot)  # [D, K]
        mean = F.normalize((embed_sum / bins.masked_fill(empty, 1.)[None]).t(), p=2, dim=-1)
        weight = self.embedding.weight
        mean = torch.where(empty[:, None], weight, mean)  # [K, D]
        weight.mul_(self.decay).add_(mean, alpha=1 - self.decay)
        weight.copy_(F.normalize(weight, p=2, dim=-1))

    def extra_repr(self) -> str:
        return (f'num_embed={self.num_tokens}, embed_dims={self.codebook_dim}, '
                f'beta={self.beta}, decay={self.decay}')
