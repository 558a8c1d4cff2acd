"""The vision encoder of personalized generation (docs/system.md section 4, Movie Gen PT2V at our scale).

A reference image (the character alone, centred, r = 0.3, as engine/reference.py prepares it) is cut
into pixel patches, embedded, and read by a small transformer; its tokens are projected by
Linear + LayerNorm to the backbone's width (in the Generator) and concatenated with the prompt's
text tokens, so the same cross-attention reads both. It reads pixels rather than TAE latents: the
reference is one clean image, and its pattern should not depend on what the autoencoder keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .layers import EncoderBlock, RMSNorm


@dataclass(frozen=True)
class ReferenceConfig:
    size: int = 64  # the prepared reference's side in pixels
    patch: int = 8  # 8x8-pixel patches: 64 tokens, each about one pattern period of the character
    width: int = 128
    depth: int = 2
    heads: int = 4


class ReferenceEncoder(nn.Module):
    def __init__(self, cfg: ReferenceConfig):
        super().__init__()
        self.cfg = cfg
        n = (cfg.size // cfg.patch) ** 2
        self.embed = nn.Conv2d(3, cfg.width, cfg.patch, stride=cfg.patch)
        self.pos = nn.Parameter(torch.randn(n, cfg.width) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(cfg.width, cfg.heads, 3 * cfg.width) for _ in range(cfg.depth))
        self.norm = RMSNorm(cfg.width)

    @property
    def tokens(self) -> int:
        return (self.cfg.size // self.cfg.patch) ** 2

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, S, S) in [-1, 1] -> tokens (B, N, width)."""
        x = self.embed(image).flatten(2).transpose(1, 2)  # (B, N, width)
        x = x + self.pos
        for block in self.blocks:
            x = block(x)
        return self.norm(x)  # (B, N, width)
