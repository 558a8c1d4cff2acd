"""The one denoising loop every task shares (flux-style): a task's prepare() turns its request
into a `Prepared` (the latent shape, the model's keyword arguments for each guidance term, the
schedule, where sampling starts), and `denoise()` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .models.generator import Generator
from .sampling import euler, guided_velocity, interpolate, two_scale_velocity, windowed

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
    # A clip made window after window, each given what the ones before made (extension) or its own
    # part of the input (interpolation): then(latents so far, one per window) is the next window's
    # Prepared, or None when the clip is complete, and join(windows) the clip's latents.
    then: Callable[[list[torch.Tensor]], Prepared | None] | None = None
    join: Callable[[list[torch.Tensor]], torch.Tensor] | None = None
    model: str | None = None  # the ModelSet role that denoises this window, when not the job's


CONDITIONS = (
    "source",
    "source_keep",
    "reference",
    "reference_keep",
    "frames",
    "frame_at",
    "frame_phase",
    "frames_keep",
)  # the model's conditions in the sequence


def read_once(model: Generator, limit: int = 64) -> Callable[..., torch.Tensor]:
    """The model with its conditions in the sequence read once per clip (DiT.read_context) and
    reused by every step and guidance term: they depend on the clean conditions alone, so this is
    the same velocity at about the cost of the target's tokens. The memory lives as long as this
    function (one denoise call); it holds each condition tensor it read, so an address it is keyed
    by cannot be reused by another tensor, and stops remembering past `limit` entries."""
    memo: dict[tuple, tuple[list[torch.Tensor], object]] = {}

    def run(x: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        given = {k: kwargs.pop(k) for k in CONDITIONS if kwargs.get(k) is not None}
        if not given:
            return model(x, t, **kwargs)
        key = tuple((k, v.data_ptr(), tuple(v.shape), v.stride()) for k, v in given.items())
        if key in memo:
            states = memo[key][1]
        else:
            states = model.dit.read_context(**given)
            if len(memo) < limit:
                memo[key] = (list(given.values()), states)
        return model(x, t, context_states=states, **kwargs)

    return run


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
    net = read_once(model)
    net = windowed(net, prep.window, prep.overlap) if prep.window else net
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
