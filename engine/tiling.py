"""Tiles along time: where they start, and how overlapping tiles are blended back into one.

The TAE encodes and decodes long clips in tiles (SYSTEM.md section 1), and the denoiser runs long
clips in windows (MultiDiffusion, SYSTEM.md section 6); both blend overlaps the same linear way.
"""

from __future__ import annotations

import torch


def blend_weights(n: int) -> torch.Tensor:
    """Weights w_j = j / N of the incoming tile over N overlapping frames (SYSTEM.md section 1)."""
    return torch.arange(1, n + 1, dtype=torch.float32) / (n + 1)


def tile_starts(total: int, tile: int, overlap: int) -> list[int]:
    if total <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, total - tile + 1, stride))
    if starts[-1] + tile < total:
        starts.append(total - tile)
    return starts


def blend_tiles(pieces: list[tuple[int, torch.Tensor]], total: int) -> torch.Tensor:
    """Join tiles (start, tensor with time at dim 2), blending each overlap linearly."""
    first = pieces[0][1]
    out = first.new_zeros(*first.shape[:2], total, *first.shape[3:])
    end = 0
    for start, piece in pieces:
        n = piece.shape[2]
        overlap = max(end - start, 0)
        if overlap:
            w = blend_weights(overlap).to(piece).view(1, 1, -1, 1, 1)
            out[:, :, start:end] = w * piece[:, :, :overlap] + (1 - w) * out[:, :, start:end]
        out[:, :, start + overlap : start + n] = piece[:, :, overlap:]
        end = start + n
    return out
