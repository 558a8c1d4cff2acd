"""Temporal autoencoder (docs/system.md section 1): an image autoencoder inflated to 2.5D.

Every 2D spatial conv is followed by a 1D temporal conv (replicate padding, identity at init, so
the untrained inflation behaves like the per-frame image model); the lowest resolution has spatial
attention then temporal attention. Time is halved by stride-2 temporal convs and doubled by
nearest-neighbour repeat + conv. The encoder is deterministic (no KL sampling: on our CPU budget
the sampling noise slowed reconstruction learning several-fold); a small L2 keeps latents near
zero and the outlier penalty keeps them free of high-norm dots. A single frame is a 1-frame video, so images and videos share one
latent space. Long clips are encoded and decoded in overlapping temporal tiles blended linearly.

Tensors are (B, C, T, H, W) throughout; pixels are in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..tiling import blend_tiles, tile_starts


@dataclass(frozen=True)
class TAEConfig:
    latent_channels: int = 16
    channels: tuple[int, ...] = (48, 96, 160)  # per level; level 0 sits after a 2x pixel-unshuffle
    decoder_channels: tuple[int, ...] = (64, 128, 192)
    temporal_down: int = 4  # power of two; the first log2 levels halve time
    groups: int = 8
    heads: int = 4
    # Temporal tiling at inference, in latent frames (tile_frames * temporal_down pixels frames).
    tile_latents: int = 8
    tile_overlap: int = 4
    # Set after training: per-channel latent statistics the generator normalises with.
    latent_mean: tuple[float, ...] = field(default_factory=tuple)
    latent_std: tuple[float, ...] = field(default_factory=tuple)

    @property
    def spatial_down(self) -> int:
        return 2 ** len(self.channels)  # pixel-unshuffle 2x, then one 2x per level after the first

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        s = self.spatial_down
        return (self.latent_channels, math.ceil(frames / self.temporal_down), height // s, width // s)


class TemporalConv(nn.Module):
    """1D conv along time with replicate padding; identity at init (docs/system.md: inflation)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, identity: bool = True):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv3d(c_in, c_out, (3, 1, 1), stride=(stride, 1, 1))
        if identity and c_in == c_out:
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.weight[:, :, 1, 0, 0] = torch.eye(c_in)
                self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, 0, 0, 1, 1), mode="replicate")  # (B, C, T+2, H, W)
        return self.conv(x)  # (B, C', ceil(T/stride), H, W)


