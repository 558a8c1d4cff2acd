"""The judge: reads a clip's latents back into what they show, so the engine can draw several
candidates for one prompt and keep the one that shows what the prompt asked for.

The generator gets most prompts right, but not for every seed: with two objects, one seed in
two misshapes an object or moves it the wrong way, and another seed of the same prompt is right.
Reranking samples with a separate model that checks them against the prompt (DALL-E's CLIP
reranking, the reward models behind best-of-N) turns that into reliability. Our judge is a small
transformer over the latent grid, trained on the TAE's latents of rendered training clips with
their scene as the label (never on held-out combinations, never on the generator's samples), so
its mistakes are its own, not the generator's.

It reads in the world's terms, indexed by colour (every colour in a scene is distinct): the
background colour, and for each palette colour whether an object of that colour is there, and
if so its shape and its motion. Learned queries (one for the background, one per colour) attend
to the latent tokens, as DETR's object queries do, so two objects never compete for one output.

It also reads noisy latents x_t at flow time t (t = 1: clean), like a classifier for classifier
guidance, so candidates can be judged part-way through sampling and only the chosen one finished.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..world.palette import COLOR_NAMES, MOTIONS, SHAPES
from .layers import Attention, EncoderBlock, RMSNorm
from .transformer import timestep_embedding


@dataclass(frozen=True)
class JudgeConfig:
    in_channels: int = 16
    patch: tuple[int, int, int] = (1, 2, 2)
    width: int = 128
    depth: int = 3
    heads: int = 4
    max_t: int = 16  # position table sizes, in patches
    max_h: int = 32
    max_w: int = 32
    time_dim: int = 64
    colors: int = len(COLOR_NAMES)
    shapes: int = len(SHAPES)
    motions: int = len(MOTIONS)


@dataclass
class Reading:
    """Logits of what a batch of latents shows, colour-indexed."""

    background: torch.Tensor  # (B, colors)
    present: torch.Tensor  # (B, colors): an object of this colour is there
    shape: torch.Tensor  # (B, colors, shapes)
    motion: torch.Tensor  # (B, colors, motions)


class QueryBlock(nn.Module):
    """Queries read the tokens (cross-attention), then talk among themselves, then an FFN."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_kv = RMSNorm(d), RMSNorm(d)
        self.cross = Attention(d, heads, context_dim=d)
        self.mix = EncoderBlock(d, heads, 3 * d)

    def forward(self, q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        q = q + self.cross(self.norm_q(q), self.norm_kv(tokens))  # (B, Q, D)
        return self.mix(q)  # (B, Q, D)


class Judge(nn.Module):
    def __init__(self, cfg: JudgeConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.patch_embed = nn.Conv3d(cfg.in_channels, d, cfg.patch, stride=cfg.patch)
        self.pos_t = nn.Parameter(torch.randn(cfg.max_t, d) * 0.02)
        self.pos_h = nn.Parameter(torch.randn(cfg.max_h, d) * 0.02)
        self.pos_w = nn.Parameter(torch.randn(cfg.max_w, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(EncoderBlock(d, cfg.heads, 3 * d) for _ in range(cfg.depth))
        self.queries = nn.Parameter(torch.randn(1 + cfg.colors, d) * 0.02)  # background, then colours
        self.read = nn.ModuleList(QueryBlock(d, cfg.heads) for _ in range(2))
        self.norm = RMSNorm(d)
        self.background = nn.Linear(d, cfg.colors)
        self.object = nn.Linear(d, 1 + cfg.shapes + cfg.motions)  # present, shape, motion

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> Reading:
        """x (B, C, T, h, w) normalised latents at flow time t (B,) -> Reading."""
        c = self.cfg
        tok = self.patch_embed(x)  # (B, D, T', h', w')
        gt, gh, gw = tok.shape[2:]
        if gt > c.max_t or gh > c.max_h or gw > c.max_w:
            raise ValueError(f"latent grid {gt}x{gh}x{gw} patches exceeds the judge's {c.max_t}x{c.max_h}x{c.max_w}")
        pos = self.pos_t[:gt, None, None] + self.pos_h[None, :gh, None] + self.pos_w[None, None, :gw]  # (T', h', w', D)
        temb = self.time_mlp(timestep_embedding(t, c.time_dim).to(tok.dtype))  # (B, D)
        tok = tok.flatten(2).transpose(1, 2) + pos.reshape(1, -1, tok.shape[1]) + temb[:, None]  # (B, N, D)
        for block in self.blocks:
            tok = block(tok)  # (B, N, D)
        q = self.queries.expand(len(x), -1, -1)  # (B, 1 + colors, D)
        for block in self.read:
            q = block(q, tok)
        q = self.norm(q)
        obj = self.object(q[:, 1:])  # (B, colors, 1 + shapes + motions)
        return Reading(
            background=self.background(q[:, 0]),  # (B, colors)
            present=obj[..., 0],  # (B, colors)
            shape=obj[..., 1 : 1 + c.shapes],  # (B, colors, shapes)
            motion=obj[..., 1 + c.shapes :],  # (B, colors, motions)
        )


@dataclass(frozen=True)
class Want:
    """What a prompt asks for, in the judge's indices (None: the prompt does not say)."""

    background: int | None
    objects: tuple[tuple[int, int, int | None], ...]  # (colour, shape, motion or None)


def log_agreement(r: Reading, want: Want) -> torch.Tensor:
    """How well each clip of a batch agrees with `want`: the judge's log-probability (B,) that it
    shows exactly that: the background, each wanted object with its shape and motion, and no
    object of any other colour."""
    logp_bg = F.log_softmax(r.background.float(), -1)  # (B, colors)
    on, off = F.logsigmoid(r.present.float()), F.logsigmoid(-r.present.float())  # (B, colors)
    shape, motion = F.log_softmax(r.shape.float(), -1), F.log_softmax(r.motion.float(), -1)
    score = torch.zeros(len(on), device=on.device)
    if want.background is not None:
        score = score + logp_bg[:, want.background]
    wanted = {col for col, _, _ in want.objects}
    for col, shp, mot in want.objects:
        score = score + on[:, col] + shape[:, col, shp]
        if mot is not None:
            score = score + motion[:, col, mot]
    others = [k for k in range(on.shape[1]) if k not in wanted and k != want.background]
    return score + off[:, others].sum(-1)


def want_from_reading(read: dict[str, str], image: bool = False) -> Want:
    """A prompt rewriter's reading (slot -> name, engine/models/rewrite.py) as a Want; what the
    reading leaves unspecified is not judged, nor is motion in an image."""
    bg = read["background"]
    objects = []
    for k in ("1", "2"):
        color, shape, motion = read["color" + k], read["shape" + k], read["motion" + k]
        if color not in COLOR_NAMES or shape not in SHAPES:
            continue
        mot = MOTIONS.index(motion) if motion in MOTIONS and not image else None
        objects.append((COLOR_NAMES.index(color), SHAPES.index(shape), mot))
    return Want(COLOR_NAMES.index(bg) if bg in COLOR_NAMES else None, tuple(objects))
