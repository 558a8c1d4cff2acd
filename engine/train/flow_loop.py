"""The training loop of the stages that train a generator by flow matching on batches drawn per
step (edit, PT2V, the upsampler): resumable at any checkpoint, EMA weights, learning rates per
parameter group, bf16 snapshots to evaluate while it runs. A stage gives its model, its parameter
groups and a function that makes one step's batch; the loop is the same for every one of them.

(The T2V stage keeps its own loop: it draws from one sequential random stream, which the shipped
T2V model was trained with, and is not resumable.)"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import save_component
from ..models.generator import Generator, GeneratorConfig
from ..sampling import interpolate, sample_times, target_velocity
from .common import (
    Logger,
    Runtime,
    cosine_lr,
    optimizer_step,
    resume,
    save_state,
    set_lr,
    step_rng,
    update_ema,
)

# One step's batch: (what its loss is logged as, the clean latents x1 (B, C, T, H, W), and the
# model's velocity for (x_t, t) given the batch's conditioning).
StepBatch = tuple[str, torch.Tensor, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class FlowLoop:
    name: str  # in logs, and snapshots are run/<name>-step<N>
    steps: int
    lr: float
    warmup: int
    ema: float
    seed: int
    checkpoint_every: int
    resume_dir: str = "resume"  # inside the run folder
    steps_key: str = "steps"  # the step count's key in a snapshot's metadata
    # Where a run was first planned to end before it was resumed with more steps: up to there the
    # learning rate followed a cosine over `planned` steps, after it one over `steps` (see
    # stretched_lr). 0: one cosine over `steps`.
    planned: int = 0


def stretched_lr(step: int, loop: FlowLoop) -> float:
    """The learning rate at `step` of a run planned for `loop.planned` steps and then stretched to
    `loop.steps` (resumed at `planned` with the longer cosine, which restarts at its midpoint or
    so): one command reproduces the weights such a run shipped."""
    total = loop.planned if step < loop.planned < loop.steps else loop.steps
    return cosine_lr(step, total, loop.lr, warmup=loop.warmup)


def train_flow(
    model: Generator,
    gcfg: GeneratorConfig,
    groups: list[dict],
    loop: FlowLoop,
    rt: Runtime,
    run: Path,
    batch: Callable[[int, np.random.Generator], StepBatch],
) -> Generator:
    """Train `model` (its trainable parameters in `groups`, each {"params", "lr_mult"?}) for
    `loop.steps`, resuming from run/<resume_dir> if a checkpoint is there; returns the EMA weights.
    batch(step, rng) draws the step's data from `rng` (the same on every resume)."""
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]  # in the model's order, for clipping
    opt = torch.optim.AdamW(groups, lr=loop.lr, weight_decay=0.0, betas=(0.9, 0.99))
    start = resume(run / loop.resume_dir, model, ema, opt, rt, loop.name)
    gen = torch.Generator()
    log = Logger(rt, loop.name, loop.steps, every=25)
    for step in range(start, loop.steps):
        rng = step_rng(loop.seed, step, rt.rank, gen)
        set_lr(opt, stretched_lr(step, loop))
        tag, x1, velocity = batch(step, rng)
        x0 = torch.randn(x1.shape, generator=gen).to(rt.device)
        t = sample_times(x1.shape[0], gen, rt.device)
        xt = interpolate(x0, x1, t)
        with rt.autocast():
            v = velocity(xt, t)
        loss = F.mse_loss(v.float(), target_velocity(x0, x1))
        optimizer_step(opt, params, loss, rt)
        update_ema(ema, model, step, loop.ema)
        log.log(step, **{tag: loss})
        if rt.main and ((step + 1) % loop.checkpoint_every == 0 or step + 1 == loop.steps):
            save_state(run / loop.resume_dir, step + 1, model, ema, opt)
            # bf16 snapshots to evaluate while training goes on (the shipped models are bf16 too).
            meta = {loop.steps_key: step + 1}
            save_component(run / f"{loop.name}-step{step + 1}", "generator", gcfg, ema, meta, torch.bfloat16)
        rt.barrier()
    rt.check_in_sync(ema, loop.name)
    return ema


def grown_groups(model: torch.nn.Module, new_parts: tuple[str, ...], new_lr_mult: float) -> list[dict]:
    """The trainable parameters of a generator grown for a task: what it had (at the base rate)
    and what was added (`new_parts` prefixes, at `new_lr_mult` times it)."""
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for k, p in named if not k.startswith(new_parts)], "lr_mult": 1.0},
        {"params": [p for k, p in named if k.startswith(new_parts)], "lr_mult": new_lr_mult},
    ]
