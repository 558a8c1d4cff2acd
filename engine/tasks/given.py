"""Given frames (docs/conditioning.md): what animating a picture, continuing a clip and filling in
frames hand the animation model. A given frame is clean latents in the sequence at its own time:
a picture (one frame, encoded alone as a 1-frame latent) at the latent frame that holds it and its
phase there (which of the TAE's `stride` frames it is), or a whole latent frame of a clip (phase
`stride`). The model makes the clip around them; the three guidance terms are those of editing:
v(none) + s_F (v(frames) - v(none)) + s_T (v(frames, prompt) - v(frames))."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..denoise import EncodePrompt, Prepared
from ..models.tae import TAE
from ..sampling import SCHEDULES
from ..world.data import to_tensor

WINDOW_FRAMES = 32  # what the animation model was trained on: one window of 8 latent frames


@dataclass(frozen=True)
class GivenFrames:
    latents: torch.Tensor  # (1, Cz, F, h, w): each a picture's 1-frame latent or a clip's latent frame
    at: torch.Tensor  # (1, F) long: the latent frame each sits at
    phase: torch.Tensor  # (1, F) long: the frame a picture shows within it; stride = a whole latent frame

    def kwargs(self, keep: bool) -> dict[str, torch.Tensor]:
        f = self.at.shape[1]
        keeps = torch.full((1, f), keep, dtype=torch.bool, device=self.latents.device)
        return {"frames": self.latents, "frame_at": self.at, "frame_phase": self.phase, "frames_keep": keeps}

    def __add__(self, other: GivenFrames) -> GivenFrames:
        return GivenFrames(
            torch.cat([self.latents, other.latents], 2),
            torch.cat([self.at, other.at], 1),
            torch.cat([self.phase, other.phase], 1),
        )


def pictures(tae: TAE, frames: np.ndarray, index: list[int], device: torch.device) -> GivenFrames:
    """Pictures (P, H, W, 3) uint8, each the clip's frame index[p], encoded one by one (1-frame
    latents, as a still image is) and placed at frame // stride with phase frame % stride."""
    x = to_tensor(np.array(frames)).to(device).transpose(0, 1)  # (P, 3, H, W)
    z = tae.encode(x[:, :, None])  # (P, Cz, 1, h, w)
    z = z.permute(2, 1, 0, 3, 4)  # (1, Cz, P, h, w)
    s = tae.cfg.temporal_down
    idx = torch.tensor([index], dtype=torch.long, device=device)
    return GivenFrames(z, idx // s, idx % s)


def chunks(tae: TAE, latents: torch.Tensor, first: int = 0) -> GivenFrames:
    """Whole latent frames (1, Cz, k, h, w) of a clip, at latent times first .. first + k - 1."""
    k = latents.shape[2]
    at = torch.arange(first, first + k, device=latents.device)[None]
    return GivenFrames(latents, at, torch.full_like(at, tae.cfg.temporal_down))


def texts(encode: EncodePrompt, prompt: str) -> tuple[dict, dict]:
    """The prompt's and the empty prompt's tokens, encoded once for every window of a job."""
    return encode(prompt), encode("")


def prepare_given(
    given: GivenFrames,
    text: tuple[dict, dict],
    shape: tuple[int, ...],
    req,
    *,
    seed: int,
    frames: int,
    frames_guidance: float | None = None,
    then: Callable[[list[torch.Tensor]], Prepared | None] | None = None,
    join: Callable[[list[torch.Tensor]], torch.Tensor] | None = None,
) -> Prepared:
    """One window: latents of `shape` made around the given frames, with `req`'s guidance (s_T),
    frames guidance (s_F, unless given here), schedule and steps; `text` from texts(). At s_F = 1
    the v(none) term cancels, so guidance is plain classifier-free guidance on the prompt with the
    frames in both terms (two terms a step, as T2V); with no guidance at all a single term."""
    s_f = req.frames_guidance if frames_guidance is None else frames_guidance
    prompt, empty = text
    cond = prompt | given.kwargs(True)
    frames_only = empty | given.kwargs(True)
    if s_f == 1.0:
        source, uncond = None, (None if req.guidance == 1.0 else frames_only)
    else:
        source, uncond = frames_only, empty | given.kwargs(False)
    return Prepared(
        shape=shape,
        cond=cond,
        source=source,
        uncond=uncond,
        guidance=req.guidance,
        source_guidance=s_f,
        times=SCHEDULES[req.schedule](req.steps),
        seed=seed,
        frames=frames,
        then=then,
        join=join,
    )
