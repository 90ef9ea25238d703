"""VQ-KD's teacher: a frozen ViT-B/16 (CLIP or DINO) whose patch features are the targets.

unilm's VQ-KD (``beit2/modeling_vqkd.py``) distils the patch features of a frozen
teacher: CLIP ViT-B/16's (``ln_post`` on every token, then the projection ``proj`` to
512 channels) or DINO ViT-B/16's (the final ``norm``, 768 channels). The tokenizer's
view arrives in [-1, 1]; the teacher maps it back to [0, 1] and normalises it with its
own statistics (unilm's ``ScalingLayerForClip`` / ``ScalingLayerForIM``).

The network is timm's ``VisionTransformer`` (``vit_base_patch16_clip_quickgelu_224``
for CLIP: pre-norm, QuickGELU, ``head`` = CLIP's ``proj``; ``vit_base_patch16_224``
for DINO). timm is a requirement already, it is the one library whose ViT loads both
OpenAI's CLIP weights (``visual.*``, converted by timm's own ``checkpoint_filter_fn``)
and DINO's, and the teacher needs no BEiT feature (relative position, layer scale,
masking) that would justify mmbeit.BEiT with a second key layout.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmbeit.registry import MODELS

__all__ = ['ViTTeacher', 'TEACHERS']

# kind -> timm model, feature channels, the teacher's own input normalisation
TEACHERS = {
    'clip':
    dict(
        model='vit_base_patch16_clip_quickgelu_224',
        out_dims=512,
        mean=(0.48145466, 0.4578275, 0.40821073),
        std=(0.26862954, 0.26130258, 0.27577711)),
    'dino':
    dict(
        model='vit_base_patch16_224',
        out_dims=0,  # no projection: the 768 channels of the final norm
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225)),
}


@MODELS.register_module()
class ViTTeacher(BaseModule):
    """Frozen teacher: images in [-1, 1] -> patch features [B, N, out_dims].

    Args:
        kind: 'clip' (CLIP ViT-B/16, 512 channels) or 'dino' (DINO ViT-B/16, 768).
        checkpoint: the teacher's weights: OpenAI CLIP's state dict (``visual.*``; the
            text tower is ignored), timm's or DINO's. None keeps random weights (tests,
            the sample config); a real tokenizer needs a real teacher.
        img_size: the teacher's input size. Defaults to 224.
        model_kwargs: overrides of the timm model's arguments, e.g.
            ``dict(embed_dim=64, depth=2, num_heads=2)`` for a tiny teacher;
            ``num_classes`` sets the CLIP projection's width.
        init_seed: seed of the random weights when there is no checkpoint, so that every
            process builds the same teacher. Defaults to None (the global RNG).
    """

    def __init__(self,
                 kind: str = 'clip',
                 checkpoint: Optional[str] = None,
                 img_size: int = 224,
                 model_kwargs: Optional[dict] = None,
                 init_seed: Optional[int] = None) -> None:
        super().__init__(init_cfg=None)
        if kind not in TEACHERS:
            raise ValueError(f'ViTTeacher: unknown kind {kind!r}; choose one of {sorted(TEACHERS)}')
        try:
            import timm
        except ImportError as e:  # pragma: no cover - timm is in requirements
            raise ImportError('ViTTeacher needs timm: pip install timm') from e
        spec = TEACHERS[kind]
        kwargs = dict(img_size=img_size, num_classes=spec['out_dims'])
        kwargs.update(model_kwargs or {})
        self.kind = kind
        self.checkpoint = checkpoint
        self.init_seed = init_seed
        if init_seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(init_seed)
                self.vit = timm.create_model(spec['model'], pretrained=False, **kwargs)
        else:
            self.vit = timm.create_model(spec['model'], pretrained=False, **kwargs)
        head = self.vit.head
        self.out_dims = head.out_features if isinstance(head, nn.Linear) else self.vit.embed_dim
        # constants, rebuilt from the kind (unilm's scaling_layer.shift / scale)
        self.register_buffer('mean', torch.tensor(spec['mean']).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(spec['std']).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        super().train(False)

    def init_weights(self) -> None:
        """Load ``checkpoint`` strictly; without one keep the (seeded) random weights."""
        if self.checkpoint is not None:
            self.load_weights(self.checkpoint)
        self._is_init = True

    def load_weights(self, checkpoint) -> None:
        """OpenAI CLIP (``visual.*``), timm or DINO weights from a path, URL or state dict."""
        from mmbeit.converters import read_checkpoint, unwrap_checkpoint
        try:
            state_dict, _ = unwrap_checkpoint(read_checkpoint(checkpoint))
        except Exception as e:
            raise ValueError(
                f'ViTTeacher: cannot read {checkpoint!r} as a state dict ({e}); it takes a '
                "weights-only file: OpenAI CLIP's state dict (visual.*, e.g. saved from the "
                "TorchScript archive's state_dict()), timm's or DINO's") from e
        self.vit.load_state_dict(self.convert_state_dict(state_dict, str(checkpoint)))

    def convert_state_dict(self, state_dict: dict, source: str = 'checkpoint') -> dict:
        """OpenAI CLIP / timm / DINO keys -> this teacher's ``vit`` keys, all of them.

        Raises:
            KeyError: keys missing or left over, named.
        """
        from timm.models.vision_transformer import checkpoint_filter_fn
        converted = checkpoint_filter_fn(dict(state_dict), self.vit)
        own = self.vit.state_dict()
        missing = sorted(set(own) - set(converted))
        unexpected = sorted(set(converted) - set(own))
        shapes = sorted(k for k in set(own) & set(converted) if own[k].shape != converted[k].shape)
        if missing or unexpected or shapes:
            raise KeyError(f'ViTTeacher ({self.kind}): {source} does not fit; missing '
                           f'{missing[:10]}, unexpected {unexpected[:10]}, shapes differ '
                           f'{shapes[:10]}')
        return converted

    def train(self, mode: bool = True) -> 'ViTTeacher':
        """Stay in eval mode whatever the parent asks."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch features of images in [-1, 1]: [B, 3, H, W] -> [B, N, out_dims]."""
        x = ((x.float() + 1.) * 127.5).clamp(0., 255.) / 255.  # back to [0, 1]
        x = (x - self.mean) / self.std
        feats = self.vit.forward_features(x)  # [B, 1 + N, C], final norm applied
        return self.vit.head(feats[:, self.vit.num_prefix_tokens:])  # [B, N, out_dims]
