"""Batches of world clips for training and evaluation: pixels in [-1, 1] as (B, 3, T, H, W)."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import torch

from .render import render
from .scene import Scene, sample_scene


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def to_frames(x: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8. One float copy, then in place: a long
    upscaled clip is gigabytes of floats, and each temporary would be as large."""
    x = x.float().clamp(-1, 1)
    x = x.add_(1).mul_(127.5).round_().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def _render_args(args: tuple[Scene, int, int]) -> np.ndarray:
    return render(*args)


def render_many(scenes: list[Scene], size: int, frames: int, workers: int = 1) -> np.ndarray:
    """Render scenes into (N, T, H, W, 3) uint8. Rendering is a pure function of the scene, so
    spreading it over processes (a GPU machine's idle cores) gives the same pixels."""
    if workers <= 1 or len(scenes) < 64:
        return np.stack([render(s, size, frames) for s in scenes])
    with mp.get_context("fork").Pool(workers) as pool:
        return np.stack(pool.map(_render_args, [(s, size, frames) for s in scenes], chunksize=32))


def render_pool(
    rng: np.random.Generator, n: int, frames: int = 32, size: int = 64, workers: int = 1
) -> tuple[np.ndarray, list[Scene]]:
    """n random clips (held-out combinations included: the autoencoder must code everything)."""
    scenes = [sample_scene(rng, held_out=None) for _ in range(n)]
    return render_many(scenes, size, frames, workers), scenes


def sample_windows(rng: np.random.Generator, pool: np.ndarray, batch: int, frames: int) -> torch.Tensor:
    """Random temporal windows (frames=1 gives images) with random flips, as a pixel batch."""
    idx = rng.integers(len(pool), size=batch)
    starts = rng.integers(pool.shape[1] - frames + 1, size=batch)
    clips = np.stack([pool[i, s : s + frames] for i, s in zip(idx, starts, strict=True)])
    flip = rng.random(batch) < 0.5
    clips[flip] = clips[flip][:, :, :, ::-1]
    return torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)
