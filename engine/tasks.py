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
# Given the candidates' latents x_t (N, Cz, t, h, w) at flow time t, the index of the one to finish.
Choose = Callable[[torch.Tensor, float], int]


@dataclass
class Prepared:
    shape: tuple[int, ...]  # (1, Cz, t, h, w)
    cond: dict[str, torch.Tensor]
    uncond: dict[str, torch.Tensor]
    guidance: float
    times: torch.Tensor
    seed: int
    frames: int
    candidates: int = 1  # samples drawn side by side; one is chosen and finished
    choose_at: int = 0  # the step after which the choice is made (0: at the end)


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
        candidates=req.candidates,
    )


def candidate_seeds(seed: int, n: int) -> list[int]:
    """The first candidate is the request's own seed (one candidate = a plain request); the
    others are spread over the seed range by a fixed odd multiplier, so they never collide with
    a neighbouring request's seed + 1."""
    return [seed] + [(seed + k * 0x9E3779B97F4A7C15) % 2**63 for k in range(1, n)]


def initial_noise(shape: tuple[int, ...], seeds: int | list[int], device: torch.device) -> torch.Tensor:
    """Noise from a CPU generator, so a seed gives the same clip on every device; one row per seed."""
    seeds = [seeds] if isinstance(seeds, int) else seeds
    rows = [torch.randn((1, *shape[1:]), generator=torch.Generator().manual_seed(s)) for s in seeds]
    return torch.cat(rows).to(device)


def denoise(
    model: Generator,
    prep: Prepared,
    device: torch.device,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    autocast: bool = True,
    choose: Choose | None = None,
) -> torch.Tensor:
    """Euler with guidance from noise to latents (1, Cz, t, h, w); callback(step, total, x1_hat),
    x1_hat holding one row per candidate still running.

    With several candidates (and a `choose`), all of them run side by side in one batch up to
    step `choose_at`; `choose` then picks one from their x_t and only that one is finished."""
    velocity = guided_velocity(model, prep.cond, prep.uncond, prep.guidance)

    def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            return velocity(x, t).float()

    def on_step(step: int, total: int, x: torch.Tensor, x1_hat: torch.Tensor) -> None:
        if callback is not None:
            callback(step, total, x1_hat)

    n = prep.candidates if choose is not None else 1
    x = initial_noise(prep.shape, candidate_seeds(prep.seed, n), device)
    if n == 1:
        return euler(run, x, prep.times, on_step)
    total = len(prep.times) - 1
    k = prep.choose_at if 0 < prep.choose_at < total else total
    x = euler(run, x, prep.times[: k + 1], lambda s, _, x, x1_hat: on_step(s, total, x, x1_hat))
    best = choose(x, float(prep.times[k]))
    x = x[best : best + 1]  # (1, Cz, t, h, w)
    if k == total:
        return x
    return euler(run, x, prep.times[k:], lambda s, _, x, x1_hat: on_step(k + s, total, x, x1_hat))
