"""Each task prepares its conditioning; all of them share one denoising loop (flux-style).

prepare_<task>() turns a request into a `Prepared`: the latent shape, the model's keyword
arguments for the prompt and for the negative prompt, and the schedule. `denoise()` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .models.generator import Generator
from .models.tae import TAE
from .requests import T2VRequest
from .sampling import SCHEDULES, euler, guided_velocity

EncodePrompt = Callable[[str], dict[str, torch.Tensor]]


@dataclass
class Prepared:
    shape: tuple[int, ...]  # (1, Cz, t, h, w)
    cond: dict[str, torch.Tensor]
    uncond: dict[str, torch.Tensor]
    guidance: float
    times: torch.Tensor
    seed: int
    frames: int


def prepare_t2v(req: T2VRequest, tae: TAE, encode_prompt: EncodePrompt) -> Prepared:
    shape = (1, *tae.cfg.latent_shape(req.frames, req.size, req.size))
    return Prepared(
        shape=shape,
        cond=encode_prompt(req.prompt),
        uncond=encode_prompt(req.negative_prompt),  # empty = the unconditional model
        guidance=req.guidance,
        times=SCHEDULES[req.schedule](req.steps),
        seed=req.seed,
        frames=req.frames,
    )


def initial_noise(shape: tuple[int, ...], seed: int, device: torch.device) -> torch.Tensor:
    """Noise from a CPU generator, so a seed gives the same clip on every device."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)


def denoise(
    model: Generator,
    prep: Prepared,
    device: torch.device,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    autocast: bool = True,
) -> torch.Tensor:
    """Euler with guidance from noise to latents (1, Cz, t, h, w); callback(step, total, x1_hat)."""
    velocity = guided_velocity(model, prep.cond, prep.uncond, prep.guidance)

    def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            return velocity(x, t).float()

    def on_step(step: int, total: int, x: torch.Tensor, x1_hat: torch.Tensor) -> None:
        if callback is not None:
            callback(step, total, x1_hat)

    x = initial_noise(prep.shape, prep.seed, device)
    return euler(run, x, prep.times, on_step)
