"""The flow-matching transformer (docs/system.md section 2), Movie Gen's Llama-3-style backbone.

Latents (B, C, T, h, w) are patchified by a 1x2x2 3D conv into tokens; learned factorised t/h/w
position tables are summed and added at the input of every layer. Each block: RMSNorm ->
bidirectional self-attention -> cross-attention to the context tokens (text, and later a
reference image or task tokens) -> SwiGLU, with adaLN shift/scale/gate from the flow time (one
shared MLP plus a learned per-layer table, all zero-initialised, so every block starts as the
identity). The output projection is zero-initialised too.

Conditions enter in the sequence (docs/conditioning.md, docs/system.md section 9): a condition's
clean latents (an edit's source, a reference picture) are patchified by the same embedding and
appended to the target's tokens, told apart by a learned marker per kind and by their own time
(clean, t = 1), and placed by the same position tables: a source at the target's own (t, h, w), a
reference by (h, w) alone. The target reads them in every block's self-attention; they read only
themselves and skip the prompt, so each is the model's own reading of a clean latent. Only the
target's tokens leave the model, so the loss is on them alone. `context_kinds` = 0 is a model
without them, and a model grown from a text-to-video checkpoint starts as it (given no context,
or all of it masked out, it is the T2V model exactly).

Older designs kept for the upsampler and old checkpoints: `extra_channels` are concatenated to
the noisy latent before patchify with zero-initialised weights; `tasks` > 0 adds a learned task
embedding to the time embedding and as extra context tokens.
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
    context_kinds: int = 0  # conditions in the sequence: SOURCE, REFERENCE, FRAMES (0: none)
    # Given frames (FRAMES): how many clip frames one latent frame codes (the TAE's time stride);
    # a given frame is told by its latent time and its phase, which of those frames a single
    # picture shows, or a whole latent frame of a clip (phase = stride). 0: no given frames.
    frame_stride: int = 0
    # A learned per-head logit bias from each target token to the source token at its own place,
    # starting at this value (0: none): copying what an edit leaves alone without first learning
    # to match places through the position tables.
    place_bias: float = 0.0


SOURCE, REFERENCE, FRAMES = 0, 1, 2  # context kinds: their marker rows


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of flow time t in [0, 1] (scaled to 0..1000 as in DiT): (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]  # (B, N, D), shift and scale (B, D)


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
        if cfg.context_kinds and cfg.place_bias:
            self.place_bias = nn.Parameter(torch.full((cfg.heads,), float(cfg.place_bias)))

    def read_context(
        self, c: torch.Tensor, c_mod: torch.Tensor, c_mask: torch.Tensor | None = None
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """This block on the conditions' tokens c (B, M, D) alone, at their own (clean) time c_mod:
        their keys and values for the target to read (B, H, M, d/H), and their next states. They
        read only themselves (where c_mask (B, M) is True) and not the prompt, so they depend on the
        clean latents that are given alone."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (c_mod + self.mod_table).unbind(1)  # each (B, D)
        q, k, v = self.attn.project(modulate(self.norm1(c), shift1, scale1))  # (B, H, M, d/H)
        c = c + gate1[:, None] * self.attn.attend(q, k, v, c_mask)  # (B, M, D)
        c = c + gate2[:, None] * self.ffn(modulate(self.norm3(c), shift2, scale2))
        return (k, v), c

    def forward(
        self,
        x: torch.Tensor,
        mod: torch.Tensor,
        ctx: torch.Tensor,
        ctx_mask: torch.Tensor | None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        kv_mask: torch.Tensor | None = None,
        same_place: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, N, D) the target's tokens; kv the conditions' keys and values at this block (from
        read_context), read where kv_mask (B, M) is True; same_place (N, M) marks the source token
        at each target token's place (for the place bias)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (mod + self.mod_table).unbind(1)  # each (B, D)
        h = modulate(self.norm1(x), shift1, scale1)  # (B, N, D)
        bias = None
        if same_place is not None and hasattr(self, "place_bias"):
            bias = self.place_bias[:, None, None] * same_place  # (H, N, M)
        x = x + gate1[:, None] * self.attn(h, extra=kv, extra_mask=kv_mask, extra_bias=bias)  # (B, N, D)
        x = x + self.cross(self.norm2(x), ctx, ctx_mask)  # (B, N, D) reads the prompt
        h = modulate(self.norm3(x), shift2, scale2)
        return x + gate2[:, None] * self.ffn(h)  # (B, N, D)


