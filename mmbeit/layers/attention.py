"""BEiT's multi-head self-attention: fused qkv, q/v biases, additive position bias."""
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .relative_position_bias import RelativePositionBias, RelPosWindow


class BEiTAttention(nn.Module):
    """Self-attention with q and v biases (no k bias) and a relative position bias.

    Attention runs through ``F.scaled_dot_product_attention`` with the bias as
    an additive mask cast to the query's dtype. Every projection is called as a
    module (``self.qkv(x)``, ``self.proj(x)``), so forward hooks, FLOP counters
    and replacements (LoRA, quantisation) see them. ``qkv`` has no bias of its
    own: the q and v biases (BEiT has no k bias) are parameters of the
    attention, added to its output, which keeps the checkpoint keys
    ``qkv.weight``, ``q_bias``, ``v_bias`` of every BEiT format.

    The attention weights are never formed unless asked for: ``weights_sink``
    (None by default) is a callable that then receives them with the patch grid,
    ``weights_sink(weights [B, heads, N, N], (Wh, Ww))``, while the output still
    comes from SDPA (see :mod:`mmbeit.visualization.attention_maps`).

    Args:
        embed_dims: channels C.
        num_heads: heads; C must divide by it.
        window_size: (Wh, Ww) for a per-layer relative position bias, or None.
        qkv_bias: learn q and v biases. Defaults to True.
        attn_drop: dropout on attention weights.
        proj_drop: dropout after the output projection.
        rel_pos_resize: how the per-layer table is resized for another input
            size at run time, 'unilm' or 'bilinear' (see :class:`RelativePositionBias`).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: Optional[Tuple[int, int]] = None,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 rel_pos_resize: str = 'unilm') -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(
                f'embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(embed_dims))
            self.v_bias = nn.Parameter(torch.zeros(embed_dims))
        else:
            self.q_bias = self.v_bias = None
        self.rel_pos_bias = (
            RelativePositionBias(window_size, num_heads, rel_pos_resize)
            if window_size is not None else None)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)
        self.weights_sink: Optional[Callable[[torch.Tensor, Tuple[int, int]], None]] = None

    def forward(self,
                x: torch.Tensor,
                window_size: Tuple[int, int],
                shared_bias: Optional[torch.Tensor] = None,
                window: Optional[RelPosWindow] = None) -> torch.Tensor:
        """x: [B, N, C] (N = 1 + Wh*Ww); shared_bias: [heads, N, N] or None.

        ``window``: the forward's :class:`RelPosWindow` of ``window_size``, shared by
        the layers (the bias index and resize weights made once), or None.
        """
        B, N, C = x.shape
        qkv = self.qkv(x)  # [B, N, 3C]
        if self.q_bias is not None:
            k_bias = torch.zeros_like(self.v_bias)  # no k bias: a constant, never learned
            qkv = qkv + torch.cat([self.q_bias, k_bias, self.v_bias]).to(qkv.dtype)
        qkv = qkv.reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, heads, N, C/heads] each
        attn_bias = (
            self.rel_pos_bias(window_size, window) if self.rel_pos_bias is not None else None)
        if shared_bias is not None:
            attn_bias = shared_bias if attn_bias is None else attn_bias + shared_bias
        if attn_bias is not None:
            attn_bias = attn_bias.unsqueeze(0).to(q.dtype)  # [1, heads, N, N]
        if self.weights_sink is not None:  # only when attention maps are asked for
            self.weights_sink(self.attention_weights(q, k, attn_bias), window_size)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias,
            dropout_p=self.attn_drop if self.training else 0.)  # [B, heads, N, C/heads]
        x = x.transpose(1, 2)  # [B, N, heads, C/heads]
        if torch.compiler.is_exporting():
            # SDPA's memory layout depends on its CPU kernel (math when an input needs
            # grad, flash otherwise), and the ONNX exporter re-traces the graph with
            # another choice than torch.export made: a reshape recorded as a free view
            # then fails ("Cannot view a tensor"). A copy fixes the layout; eager skips it.
            x = x.clone(memory_format=torch.contiguous_format)
        x = x.reshape(B, N, C)
        return self.proj_drop(self.proj(x))

    @staticmethod
    def attention_weights(q: torch.Tensor,
                          k: torch.Tensor,
                          attn_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """softmax(q k^T / sqrt(d) + bias) in fp32: what SDPA applies to v, before dropout.

        q, k: [B, heads, N, d]; attn_bias: [1 or B, heads, N, N] or None.
        Returns [B, heads, N, N]; each row sums to 1.
        """
        attn = (q.float() * q.shape[-1]**-0.5) @ k.float().transpose(-2, -1)  # [B, heads, N, N]
        if attn_bias is not None:
            attn = attn + attn_bias.float()
        return attn.softmax(dim=-1)
