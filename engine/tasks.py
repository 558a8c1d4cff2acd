"""Each task prepares its conditioning; all of them share one denoising loop (flux-style).

prepare_<task>() turns a request into a `Prepared`: the latent shape, the model's keyword
arguments for each guidance term, the schedule, and where sampling starts. `denoise()` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .models.generator import Generator
from .models.tae import TAE
from .requests import EditRequest, PersonalizeRequest, T2VRequest, UpscaleRequest
from .sampling import SCHEDULES, euler, guided_velocity, interpolate, sdedit_times, two_scale_velocity, windowed

EncodePrompt = Callable[[str], dict[str, torch.Tensor]]


@dataclass
class Prepared:
    shape: tuple[int, ...]  # (1, Cz, t, h, w)
    cond: dict[str, torch.Tensor]  # the full condition (prompt; or source + instruction + task)
    uncond: dict[str, torch.Tensor] | None  # nothing (negative or empty prompt; blank source); None: no guidance
    guidance: float
    times: torch.Tensor
    seed: int
    frames: int
    # Two-scale guidance (edits): the source alone, and how strongly to keep it.
    source: dict[str, torch.Tensor] | None = None
    source_guidance: float = 0.0
    start: torch.Tensor | None = None  # SDEdit: clean latents that are noised to times[0]
    # MultiDiffusion windows in latent positions: an int is along time only, (t, h, w) tiles space
    # too (None: the whole clip at once).
    window: int | tuple[int, int, int] | None = None
    overlap: int | tuple[int, int, int] = 0


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


def prepare_edit(
    req: EditRequest,
    source: torch.Tensor,
    instruction: str,
    task: int,
    encode: EncodePrompt,
    frames: int,
    window: int,
) -> Prepared:
    """Movie Gen Edit: the source's latents (1, Cz, t, h, w) on extra channels, the instruction as
    text and its task embedding; v(none) sees a blank source, v(source) no instruction."""
    none_task = torch.zeros(1, dtype=torch.long, device=source.device)  # "generate"
    return Prepared(
        shape=tuple(source.shape),
        cond=encode(instruction) | {"cond": source, "task": torch.full_like(none_task, task)},
        source=encode("") | {"cond": source, "task": none_task},
        uncond=encode("") | {"cond": torch.zeros_like(source), "task": none_task},
        guidance=req.guidance,
        source_guidance=req.source_guidance,
        times=SCHEDULES[req.schedule](req.steps),
        seed=req.seed,
        frames=frames,
        window=window,
        overlap=window // 2,
    )


def prepare_sdedit(
    req: EditRequest, source: torch.Tensor, prompt: str, encode: EncodePrompt, frames: int, window: int
) -> Prepared:
    """SDEdit through the T2V model: the source noised to time 1 - strength, then denoised with the
    prompt that describes the result."""
    return Prepared(
        shape=tuple(source.shape),
        cond=encode(prompt),
        uncond=encode(""),
        guidance=req.guidance,
        times=sdedit_times(SCHEDULES[req.schedule](req.steps), req.strength),
        seed=req.seed,
        frames=frames,
        start=source,
        window=window,
        overlap=window // 2,
    )


def prepare_upscale(
    req: UpscaleRequest,
    enlarged: torch.Tensor,
    encode: EncodePrompt,
    frames: int,
    window: tuple[int, int, int],
    overlap: tuple[int, int, int],
) -> Prepared:
    """Movie Gen's spatial upsampler: the enlarged input's latents (1, Cz, t, h, w) on extra
    channels, no prompt and no guidance (video to video), over overlapping windows in time and
    tiles in space so any length and size fits in memory."""
    return Prepared(
        shape=tuple(enlarged.shape),
        cond=encode("") | {"cond": enlarged},
        uncond=None,
        guidance=1.0,
        times=SCHEDULES[req.schedule](req.steps),
        seed=req.seed,
        frames=frames,
        window=window,
        overlap=overlap,
    )


def prepare_personalize(
    req: PersonalizeRequest,
    tae: TAE,
    encode: EncodePrompt,
    with_reference: Callable[[dict[str, torch.Tensor], torch.Tensor | None], dict[str, torch.Tensor]],
    reference: torch.Tensor,
) -> Prepared:
    """Movie Gen PT2V: the reference's tokens (reference (1, 3, S, S) in [-1, 1]) join the prompt's
    in the context. Two-scale guidance as in editing, the reference in the source's place:
    v = v(none) + s_R (v(reference) - v(none)) + s_T (v(reference, prompt) - v(reference))."""
    return Prepared(
        shape=(1, *tae.cfg.latent_shape(req.frames, req.size, req.size)),
        cond=with_reference(encode(req.prompt), reference),
        source=with_reference(encode(""), reference),
        uncond=encode(""),
        guidance=req.guidance,
        source_guidance=req.reference_guidance,
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
    net = windowed(model, prep.window, prep.overlap) if prep.window else model
    if prep.source is not None:
        velocity = two_scale_velocity(net, prep.cond, prep.source, prep.uncond, prep.guidance, prep.source_guidance)
    else:
        velocity = guided_velocity(net, prep.cond, prep.uncond, prep.guidance)

    def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            return velocity(x, t).float()

    def on_step(step: int, total: int, x: torch.Tensor, x1_hat: torch.Tensor) -> None:
        if callback is not None:
            callback(step, total, x1_hat)

    x = initial_noise(prep.shape, prep.seed, device)
    if prep.start is not None:  # SDEdit: start part-way along the path from noise to the source
        x = interpolate(x, prep.start.to(device), prep.times[:1].to(device))
    return euler(run, x, prep.times, on_step)
