"""The TAE learns patterned characters (issue 16): the shipped TAE returns stripes, checks and dots
as a blur of their two colours, and no generator can draw what its decoder cannot.

It goes on from the shipped weights (encoder and decoder: the latents must carry the pattern) on a
pool that is half character clips (training colour pairs only) and half ordinary world clips. So
that the generators already trained on its latent space keep working, the new encoder's latents of
ordinary clips are held near the old encoder's (an anchor term), and the latent statistics and the
preview map are kept: only what ordinary clips never used (pattern detail) is free to move.

Resumable like the other stages: state every `checkpoint_every` steps, per-step randomness from
(seed, step).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import save_component
from ..models.tae import TAE
from ..world.characters import sample_character, sample_character_scene
from ..world.data import render_many
from ..world.scene import sample_scene
from .common import LoopConfig, Runtime, begin
from .tae_stage import edge_loss, evaluate_psnr, psnr


@dataclass(frozen=True)
class CharacterTAETrainConfig:
    steps: int = 1200
    pool: int = 1600  # clips of 32 frames; half of them characters
    character_share: float = 0.5
    batch: int = 8
    frames: int = 8
    image_every: int = 4  # every n-th step single frames (one latent space for images and video)
    image_batch: int = 16
    lr: float = 2e-4
    edge_weight: float = 0.5
    # MSE between the new and the old encoder's raw latents, on the ordinary clips of each batch.
    anchor_weight: float = 1.0
    checkpoint_every: int = 100
    seed: int = 11


def build_pool(
    tcfg: CharacterTAETrainConfig, rng: np.random.Generator, workers: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 64, 64, 3) clips and whether each is a character clip."""
    is_char = rng.random(tcfg.pool) < tcfg.character_share
    scenes = [
        sample_character_scene(rng, sample_character(rng, held_out=False)) if c else sample_scene(rng, held_out=None)
        for c in is_char
    ]
    return render_many(scenes, 64, 32, workers), is_char


def windows(rng: np.random.Generator, pool: np.ndarray, idx: np.ndarray, frames: int) -> torch.Tensor:
    """Random temporal windows of the clips `idx`, randomly flipped, as pixels (B, 3, T, H, W)."""
    starts = rng.integers(pool.shape[1] - frames + 1, size=len(idx))
    clips = np.stack([pool[i, s : s + frames] for i, s in zip(idx, starts, strict=True)])
    flip = rng.random(len(idx)) < 0.5
    clips[flip] = clips[flip][:, :, :, ::-1]
    return torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def train_character_tae(tcfg: CharacterTAETrainConfig, tae: TAE, out: Path, rt: Runtime, run: Path) -> TAE:
    """Go on training `tae` with characters; saves to `out` (config unchanged) and returns it."""
    tae = tae.to(rt.device)
    old = copy.deepcopy(tae).eval().requires_grad_(False)  # the anchor: the shipped encoder
    # No EMA (decay 0): the weights themselves are the result; the saved state's EMA slot holds
    # a copy of them, for the one resume format.
    loop = LoopConfig("chartae", tcfg.steps, tcfg.lr, 20, 0.0, tcfg.seed, tcfg.checkpoint_every)
    tr = begin(loop, rt, run, lambda: tae.train().requires_grad_(True))
    model = tr.model
    pool, is_char = build_pool(tcfg, np.random.default_rng([tcfg.seed, rt.rank]), rt.workers)
    held_rng = np.random.default_rng(12345)
    held = render_many([sample_character_scene(held_rng, sample_character(held_rng, True)) for _ in range(8)], 64, 32)
    for step in range(tr.start, tcfg.steps):
        rng = tr.begin_step(step)
        image = step % tcfg.image_every == tcfg.image_every - 1
        n = tcfg.image_batch if image else tcfg.batch
        idx = rng.integers(len(pool), size=n)
        x = windows(rng, pool, idx, 1 if image else tcfg.frames).to(rt.device)  # (B, 3, T, H, W)
        plain = torch.from_numpy(~is_char[idx])  # which samples are ordinary clips (anchored)
        with rt.autocast():
            z = model.encode_raw(x)
            y = model.decode_raw(z, x.shape[2])
        y, z = y.float(), z.float()
        rec = F.l1_loss(y, x) + F.mse_loss(y, x)
        loss = rec + tcfg.edge_weight * edge_loss(y, x)
        anchor = torch.zeros((), device=rt.device)
        if plain.any() and tcfg.anchor_weight:
            with torch.no_grad(), rt.autocast():
                z_old = old.encode_raw(x[plain.to(rt.device)]).float()
            anchor = F.mse_loss(z[plain.to(rt.device)], z_old)
            loss = loss + tcfg.anchor_weight * anchor
        tr.update(step, loss)
        tr.log.log(step, rec=rec.item(), psnr=psnr(y.detach(), x), anchor=anchor.item())
        if tr.due(step):
            tr.ema.load_state_dict(model.state_dict())
            tr.save(step)
            model.eval()
            print(f"[chartae] held-out character PSNR {evaluate_psnr(model, held, rt.device):.2f} dB", flush=True)
            save_component(run / f"tae-step{step + 1}", "tae", model.cfg, model, {"character_steps": step + 1})
            model.train()
        rt.barrier()
    model.eval().requires_grad_(False)
    rt.check_in_sync(model, "chartae")
    if rt.main:
        save_component(out, "tae", model.cfg, model, {"character_steps": tcfg.steps})
    rt.barrier()
    return model
