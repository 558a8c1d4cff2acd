"""The flow-matching transformer (docs/system.md section 2), Movie Gen's Llama-3-style backbone.

Latents (B, C, T, h, w) are patchified by a 1x2x2 3D conv into tokens; learned factorised t/h/w
position tables are summed and added at the input of every layer. Each block: RMSNorm ->
bidirectional self-attention -> cross-attention to the context tokens (text, and later a
reference image or task tokens) -> SwiGLU, with adaLN shift/scale/gate from the flow time (one
shared MLP plus a learned per-layer table, all zero-initialised, so every block starts as the
identity). The output projection is zero-initialised too.

Room for later tasks: `extra_channels` are concatenated to the noisy latent before patchify
(edit source video, image-to-video frames and mask) with zero-initialised weights, so a model
grown from a text-to-video checkpoint starts out identical to it; `tasks` > 0 adds a learned
task embedding to the time embedding and as extra context tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import Attention, RMSNorm, SwiGLU


@dataclass(frozen=True)
class DiTConfig:
    in_channels: int = 16
    extra_channels: int = 0
    patch: tuple[int, int, int] = (1, 2, 2)
    width: int = 192
    depth: int = 6
    heads: int = 6
    ffn: int = 512
    max_t: int = 16  # position table sizes, in patches
    max_h: int = 32
    max_w: int = 32
    time_dim: int = 256
    tasks: int = 0
    task_tokens: int = 4


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of flow time t in [0, 1] (scaled to 0..1000 as in DiT): (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


class Block(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d = cfg.width
        self.norm1, self.norm2, self.norm3 = RMSNorm(d, affine=False), RMSNorm(d), RMSNorm(d, affine=False)
        self.attn = Attention(d, cfg.heads)
        self.cross = Attention(d, cfg.heads, context_dim=d)
        self.ffn = SwiGLU(d, cfg.ffn)
        # Per-layer part of the modulation, added to the shared MLP's output (Movie Gen / PixArt).
        self.mod_table = nn.Parameter(torch.zeros(6, d))

    def forward(
        self, x: torch.Tensor, mod: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor | None
    ) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = (mod + self.mod_table).unbind(1)  # each (B, D)
        h = self.norm1(x) * (1 + scale1[:, None]) + shift1[:, None]  # (B, N, D)
        x = x + gate1[:, None] * self.attn(h)  # (B, N, D) bidirectional
        x = x + self.cross(self.norm2(x), ctx, ctx_mask)  # (B, N, D) reads the prompt
        h = self.norm3(x) * (1 + scale2[:, None]) + shift2[:, None]
        return x + gate2[:, None] * self.ffn(h)  # (B, N, D)


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d, (pt, ph, pw) = cfg.width, cfg.patch
        self.patch_embed = nn.Conv3d(cfg.in_channels, d, cfg.patch, stride=cfg.patch)
        if cfg.extra_channels:
            # The conditioning channels' part of the patch embedding (one conv over the concatenated
            # channels is the sum of two), kept apart so training can give it its own learning rate.
            self.cond_embed = nn.Conv3d(cfg.extra_channels, d, cfg.patch, stride=cfg.patch, bias=False)
            nn.init.zeros_(self.cond_embed.weight)  # conditioning channels start silent
        self.pos_t = nn.Parameter(torch.randn(cfg.max_t, d) * 0.02)
        self.pos_h = nn.Parameter(torch.randn(cfg.max_h, d) * 0.02)
        self.pos_w = nn.Parameter(torch.randn(cfg.max_w, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.mod_mlp = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        nn.init.zeros_(self.mod_mlp[1].weight)
        nn.init.zeros_(self.mod_mlp[1].bias)
        if cfg.tasks:
            self.task_embed = nn.Embedding(cfg.tasks, d)
            nn.init.zeros_(self.task_embed.weight)  # added to the time embedding: start as the T2V model
            self.task_tokens = nn.Linear(d, cfg.task_tokens * d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm_out = RMSNorm(d, affine=False)
        self.out_mod = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, cfg.in_channels * pt * ph * pw)
        for lin in (self.out_mod, self.out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def positions(self, t: int, h: int, w: int) -> torch.Tensor:
        c = self.cfg
        if t > c.max_t or h > c.max_h or w > c.max_w:
            raise ValueError(f"latent grid {t}x{h}x{w} patches exceeds the model's {c.max_t}x{c.max_h}x{c.max_w}")
        pos = self.pos_t[:t, None, None] + self.pos_h[None, :h, None] + self.pos_w[None, None, :w]  # (t, h, w, D)
        return pos.reshape(t * h * w, -1)  # (N, D)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        task: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, C, T, h, w) noisy latents at flow time t (B,) -> velocity (B, C, T, h, w)."""
        c = self.cfg
        b, _, T, H, W = x.shape
        pt, ph, pw = c.patch
        tok = self.patch_embed(x)  # (B, D, T/pt, h/ph, w/pw)
        if c.extra_channels and cond is not None:  # channel concatenation, as a sum (None: blank)
            tok = tok + self.cond_embed(cond.to(tok.dtype))  # (B, D, T/pt, h/ph, w/pw)
        gt, gh, gw = tok.shape[2:]
        tok = tok.flatten(2).transpose(1, 2)  # (B, N, D)
        pos = self.positions(gt, gh, gw).to(tok.dtype)  # (N, D)
        temb = self.time_mlp(timestep_embedding(t, c.time_dim).to(tok.dtype))  # (B, D)
        if c.tasks:
            # No task given: plain generation ("generate", index 0), which such a model also learned.
            task = task if task is not None else torch.zeros(b, dtype=torch.long, device=x.device)
            temb = temb + self.task_embed(task)
            extra = self.task_tokens(self.task_embed(task)).view(b, c.task_tokens, -1)  # (B, K, D)
            context = torch.cat([context, extra.to(context.dtype)], 1)
            if context_mask is not None:
                context_mask = torch.cat([context_mask, context_mask.new_ones(b, c.task_tokens)], 1)
        mod = self.mod_mlp(temb).view(b, 6, -1)  # (B, 6, D) shared across layers
        for block in self.blocks:
            tok = block(tok + pos, mod, context, context_mask)  # positions at every layer's input
        shift, scale = self.out_mod(F.silu(temb)).chunk(2, -1)  # (B, D) each
        tok = self.norm_out(tok) * (1 + scale[:, None]) + shift[:, None]
        out = self.out(tok)  # (B, N, C*pt*ph*pw)
        out = out.view(b, gt, gh, gw, c.in_channels, pt, ph, pw)
        return out.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, c.in_channels, T, H, W)
