"""Fill in frames (interpolation, Emu Video's and Video LDM's frame interpolation with our given
frames): a clip of N frames becomes (N - 1) K + 1 frames at K times its rate. The source's frames
are given as pictures at their places in the longer clip (tasks/given.py) and the animation model
makes the frames between; the source's own frames are kept as they were.

Windows of 32 output frames, each starting where the one before has its last given latent frame
(every 28 frames: a latent frame boundary for K = 2 and 4, and a given frame), so windows meet on
frames both were given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..cache import cache_key
from ..denoise import Prepared
from ..requests import SHIPPED_LIMITS, ModelLimits, RequestError, TaskRequest, check_sampling, check_text
from ..world.data import to_tensor
from .animate import NO_ANIMATOR
from .edit import NO_SOURCE
from .given import WINDOW_FRAMES, pictures, prepare_given, texts
from .registry import Job, Task, register

if TYPE_CHECKING:
    from ..engine import Engine

FACTORS = (2, 4)
HOP = WINDOW_FRAMES - 4  # output frames from one window's start to the next's


@dataclass(frozen=True)
class InterpolateRequest(TaskRequest):
    video: str  # any upload of at least 2 frames
    factor: int = 2  # 2 or 4 times the frame rate
    prompt: str = ""  # optional: what the clip shows (empty: the frames alone)
    seed: int = 0
    # The given frames pin the clip down: a few steps and no guidance suffice by default.
    steps: int = 12
    guidance: float = 1.0
    frames_guidance: float = 1.0
    size: int = 64
    fps: float = 8.0  # the source is read at this rate; the result has factor times it
    schedule: str = "linear-quadratic"
    rewrite: bool = True
    upscale: int = 0

    task = "interpolate"

    def validate(self, limits: ModelLimits = SHIPPED_LIMITS) -> None:
        if not str(self.video).strip():
            raise RequestError(NO_SOURCE)
        if self.factor not in FACTORS:
            raise RequestError(f"factor must be 2 or 4, got {self.factor}.")
        check_text("prompt", self.prompt)
        if not 0.0 <= self.frames_guidance <= 30.0:
            raise RequestError(f"frames guidance must be between 0 and 30, got {self.frames_guidance}.")
        check_sampling(self, limits)
        if self.fps * self.factor > 60:
            raise RequestError(f"the result's rate {self.fps * self.factor:g} fps is over 60: read the source slower.")


def window_starts(total: int) -> list[int]:
    """Output frames where windows start: every HOP frames until one reaches the last frame."""
    starts = [0]
    while starts[-1] + WINDOW_FRAMES < total:
        starts.append(starts[-1] + HOP)
    return starts


def interpolate_job(engine: Engine, req: InterpolateRequest) -> Job:
    engine.models.require("animator", NO_ANIMATOR)
    clip = engine.load_source(req.video, req.size, req.fps)
    n = len(clip.frames)
    if n < 2:
        raise RequestError("The clip has one frame: filling in frames needs at least 2.")
    k = req.factor
    total = (n - 1) * k + 1
    starts = window_starts(total)
    rewrite = engine.rewrite_text(req.prompt) if req.rewrite and req.prompt.strip() else None
    prompt = rewrite.text if rewrite is not None else req.prompt
    tae = engine.models.tae
    stride = tae.cfg.temporal_down
    shape = (1, *tae.cfg.latent_shape(WINDOW_FRAMES, req.size, req.size))
    text: tuple[dict, dict] = ()  # encoded when the first window is prepared, once for all
    keep = HOP // stride  # latent frames kept of every window but the last

    def window(w: int) -> Prepared:
        first = starts[w]
        index = [i * k for i in range(n) if first <= i * k < first + WINDOW_FRAMES]
        given = pictures(tae, clip.frames[[i // k for i in index]], [i - first for i in index], engine.device)
        return prepare_given(
            given,
            text,
            shape,
            req,
            seed=req.seed + w,
            frames=WINDOW_FRAMES,
            then=lambda made: window(len(made)) if len(made) < len(starts) else None,
            join=lambda made: torch.cat([*(z[:, :, :keep] for z in made[:-1]), made[-1]], 2),
        )

    def prepare() -> Prepared:
        nonlocal text
        text = texts(engine.prompt_encoder("animator"), prompt)
        return window(0)

    def decode(latents: torch.Tensor) -> torch.Tensor:
        """The made clip, corrected by what it got wrong where the truth is known: (1, 3, T, H, W).
        At each source frame the error of the decoded clip is exact (the source frame minus the
        made one); between two, it is blended from theirs, so the decoder's own error (colours,
        edges) is taken out of the frames made too, and the source's frames come back as they were."""
        made = tae.decode(latents)[:, :, :total]  # (1, 3, T, H, W)
        src = to_tensor(np.array(clip.frames)).to(made.device)[None]  # (1, 3, N, H, W)
        err = src - made[:, :, ::k]  # (1, 3, N, H, W)
        w = torch.arange(k, device=made.device, dtype=made.dtype) / k  # (k,)
        between = (1 - w)[None, None, None, :, None, None] * err[:, :, :-1, None] + w[
            None, None, None, :, None, None
        ] * err[:, :, 1:, None]
        correction = torch.cat([between.flatten(2, 3), err[:, :, -1:]], 2)  # (1, 3, T, H, W)
        return (made + correction).clamp(-1, 1)

    return Job(
        key=cache_key(
            "interpolate", engine.models.ids["animator"], engine.precision, req.to_dict() | {"video": clip.digest}
        ),
        prepare=prepare,
        model="animator",
        frames=total,
        shape=(req.size, req.size),
        steps=req.steps * len(starts),
        fps=clip.fps * k,
        meta={
            "rewrite": rewrite.to_dict() if rewrite is not None else None,
            "source": {"name": Path(req.video).name, "sha256": clip.digest, "summary": clip.summary} | clip.info,
            "windows": len(starts),
        },
        audio_from=Path(req.video),
        decode=decode,
    )


TASK = register(Task("interpolate", InterpolateRequest, interpolate_job, role="animator"))