class SpatialConv(nn.Conv3d):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__(c_in, c_out, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-(spatial conv, temporal conv) twice, with a skip."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = SpatialConv(c_in, c_out)
        self.tconv1 = TemporalConv(c_out, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = SpatialConv(c_out, c_out)
        self.tconv2 = TemporalConv(c_out, c_out)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tconv1(self.conv1(F.silu(self.norm1(x))))  # (B, C', T, H, W)
        h = self.tconv2(self.conv2(F.silu(self.norm2(h))))  # (B, C', T, H, W)
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention within each frame, then temporal self-attention at each position."""

    def __init__(self, c: int, groups: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_s, self.norm_t = nn.GroupNorm(groups, c), nn.GroupNorm(groups, c)
        self.qkv_s, self.qkv_t = nn.Linear(c, 3 * c), nn.Linear(c, 3 * c)
        self.out_s, self.out_t = nn.Linear(c, c), nn.Linear(c, c)
        for out in (self.out_s, self.out_t):  # start as identity: attention is added on top
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)

    def _attend(self, x: torch.Tensor, qkv: nn.Linear, out: nn.Linear) -> torch.Tensor:
        n, s, c = x.shape  # (batch of sequences, sequence, channels)
        q, k, v = qkv(x).view(n, s, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # (n, heads, s, c/heads)
        return out(y.transpose(1, 2).reshape(n, s, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        hs = self.norm_s(x).permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)  # (B*T, HW, C)
        x = x + self._attend(hs, self.qkv_s, self.out_s).view(b, t, h, w, c).permute(0, 4, 1, 2, 3)
        ht = self.norm_t(x).permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)  # (B*H*W, T, C)
        x = x + self._attend(ht, self.qkv_t, self.out_t).view(b, h, w, t, c).permute(0, 4, 3, 1, 2)
        return x


def _n_time_levels(cfg: TAEConfig) -> int:
    n = int(math.log2(cfg.temporal_down))
    assert 2**n == cfg.temporal_down and n <= len(cfg.channels), "temporal_down: a power of two <= 2^levels"
    return n


class Encoder(nn.Module):
    def __init__(self, cfg: TAEConfig):
        super().__init__()
        ch, g = cfg.channels, cfg.groups
        self.n_time = _n_time_levels(cfg)
        self.stem = nn.Conv3d(3 * 4, ch[0], (1, 3, 3), padding=(0, 1, 1))
        self.blocks = nn.ModuleList(ResBlock(ch[i], ch[i], g) for i in range(len(ch)))
        # Down i maps level i -> i+1: 2x in space, and 2x in time for the last n_time transitions.
        self.down_s = nn.ModuleList(SpatialConv(ch[i], ch[i + 1], stride=2) for i in range(len(ch) - 1))
        self.down_t = nn.ModuleList(TemporalConv(ch[i + 1], ch[i + 1], stride=2) for i in range(len(ch) - 1))
        self.mid = ResBlock(ch[-1], ch[-1], g)
        self.attn = AttentionBlock(ch[-1], g, cfg.heads)
        self.norm_out = nn.GroupNorm(g, ch[-1])
        self.out = nn.Conv3d(ch[-1], cfg.latent_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(space_to_depth(x))  # (B, C0, T, H/2, W/2)
        n_levels = len(self.blocks)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < n_levels - 1:
                x = self.down_s[i](x)  # (B, C_i+1, T, H/2^(i+2), W/2^(i+2))
                if i >= n_levels - 1 - self.n_time:
                    x = self.down_t[i](x)  # time halves
        x = self.attn(self.mid(x))  # (B, C, T/4, H/8, W/8)
        return self.out(F.silu(self.norm_out(x)))  # (B, Cz, T/4, H/8, W/8)


class Decoder(nn.Module):
    def __init__(self, cfg: TAEConfig):
        super().__init__()
        ch, g = cfg.decoder_channels[::-1], cfg.groups  # deepest level first
        self.n_time = _n_time_levels(cfg)
        self.inp = nn.Conv3d(cfg.latent_channels, ch[0], (1, 3, 3), padding=(0, 1, 1))
        self.mid = ResBlock(ch[0], ch[0], g)
        self.attn = AttentionBlock(ch[0], g, cfg.heads)
        self.blocks = nn.ModuleList(ResBlock(ch[i], ch[i], g) for i in range(len(ch)))
        self.up_s = nn.ModuleList(SpatialConv(ch[i], ch[i + 1]) for i in range(len(ch) - 1))
        self.up_t = nn.ModuleList(TemporalConv(ch[i + 1], ch[i + 1]) for i in range(len(ch) - 1))
        self.norm_out = nn.GroupNorm(g, ch[-1])
        self.out = nn.Conv3d(ch[-1], 3 * 4, (1, 3, 3), padding=(0, 1, 1))

    def features(self, z: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, Cz, t, h, w) -> the last level's features (B, C, 4t, H/2, W/2); `skip` (same
        shape) is added before the last block (the upsampler's decoder feeds its input in there)."""
        x = self.attn(self.mid(self.inp(z)))  # (B, C, t, h, w)
        for i, block in enumerate(self.blocks):
            if skip is not None and i == len(self.blocks) - 1:
                x = x + skip
            x = block(x)
            if i < len(self.blocks) - 1:
                time_up = i < self.n_time
                x = F.interpolate(x, scale_factor=(2 if time_up else 1, 2, 2), mode="nearest")
                x = self.up_s[i](x)  # (B, C_i+1, T', 2h, 2w)
                if time_up:
                    x = self.up_t[i](x)
        return x

    def forward(self, z: torch.Tensor, frames: int) -> torch.Tensor:
        x = self.out(F.silu(self.norm_out(self.features(z))))  # (B, 12, T', H/2, W/2)
        return depth_to_space(x)[:, :, :frames]  # (B, 3, T, H, W): drop the frames the last latent padded


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, 12, T, H/2, W/2), lossless: full-resolution convs would cost 4x more."""
    b, c, t, h, w = x.shape
    return x.view(b, c, t, h // 2, 2, w // 2, 2).permute(0, 1, 4, 6, 2, 3, 5).reshape(b, 4 * c, t, h // 2, w // 2)


def depth_to_space(x: torch.Tensor) -> torch.Tensor:
    """(B, 12, T, H/2, W/2) -> (B, 3, T, H, W), the inverse of space_to_depth."""
    b, c4, t, h, w = x.shape
    c = c4 // 4
    return x.view(b, c, 2, 2, t, h, w).permute(0, 1, 4, 5, 2, 6, 3).reshape(b, c, t, 2 * h, 2 * w)


class TAE(nn.Module):
    def __init__(self, cfg: TAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        cz = cfg.latent_channels
        mean = torch.tensor(cfg.latent_mean) if cfg.latent_mean else torch.zeros(cz)
        std = torch.tensor(cfg.latent_std) if cfg.latent_std else torch.ones(cz)
        self.register_buffer("latent_mean", mean.view(1, cz, 1, 1, 1), persistent=False)
        self.register_buffer("latent_std", std.view(1, cz, 1, 1, 1), persistent=False)
        # Linear latent -> RGB map for free previews (fitted after training, saved with the weights).
        self.register_buffer("preview_weight", torch.zeros(3, cz))
        self.register_buffer("preview_bias", torch.zeros(3))

    # -- raw latents (what training sees) -------------------------------------------------------
    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        _, _, t, h, w = x.shape
        s = self.cfg.spatial_down
        if h % s or w % s:
            raise ValueError(f"height and width must be multiples of {s}, got {h}x{w}")
        return self.encoder(x)

    def decode_raw(self, z: torch.Tensor, frames: int) -> torch.Tensor:
        return self.decoder(z, frames)

    # -- normalised latents with temporal tiling (what the generator sees) ----------------------
    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean) / self.latent_std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std + self.latent_mean

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, T, H, W) in [-1, 1] -> normalised latents (B, Cz, ceil(T/4), H/8, W/8)."""
        k, t = self.cfg.temporal_down, x.shape[2]
        tile, overlap = self.cfg.tile_latents * k, self.cfg.tile_overlap * k
        pieces = []
        for start in tile_starts(t, tile, overlap):
            pieces.append((start // k, self.encode_raw(x[:, :, start : start + tile])))
        return self.normalize(blend_tiles(pieces, math.ceil(t / k)))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """Normalised latents -> pixels (B, 3, frames, H, W) in [-1, 1], tiled along time."""
        k, n = self.cfg.temporal_down, z.shape[2]
        frames = frames or n * k
        z = self.denormalize(z)
        pieces = []
        for start in tile_starts(n, self.cfg.tile_latents, self.cfg.tile_overlap):
            piece = z[:, :, start : start + self.cfg.tile_latents]
            pieces.append((start * k, self.decode_raw(piece, piece.shape[2] * k)))
        return blend_tiles(pieces, n * k)[:, :, :frames].clamp(-1, 1)

    def preview(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, Cz, T, h, w) -> rough RGB (B, 3, T, h, w) in [-1, 1]; no decoder."""
        rgb = torch.einsum("bcthw,kc->bkthw", self.denormalize(z), self.preview_weight)
        return (rgb + self.preview_bias.view(1, 3, 1, 1, 1)).clamp(-1, 1)


def outlier_penalty(z: torch.Tensor, r: float = 3.0) -> torch.Tensor:
    """L_OPL: mean over positions of max(||z_i - mean|| - r ||std||, 0) (docs/system.md section 1).

    Statistics are taken over every position of the batch: a world clip is mostly flat
    background, so per-clip statistics would call every small object an outlier.
    """
    v = z.movedim(1, -1).reshape(-1, z.shape[1])  # (positions, Cz)
    mean, std = v.mean(0), v.std(0)
    return F.relu((v - mean).norm(dim=-1) - r * std.norm()).mean()


def outlier_fraction(z: torch.Tensor, r: float = 3.0) -> float:
    """Fraction of latent vectors farther than r standard deviations (norm) from the mean."""
    v = z.movedim(1, -1).reshape(-1, z.shape[1])
    mean, std = v.mean(0), v.std(0)
    return float(((v - mean).norm(dim=-1) > r * std.norm()).float().mean())
