"""Movie Gen's buckets (docs/system.md): clips are trained at their own aspect ratio and length,
each batch drawn from one bucket, instead of every clip cropped to a square of one length (a
portrait phone clip cropped square loses most of its picture).

A bucket is (height, width, frames). Sizes come from the configured aspects (width / height) at
an area of about size x size; frames from the configured windows, the longest that fits. Images
are a bucket of their own with 1 frame (a still is a one-frame video to the TAE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketConfig:
    size: int = 64  # a square bucket's side; other aspects keep about its area
    aspects: tuple[float, ...] = (1.0, 4 / 3, 3 / 4, 16 / 9, 9 / 16)  # width / height
    frames: tuple[int, ...] = (32, 16, 8)  # window lengths in frames at `fps`
    fps: float = 8.0  # every clip is resampled to this rate first
    multiple: int = 16  # both sides a multiple of this (the TAE's spatial factor times the patch)

    def __post_init__(self) -> None:
        if self.multiple < 1 or self.size < self.multiple:
            raise ValueError(f"size must be >= multiple >= 1, got size {self.size} and multiple {self.multiple}")
        if not self.aspects or any(not a > 0 for a in self.aspects):
            raise ValueError(f"aspects must be positive width / height ratios, got {self.aspects}")
        if not self.frames or any(f < 1 for f in self.frames):
            raise ValueError(f"frames must be window lengths >= 1, got {self.frames}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")


def _round(x: float, m: int) -> int:
    return max(m, m * round(x / m))


def bucket_sizes(cfg: BucketConfig) -> list[tuple[int, int]]:
    """(height, width) for each of cfg.aspects, in their order: area about size * size, both
    sides multiples of cfg.multiple.

    The short side is rounded first and the long side from it, which keeps the ratio closer than
    rounding both sides alone; a portrait aspect is its landscape one transposed, so 3/4 is 4/3
    turned exactly (48x64 and 64x48 at size 64)."""
    out = []
    for a in cfg.aspects:
        wide = max(a, 1 / a)  # >= 1
        short = _round(cfg.size / math.sqrt(wide), cfg.multiple)
        long = _round(short * wide, cfg.multiple)
        out.append((short, long) if a >= 1 else (long, short))
    return out


def pick_size(height: int, width: int, cfg: BucketConfig) -> tuple[int, int]:
    """The bucket (height, width) whose aspect is nearest the clip's (upright) aspect, by log
    ratio, so 2:1 is as far from 1:1 as 1:2 is; a tie goes to the aspect listed first."""
    if height < 1 or width < 1:
        raise ValueError(f"a clip's sides must be >= 1, got {height}x{width}")
    r = math.log(width / height)
    best = min(range(len(cfg.aspects)), key=lambda i: abs(math.log(cfg.aspects[i]) - r))
    return bucket_sizes(cfg)[best]


def pick_frames(n_available: int, cfg: BucketConfig) -> int | None:
    """The longest configured window that fits in `n_available` frames (at cfg.fps), or None
    when the clip is shorter than the shortest window (it is reported as too short, not padded)."""
    fits = [f for f in cfg.frames if f <= n_available]
    return max(fits) if fits else None
