"""Autoencoder quality on held-out clips: PSNR for 1-frame and 32-frame clips, the compression
ratio, the latent outlier figure (vectors beyond 3 standard deviations of the mean), and how much
of a true clip the analyser can still read after a round trip (the ceiling on T2V scores); the same
for patterned characters (the ceiling on personalization's identity figure)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..models.tae import TAE, outlier_fraction
from ..world.analyse import analyse, score
from ..world.data import render_pool, to_frames, to_tensor


@torch.no_grad()
def evaluate_tae(tae: TAE, n: int = 32, seed: int = 4242, size: int = 64) -> dict:
    clips, scenes = render_pool(np.random.default_rng(seed), n, frames=32, size=size)
    x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)
    out: dict = {}
    for frames in (1, 32):
        xs = x[:, :, :frames]
        lat, mses = [], []
        for i in range(0, n, 4):
            z = tae.encode(xs[i : i + 4])
            y = tae.decode(z, frames)
            lat.append(z)
            mses.append(((y - xs[i : i + 4]) ** 2).mean((1, 2, 3, 4)))
        mse = torch.cat(mses)
        z = torch.cat(lat)
        out[f"psnr_{frames}f"] = float((10 * torch.log10(4.0 / mse)).mean())
        out[f"compression_{frames}f"] = xs[0].numel() / z[0].numel()
        out[f"outliers_{frames}f"] = outlier_fraction(tae.denormalize(z))
    out["psnr_32f_min"] = float(10 * math.log10(4.0 / float(mse.max())))
    out |= readable_after_roundtrip(tae, clips, scenes)
    return out | characters_after_roundtrip(tae, max(n // 2, 4), seed)


@torch.no_grad()
def roundtrip(tae: TAE, clip: np.ndarray) -> np.ndarray:
    """A (T, H, W, 3) uint8 clip through the autoencoder and back, on the autoencoder's device."""
    x = to_tensor(clip)[None].to(next(tae.parameters()).device)
    return to_frames(tae.decode(tae.encode(x), clip.shape[0])[0])


@torch.no_grad()
def readable_after_roundtrip(tae: TAE, clips: np.ndarray, scenes: list) -> dict:
    """The ceiling the autoencoder puts on every text-to-video score: the analyser's reading of
    true clips after encode + decode (a generator that made perfect latents could do no better)."""
    shape, motion, satisfied = [], [], []
    by_n: dict[int, list[bool]] = {1: [], 2: []}
    for clip, scene in zip(clips, scenes, strict=True):
        sc = score(analyse(roundtrip(tae, clip)), scene)
        shape += sc.shape
        motion += sc.motion
        satisfied.append(sc.satisfied)
        by_n[len(scene.objects)].append(sc.satisfied)
    out = {
        "roundtrip_shape_readable": float(np.mean(shape)),
        "roundtrip_motion_readable": float(np.mean(motion)),
        "roundtrip_satisfied": float(np.mean(satisfied)),
    }
    # Two objects are where the round trip loses most (a small star next to another object).
    return out | {f"roundtrip_satisfied_{k}obj": float(np.mean(v)) for k, v in by_n.items() if v}


@torch.no_grad()
def characters_after_roundtrip(tae: TAE, n: int, seed: int = 4242) -> dict:
    """Clips of held-out characters (docs/world.md) through the autoencoder: PSNR, and how often the
    analyser still reads the character (shape, both colours, pattern kind) and the pattern alone."""
    from ..world.character_analyse import analyse_character, score_character
    from ..world.characters import sample_character, sample_character_scene
    from ..world.render import render

    rng = np.random.default_rng(seed + 1)
    psnrs, identity, pattern = [], [], []
    for _ in range(n):
        ch = sample_character(rng, held_out=True)
        scene = sample_character_scene(rng, ch)
        clip = render(scene, 64, 32)
        back = roundtrip(tae, clip)
        mse = float(((back.astype(np.float64) - clip) ** 2).mean())
        psnrs.append(10 * math.log10(255.0**2 / max(mse, 1e-9)))
        sc = score_character(analyse_character(back), ch, scene.objects[0].motion, scene.background)
        identity.append(sc.identity)
        pattern.append(sc.pattern)
    return {
        "characters_psnr_32f": float(np.mean(psnrs)),
        "characters_roundtrip_identity_readable": float(np.mean(identity)),
        "characters_roundtrip_pattern_readable": float(np.mean(pattern)),
    }
