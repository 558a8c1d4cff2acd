"""Continue a clip (extension; SkyReels-V2's and FramePack's windows with our given frames): the
last frames of the clip so far are given (tasks/given.py) and the animation model makes the
window that follows them, as the new prompt says; window after window it makes a video of any
length. The result is the source followed by the new frames, with the source's sound.

Each window is 8 latent frames whose first `GIVEN` are the clip so far: the source's last 8 frames
encoded as a clip, then the previous window's own last latent frames, taken as they were made
(never decoded and encoded again, so nothing drifts through the TAE). The new latent frames of
all windows are decoded together, so the seams between windows are decoded as one clip."""

from __future__ import annotations

import math
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
from .given import WINDOW_FRAMES, GivenFrames, chunks, pictures, prepare_given, texts
from .registry import Job, Task, register
from .t2v import EMPTY_PROMPT

if TYPE_CHECKING:
    from ..engine import Engine

GIVEN = 2  # latent frames of the clip so far each window is given (8 frames)
MAX_SECONDS = 60.0  # what one request may add


@dataclass(frozen=True)
class ExtendRequest(TaskRequest):
    video: str  # the clip to continue: any upload (or a picture: a still clip of one frame)
    prompt: str  # what happens next, as a T2V prompt
    frames: int = 32  # new frames
    seconds: float = 0.0  # new seconds instead of frames (0: use frames)
    seed: int = 0
    steps: int = 24
    guidance: float = 5.0  # follow the prompt (s_T)
    frames_guidance: float = 3.0  # keep to the clip so far (s_F; docs/models/animate.md#guidance)
    size: int = 64
    fps: float = 8.0
    schedule: str = "linear-quadratic"
    rewrite: bool = True
    upscale: int = 0  # 2 or 4: upscale the result in the same job (both are kept); 0: no

    task = "extend"

    @property
    def new_frames(self) -> int:
        return round(self.seconds * self.fps) if self.seconds > 0 else self.frames

    def validate(self, limits: ModelLimits = SHIPPED_LIMITS) -> None:
        if not str(self.video).strip():
            raise RequestError(NO_SOURCE)
        check_text("prompt", self.prompt, EMPTY_PROMPT)
        if not 0.0 <= self.seconds <= MAX_SECONDS:
            raise RequestError(f"seconds must be between 0 and {MAX_SECONDS:.0f}, got {self.seconds}.")
        if not 1 <= self.new_frames <= MAX_SECONDS * self.fps:
            raise RequestError(
                f"new frames must be between 1 and {MAX_SECONDS * self.fps:.0f} ({MAX_SECONDS:.0f} s at"
                f" {self.fps:g} fps), got {self.new_frames}."
            )
        if not 0.0 <= self.frames_guidance <= 30.0:
            raise RequestError(f"frames guidance must be between 0 and 30, got {self.frames_guidance}.")
        check_sampling(self, limits)


def plan_windows(given_frames: int, new: int, window: int = WINDOW_FRAMES, stride: int = 4) -> int:
    """Windows needed for `new` frames when the first window is given `given_frames` frames and
    each later one GIVEN latent frames of the one before."""
    first = window - given_frames
    if new <= first:
        return 1
    return 1 + math.ceil((new - first) / (window - GIVEN * stride))


def given_count(n: int, stride: int = 4) -> int:
    """How many of a source's n frames the first window is given: its last 8 (4 when shorter),
    or all of a source shorter than one latent frame."""
    return n if n < stride else min(GIVEN, n // stride) * stride


def _given_source(engine: Engine, frames: np.ndarray) -> GivenFrames:
    """The first window's given frames: the source's last ones encoded as a clip, or for a source
    of 1-3 frames each frame as a picture."""
    tae, dev = engine.models.tae, engine.device
    n, k = len(frames), given_count(len(frames), tae.cfg.temporal_down)
    if n < tae.cfg.temporal_down:
        return pictures(tae, frames, list(range(n)), dev)
    return chunks(tae, tae.encode(to_tensor(np.array(frames[-k:])).to(dev)[None]))


def extend_job(engine: Engine, req: ExtendRequest) -> Job:
    engine.models.require("animator", NO_ANIMATOR)
    clip = engine.load_source(req.video, req.size, req.fps)
    rewrite = engine.rewrite_text(req.prompt) if req.rewrite else None
    prompt = rewrite.text if rewrite is not None else req.prompt
    tae = engine.models.tae
    stride = tae.cfg.temporal_down
    new = req.new_frames
    src_frames = clip.frames
    shape = (1, *tae.cfg.latent_shape(WINDOW_FRAMES, req.size, req.size))
    text: tuple[dict, dict] = ()  # encoded when the first window is prepared, once for all
    g = given_count(len(src_frames), stride)

    def window(given: GivenFrames, seed: int, then) -> Prepared:
        return prepare_given(given, text, shape, req, seed=seed, frames=WINDOW_FRAMES, then=then, join=join)

    def then(windows: list[torch.Tensor]) -> Prepared | None:
        made = (WINDOW_FRAMES - g) + (len(windows) - 1) * (WINDOW_FRAMES - GIVEN * stride)
        if made >= new:
            return None
        last = windows[-1][:, :, -GIVEN:]  # the clip so far, as it was made
        return window(chunks(tae, last), req.seed + len(windows), then)

    def join(windows: list[torch.Tensor]) -> torch.Tensor:
        """The new latent frames in order, behind the first window's given part: (1, Cz, t, h, w)."""
        return torch.cat([windows[0], *(w[:, :, GIVEN:] for w in windows[1:])], 2)

    def prepare() -> Prepared:
        nonlocal text
        text = texts(engine.prompt_encoder("animator"), prompt)
        return window(_given_source(engine, src_frames), req.seed, then)

    def decode(latents: torch.Tensor) -> torch.Tensor:
        """The source's own frames, then the new ones: (1, 3, T, H, W) in [-1, 1]."""
        made = tae.decode(latents)[:, :, g : g + new]  # (1, 3, new, H, W)
        src = to_tensor(src_frames.copy()).to(made.device)[None]  # (1, 3, N, H, W)
        return torch.cat([src, made], 2)

    windows = plan_windows(g, new, WINDOW_FRAMES, stride)
    return Job(
        key=cache_key(
            "extend", engine.models.ids["animator"], engine.precision, req.to_dict() | {"video": clip.digest}
        ),
        prepare=prepare,
        model="animator",
        frames=len(src_frames) + new,
        shape=(req.size, req.size),
        steps=req.steps * windows,
        fps=clip.fps,
        meta={
            "rewrite": rewrite.to_dict() if rewrite is not None else None,
            "source": {"name": Path(req.video).name, "sha256": clip.digest, "summary": clip.summary} | clip.info,
            "windows": windows,
            "new_frames": new,
        },
        audio_from=Path(req.video),
        decode=decode,
    )


TASK = register(Task("extend", ExtendRequest, extend_job, role="animator"))
