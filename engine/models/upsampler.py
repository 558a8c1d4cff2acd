"""The spatial upsampler's decoder (SYSTEM.md section 6, at our scale).

Movie Gen's upsampler enlarges the clip in pixel space, encodes it, denoises latents of the larger
clip with the flow-matching transformer (the same `Generator` class, the enlarged clip's latents on
extra channels) and decodes them. Our TAE was trained at 64 px and decodes 256 px world clips at
only 28-30 dB, below bicubic from 64 px (31-33 dB), so decoding through it would cap the result
below the baseline. This decoder therefore also sees the enlarged input (a skip path) and returns
that input plus a correction: it starts as bicubic exactly (its output convolution is zero) and
only has to learn the detail the latents carry. On footage the models know little about, leaning
on the input keeps it near bicubic instead of far below it.

Its trunk is the TAE decoder's (same config, initialised from its weights); the encoder stays the
TAE's, so the latent space is the one the generators know.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..tiling import blend_nd, grid_spans, tile_boxes
from .tae import TAE, Decoder, TAEConfig, depth_to_space, space_to_depth


class SkipDecoder(nn.Module):
    def __init__(self, cfg: TAEConfig):
        super().__init__()
        self.cfg = cfg
        self.decoder = Decoder(cfg)
        c = cfg.decoder_channels[0]  # the last (half-resolution) level's width
        # The enlarged input, space-to-depth like the TAE's own stem, joins the trunk before its
        # last block; the zero-initialised last conv means it joins silently.
        self.skip_in = nn.Sequential(
            nn.Conv3d(12, c, (1, 3, 3), padding=(0, 1, 1)), nn.SiLU(), nn.Conv3d(c, c, (1, 3, 3), padding=(0, 1, 1))
        )
        self.residual = nn.Conv3d(c, 12, (1, 3, 3), padding=(0, 1, 1))
        for conv in (self.skip_in[2], self.residual):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, z: torch.Tensor, x_up: torch.Tensor) -> torch.Tensor:
        """Raw latents z (B, Cz, t, h, w) and the enlarged input x_up (B, 3, T, 8h, 8w) in [-1, 1]
        -> the clip (B, 3, T, 8h, 8w), unclamped."""
        frames, padded = x_up.shape[2], z.shape[2] * self.cfg.temporal_down
        x_pad = F.pad(x_up, (0, 0, 0, 0, 0, padded - frames), mode="replicate") if padded > frames else x_up
        s = space_to_depth(x_pad)  # (B, 12, T', H/2, W/2)
        feat = self.decoder.features(z, self.skip_in(s))  # (B, C, T', H/2, W/2)
        r = self.residual(F.silu(self.decoder.norm_out(feat)))  # (B, 12, T', H/2, W/2)
        return x_up + depth_to_space(r)[:, :, :frames]  # (B, 3, T, H, W)

    @torch.no_grad()
    def decode(
        self, z: torch.Tensor, enlarged: torch.Tensor, tile: tuple[int, int, int] = (8, 32, 32), overlap=(4, 8, 8)
    ) -> torch.Tensor:
        """Raw latents (1, Cz, t, h, w) and the enlarged input as uint8 frames (T, 8h, 8w, 3) ->
        pixels (1, 3, T, 8h, 8w) in [-1, 1], in overlapping tiles along time and space (latent
        units) averaged where they overlap: only one tile is ever held in float."""
        k, s = self.cfg.temporal_down, self.cfg.spatial_down
        total = tuple(z.shape[2:])
        frames = enlarged.shape[0]

        def pieces():
            for t0, h0, w0 in tile_boxes(total, tile, overlap):
                zt = z[:, :, t0 : t0 + tile[0], h0 : h0 + tile[1], w0 : w0 + tile[2]]
                n = zt.shape[2] * k
                xt = enlarged[t0 * k : t0 * k + n, h0 * s : (h0 + zt.shape[3]) * s, w0 * s : (w0 + zt.shape[4]) * s]
                out = self(zt, to_pixels(xt, z.device))  # (1, 3, <= n, h*s, w*s)
                if out.shape[2] < n:  # the clip's last frames: the tile's length, for blending
                    out = F.pad(out, (0, 0, 0, 0, 0, n - out.shape[2]), mode="replicate")
                yield (t0 * k, h0 * s, w0 * s), out

        # The same grid in pixels, laid out up front so tiles stream into the blend one at a time.
        px = lambda v: (v[0] * k, v[1] * s, v[2] * s)  # noqa: E731
        spans = grid_spans(px(total), px(tile), px(overlap))
        return blend_nd(pieces(), px(total), spans)[:, :, :frames].clamp_(-1, 1)


def to_pixels(frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> (1, 3, T, H, W) in [-1, 1] on `device`."""
    return frames.to(device).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


@torch.no_grad()
def encode_tiled(tae: TAE, frames: torch.Tensor, tile: int = 256, overlap: int = 64) -> torch.Tensor:
    """uint8 frames (T, H, W, 3), sides multiples of the TAE's 8 -> normalised latents (1, Cz, t,
    H/8, W/8): overlapping tiles of `tile` pixels in space and of the TAE's own tile length in time,
    averaged where they overlap, so only one tile is ever held in float."""
    k, s = tae.cfg.temporal_down, tae.cfg.spatial_down
    lat = (-(-frames.shape[0] // k), frames.shape[1] // s, frames.shape[2] // s)
    size = (tae.cfg.tile_latents, tile // s, tile // s)
    over = (tae.cfg.tile_overlap, overlap // s, overlap // s)
    device = tae.latent_mean.device
    pieces = []
    for t0, h0, w0 in tile_boxes(lat, size, over):
        crop = frames[t0 * k : (t0 + size[0]) * k, h0 * s : (h0 + size[1]) * s, w0 * s : (w0 + size[2]) * s]
        pieces.append(((t0, h0, w0), tae.normalize(tae.encode_raw(to_pixels(crop, device)))))  # (1, Cz, <=8, ...)
    return blend_nd(pieces, lat)
