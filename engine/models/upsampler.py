"""The spatial upsampler's decoder (docs/system.md section 6, at our scale).

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

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..tiling import blend_nd, grid_spans, span_weights, tile_boxes
from ..upscale_data import EnlargedClip
from ..world.data import to_frames
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
    def iter_frames(
        self,
        z: torch.Tensor,
        enlarged: torch.Tensor | EnlargedClip,
        size: tuple[int, int],
        pool: int = 1,
        tile: tuple[int, int, int] = (8, 32, 32),
        overlap=(4, 8, 8),
    ) -> Iterator[np.ndarray]:
        """Raw latents (1, Cz, t, h, w) and the enlarged input as uint8 frames (T, 8h, 8w, 3) ->
        uint8 frames (n, size[0] / pool, size[1] / pool, 3), the clip's frames in order a part at a
        time: the top-left `size` pixels, area-reduced by `pool`. Decoded in overlapping tiles along
        time and space (latent units), averaged where they overlap (MultiDiffusion): blended over
        space a slab of frames at a time and over time as the slabs come, and handed out as uint8
        as soon as no later slab reaches them. Only one slab is held in float and one tile decoded
        at a time, so what this holds is the same at any length (the caller can write each part
        as it comes)."""
        k, s = self.cfg.temporal_down, self.cfg.spatial_down
        frames, length = enlarged.shape[0], z.shape[2] * k  # frames, and the latents' frames
        space = (z.shape[3] * s, z.shape[4] * s)
        slabs = grid_spans((length,), (tile[0] * k,), (overlap[0] * k,))[0]  # along time, in frames
        acc, weight, base = None, None, 0  # the running blend of frames [base, base + len(weight))
        for i, ((t0, n), w) in enumerate(zip(slabs, span_weights(slabs, length), strict=True)):
            zt, xt = z[:, :, t0 // k : (t0 + n) // k], enlarged[t0 : t0 + n]
            boxes = tile_boxes(tuple(zt.shape[3:]), tile[1:], overlap[1:])
            slab = blend_nd(  # (1, 3, n, H, W): this slab's tiles, blended over space
                (((h0 * s, w0 * s), self._tile(zt, xt, h0, w0, tile[1:], n)) for h0, w0 in boxes),
                space,
                grid_spans(space, (tile[1] * s, tile[2] * s), (overlap[1] * s, overlap[2] * s)),
            )
            if acc is None:
                acc, weight = slab.new_zeros(*slab.shape[:2], 0, *space), w.new_zeros(0)
            grow = t0 + n - base - acc.shape[2]
            if grow > 0:
                acc = torch.cat([acc, acc.new_zeros(*acc.shape[:2], grow, *space)], 2)
                weight = torch.cat([weight, weight.new_zeros(grow)])
            at = slice(t0 - base, t0 - base + n)
            acc[:, :, at] += w.to(slab)[:, None, None] * slab
            weight[at] += w
            # Frames before the next slab's first are final: out they go, as uint8.
            final = min(slabs[i + 1][0] if i + 1 < len(slabs) else length, frames) - base
            if final > 0:
                video = (acc[:, :, :final] / weight[:final, None, None].to(acc)).clamp_(-1, 1)
                video = video[:, :, :, : size[0], : size[1]]
                if pool > 1:
                    video = F.avg_pool3d(video, (1, pool, pool))
                yield to_frames(video[0])
                acc, weight, base = acc[:, :, final:].clone(), weight[final:].clone(), base + final

    def _tile(
        self, zt: torch.Tensor, xt: torch.Tensor, h0: int, w0: int, tile: tuple[int, int], n: int
    ) -> torch.Tensor:
        """One tile of a slab decoded (1, 3, n, th, tw): latents from (h0, w0), size `tile` (latent
        units), beside the enlarged input's same region; the clip's last frames replicated out to
        the slab's length `n`, for blending."""
        s = self.cfg.spatial_down
        zt = zt[:, :, :, h0 : h0 + tile[0], w0 : w0 + tile[1]]
        xt = xt[:, h0 * s : (h0 + zt.shape[3]) * s, w0 * s : (w0 + zt.shape[4]) * s]
        y = self(zt, to_pixels(xt, zt.device))  # (1, 3, <= n, th, tw)
        return F.pad(y, (0, 0, 0, 0, 0, n - y.shape[2]), mode="replicate") if y.shape[2] < n else y


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
