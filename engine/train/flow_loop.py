"""The training loop of every stage that trains a generator by flow matching on batches drawn per
step (T2V and its refinement, edit, PT2V, the upsampler): resumable at any checkpoint, EMA weights,
learning rates per parameter group, bf16 snapshots to evaluate while it runs. A stage starts with
common.begin (its model, optimiser and saved state), encodes its data once (encode_scenes, cached
in the run folder) and gives a function that makes one step's batch; the loop is the same for every
one of them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import save_component
from ..models.generator import Generator, GeneratorConfig
from ..models.tae import TAE
from ..sampling import interpolate, sample_times, target_velocity
from ..world.data import render_many
from ..world.scene import Scene
from .common import Runtime, Trainer, cached

# One step's batch: (what its loss is logged as, the clean latents x1 (B, C, T, H, W), and the
# model's velocity for (x_t, t) given the batch's conditioning).
StepBatch = tuple[str, torch.Tensor, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


@torch.no_grad()
def encode_dataset(tae: TAE, scenes: list[Scene], frames: int, size: int, rt: Runtime, batch: int = 16) -> torch.Tensor:
    """Render and encode scenes into normalised latents (N, Cz, t, h, w), stored as bf16 on the
    training device (3000 clips are 50 MB; the GPU holds 30000 without noticing)."""
    out = []
    chunk = max(batch, 64 * rt.workers)  # render many at once when processes help, encode in batches
    for c in range(0, len(scenes), chunk):
        pixels = render_many(scenes[c : c + chunk], size, frames, rt.workers)
        for i in range(0, len(pixels), batch):
            x = torch.from_numpy(pixels[i : i + batch]).to(rt.device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
            with rt.autocast():
                z = tae.encode(x)
            out.append(z.to(torch.bfloat16))
    return torch.cat(out)


def data_key(fields: object, tae: TAE) -> str:
    """A cache file's name for data made from `fields` (JSON) through exactly these TAE weights:
    their bytes, since a float sum of them changes in its last digits with the thread count."""
    h = hashlib.sha256(json.dumps(fields).encode())
    for v in tae.state_dict().values():
        h.update(v.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:12]


def encode_scenes(
    tae: TAE, sets: dict[str, list[Scene]], frames: int, size: int, rt: Runtime, cache: Path | None
) -> dict[str, torch.Tensor]:
    """Each named list of scenes rendered and encoded (encode_dataset) once: a resumed run, or the
    next stage with the same data, reads the cache file instead. Latents on the device."""
    batch = 64 if frames == 1 else 16  # single frames are small: encode more at once

    def make() -> dict[str, torch.Tensor]:
        return {k: encode_dataset(tae, scenes, frames, size, rt, batch) for k, scenes in sets.items()}

    got = cached(cache, {k: len(v) for k, v in sets.items()}, make, rt)
    return {k: v.to(rt.device) for k, v in got.items()}


def train_flow(
    tr: Trainer[Generator], gcfg: GeneratorConfig, batch: Callable[[int, np.random.Generator], StepBatch]
) -> Generator:
    """Train tr.model from tr.start to its loop's end; returns the EMA weights. batch(step, rng)
    draws the step's data from `rng` (the same on every resume)."""
    loop, rt = tr.loop, tr.rt
    for step in range(tr.start, loop.steps):
        rng = tr.begin_step(step)
        tag, x1, velocity = batch(step, rng)
        x0 = torch.randn(x1.shape, generator=tr.gen).to(rt.device)
        t = sample_times(x1.shape[0], tr.gen, rt.device)
        xt = interpolate(x0, x1, t)
        with rt.autocast():
            v = velocity(xt, t)
        loss = F.mse_loss(v.float(), target_velocity(x0, x1))
        tr.update(step, loss)
        tr.log.log(step, **{tag: loss})
        if tr.due(step):
            tr.save(step)
            # bf16 snapshots to evaluate while training goes on (the shipped models are bf16 too).
            meta = {loop.steps_key: step + 1}
            save_component(tr.run / f"{loop.name}-step{step + 1}", "generator", gcfg, tr.ema, meta, torch.bfloat16)
        rt.barrier()
    rt.check_in_sync(tr.ema, loop.name)
    return tr.ema


def grown_groups(model: torch.nn.Module, new_parts: tuple[str, ...], new_lr_mult: float) -> list[dict]:
    """The trainable parameters of a generator grown for a task: what it had (at the base rate)
    and what was added (`new_parts` prefixes, at `new_lr_mult` times it)."""
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for k, p in named if not k.startswith(new_parts)], "lr_mult": 1.0},
        {"params": [p for k, p in named if k.startswith(new_parts)], "lr_mult": new_lr_mult},
    ]