@dataclass
class ContextStates:
    """What the target reads of its conditions, block by block (DiT.read_context): computed once
    per clip at sampling, since it depends on the clean conditions alone."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block, keys and values (B, H, M, d/H)
    mask: torch.Tensor  # (B, M) True = read
    source_grid: tuple[int, int, int] | None = None  # the source's (t, h, w) in patches; its tokens come first


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
        if cfg.context_kinds:
            # Tells a condition's tokens from the target's at the same position (and kinds apart).
            self.markers = nn.Parameter(torch.randn(cfg.context_kinds, d) * 0.02)
        if cfg.frame_stride:
            # A given frame's phase: which frame of its latent frame a picture shows, or a whole one.
            self.frame_phase = nn.Parameter(torch.randn(cfg.frame_stride + 1, d) * 0.02)
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

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, T, h, w) -> tokens (B, N, D), before positions."""
        return self.patch_embed(z.to(self.patch_embed.weight.dtype)).flatten(2).transpose(1, 2)

    def context_tokens(
        self,
        source: torch.Tensor | None,
        source_keep: torch.Tensor | None,
        reference: torch.Tensor | None,
        reference_keep: torch.Tensor | None,
        frames: torch.Tensor | None = None,
        frame_at: torch.Tensor | None = None,
        frame_phase: torch.Tensor | None = None,
        frames_keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The conditions' tokens (B, M, D), their positions with markers (B, M, D), and which are
        read (B, M); None when there are none. A source (B, C, T, h, w) sits at the target's own
        positions; a reference (B, C, 1, h', w') at (h, w) alone, no time; given frames
        (B, C, F, h, w) each at its latent time frame_at (B, F) and phase frame_phase (B, F), read
        where frames_keep (B, F) is True."""
        if not self.cfg.context_kinds:
            if source is not None or reference is not None or frames is not None:
                raise ValueError("this model takes no conditions in the sequence (context_kinds = 0)")
            return None
        parts, places, masks = [], [], []
        for z, keep, kind in ((source, source_keep, SOURCE), (reference, reference_keep, REFERENCE)):
            if z is None:
                continue
            tok = self.embed(z)  # (B, M_k, D)
            b, m = tok.shape[:2]
            gt, gh, gw = (n // k for n, k in zip(z.shape[2:], self.cfg.patch, strict=True))
            if kind == SOURCE:
                pos = self.positions(gt, gh, gw)
            else:
                pos = (self.pos_h[:gh, None] + self.pos_w[None, :gw]).reshape(gh * gw, -1).repeat(gt, 1)
            parts.append(tok)
            places.append((pos + self.markers[kind]).expand(b, m, -1))
            keep = torch.ones(b, dtype=torch.bool, device=tok.device) if keep is None else keep.to(tok.device)
            masks.append(keep.view(-1, 1).expand(b, m))
        if frames is not None:
            tok, place, mask = self._given_frames(frames, frame_at, frame_phase, frames_keep)
            parts.append(tok)
            places.append(place)
            masks.append(mask)
        if not parts:
            return None
        return torch.cat(parts, 1), torch.cat(places, 1).to(parts[0].dtype), torch.cat(masks, 1)

    def _given_frames(
        self, z: torch.Tensor, at: torch.Tensor | None, phase: torch.Tensor | None, keep: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Given frames' tokens (B, F*hw, D), places (B, F*hw, D) and mask (B, F*hw): each latent
        frame of z (B, C, F, h, w) at its own time and phase."""
        c = self.cfg
        if not c.frame_stride or c.context_kinds <= FRAMES:
            raise ValueError("this model takes no given frames (frame_stride = 0)")
        if c.patch[0] != 1:
            raise ValueError("given frames need a patch of one latent frame in time")
        b, f = z.shape[0], z.shape[2]
        if at is None or phase is None or tuple(at.shape) != (b, f) or tuple(phase.shape) != (b, f):
            raise ValueError(f"frame_at and frame_phase must be ({b}, {f}): each given frame's time and phase")
        if int(at.max()) >= c.max_t or int(at.min()) < 0:
            raise ValueError(f"a given frame's latent time is outside the model's 0..{c.max_t - 1}")
        tok = self.embed(z)  # (B, F*gh*gw, D), frame by frame
        gh, gw = z.shape[3] // c.patch[1], z.shape[4] // c.patch[2]
        hw = (self.pos_h[:gh, None] + self.pos_w[None, :gw]).reshape(1, 1, gh * gw, -1)  # (1, 1, hw, D)
        when = self.pos_t[at] + self.frame_phase[phase] + self.markers[FRAMES]  # (B, F, D)
        place = (when[:, :, None] + hw).reshape(b, f * gh * gw, -1)  # (B, F*hw, D)
        keep = torch.ones(b, f, dtype=torch.bool, device=tok.device) if keep is None else keep.to(tok.device)
        return tok, place, keep[:, :, None].expand(b, f, gh * gw).reshape(b, -1)

    def read_context(
        self,
        source: torch.Tensor | None = None,
        source_keep: torch.Tensor | None = None,
        reference: torch.Tensor | None = None,
        reference_keep: torch.Tensor | None = None,
        frames: torch.Tensor | None = None,
        frame_at: torch.Tensor | None = None,
        frame_phase: torch.Tensor | None = None,
        frames_keep: torch.Tensor | None = None,
    ) -> ContextStates | None:
        """The conditions read through every block at their own time (clean, t = 1), without the
        target: what each block's self-attention appends to the target's keys. None: none given."""
        given = self.context_tokens(
            source, source_keep, reference, reference_keep, frames, frame_at, frame_phase, frames_keep
        )
        if given is None:
            return None
        ctok, cpos, cmask = given  # (B, M, D), (B, M, D), (B, M)
        b = ctok.shape[0]
        ones = torch.ones(b, device=ctok.device)
        clean = self.time_mlp(timestep_embedding(ones, self.cfg.time_dim).to(ctok.dtype))  # (B, D)
        cmod = self.mod_mlp(clean).view(b, 6, -1)  # (B, 6, D)
        # A dropped condition must not colour the kept ones' reading (given frames drop one by one);
        # a sample with none kept reads them all (unread by its target, and no empty softmax).
        read = None if bool(cmask.all()) else cmask | ~cmask.any(1, keepdim=True)  # (B, M)
        kv = []
        for block in self.blocks:
            pair, ctok = block.read_context(ctok + cpos, cmod, read)  # positions at every layer's input
            kv.append(pair)
        grid = None
        if source is not None:
            grid = tuple(n // k for n, k in zip(source.shape[2:], self.cfg.patch, strict=True))
        return ContextStates(kv, cmask, grid)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        task: torch.Tensor | None = None,
        source: torch.Tensor | None = None,
        source_keep: torch.Tensor | None = None,
        reference: torch.Tensor | None = None,
        reference_keep: torch.Tensor | None = None,
        frames: torch.Tensor | None = None,
        frame_at: torch.Tensor | None = None,
        frame_phase: torch.Tensor | None = None,
        frames_keep: torch.Tensor | None = None,
        context_states: ContextStates | None = None,
    ) -> torch.Tensor:
        """x (B, C, T, h, w) noisy latents at flow time t (B,) -> velocity (B, C, T, h, w).
        source / reference: clean latents in the sequence; *_keep (B,) bool: False drops that
        sample's condition (how training teaches the guidance terms without it). frames: given
        frames (B, C, F, h, w) at latent times frame_at and phases frame_phase (B, F), read where
        frames_keep (B, F). context_states: read_context's result for them, when the caller
        already has it."""
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
        states = context_states or self.read_context(
            source, source_keep, reference, reference_keep, frames, frame_at, frame_phase, frames_keep
        )
        if c.tasks:
            # No task given: plain generation ("generate", index 0), which such a model also learned.
            task = task if task is not None else torch.zeros(b, dtype=torch.long, device=x.device)
            temb = temb + self.task_embed(task)
            extra = self.task_tokens(self.task_embed(task)).view(b, c.task_tokens, -1)  # (B, K, D)
            context = torch.cat([context, extra.to(context.dtype)], 1)
            if context_mask is not None:
                context_mask = torch.cat([context_mask, context_mask.new_ones(b, c.task_tokens)], 1)
        mod = self.mod_mlp(temb).view(b, 6, -1)  # (B, 6, D) shared across layers
        same = None
        if c.place_bias and states is not None and states.source_grid == (gt, gh, gw):
            n, m = tok.shape[1], states.mask.shape[1]
            same = torch.eye(n, m, dtype=tok.dtype, device=tok.device)  # the source's tokens come first, in order
        for i, block in enumerate(self.blocks):
            kv = states.kv[i] if states is not None else None
            mask = states.mask if states is not None else None
            tok = block(tok + pos, mod, context, context_mask, kv, mask, same)  # positions at every layer's input
        shift, scale = self.out_mod(F.silu(temb)).chunk(2, -1)  # (B, D) each
        tok = self.norm_out(tok) * (1 + scale[:, None]) + shift[:, None]
        out = self.out(tok)  # (B, N, C*pt*ph*pw): the target's tokens only
        out = out.view(b, gt, gh, gw, c.in_channels, pt, ph, pw)
        return out.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, c.in_channels, T, H, W)
