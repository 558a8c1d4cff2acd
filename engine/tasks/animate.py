"""Image-to-video (Emu Video's second step): a picture is the clip's first frame, optionally a
second one its last, and the animation model makes the clip between them as the prompt says. The
pictures are read as uploads are (any format Pillow or PyAV reads: upright, centre square,
resized) and given to the model as given frames (tasks/given.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..cache import cache_key
from ..denoise import Prepared
from ..requests import SHIPPED_LIMITS, ModelLimits, RequestError, TaskRequest, check_sampling, check_text
from .given import WINDOW_FRAMES, pictures, prepare_given, texts
from .registry import Inspection, Job, Task, register
from .t2v import EMPTY_PROMPT

if TYPE_CHECKING:
    from ..engine import Engine

NO_ANIMATOR = (
    "has no animation model (an 'animate' folder), so pictures cannot be animated; use a model folder that has one"
)
NO_PICTURE = "No picture: upload an image (PNG, JPEG, WebP, GIF...) or send a frame of a result."


@dataclass(frozen=True)
class AnimateRequest(TaskRequest):
    image: str  # the first frame: any picture (or a clip: its first frame)
    prompt: str  # what happens, as a T2V prompt
    last: str = ""  # optionally the last frame
    seed: int = 0
    steps: int = 24
    guidance: float = 5.0  # follow the prompt (s_T)
    frames_guidance: float = 3.0  # keep to the given pictures (s_F; docs/models/animate.md#guidance)
    frames: int = 32
    size: int = 64
    fps: float = 8.0
    schedule: str = "linear-quadratic"
    rewrite: bool = True  # give the model the prompt rewriter's reading of the prompt
    upscale: int = 0  # 2 or 4: upscale the result in the same job (both are kept); 0: no

    task = "animate"

    def validate(self, limits: ModelLimits = SHIPPED_LIMITS) -> None:
        if not str(self.image).strip():
            raise RequestError(NO_PICTURE)
        check_text("prompt", self.prompt, EMPTY_PROMPT)
        if not 2 <= self.frames <= WINDOW_FRAMES:
            raise RequestError(
                f"frames must be between 2 and {WINDOW_FRAMES}, got {self.frames}; continue the clip for a longer one."
            )
        if not 0.0 <= self.frames_guidance <= 30.0:
            raise RequestError(f"frames guidance must be between 0 and 30, got {self.frames_guidance}.")
        check_sampling(self, limits)


def read_picture(engine: Engine, path: str, size: int) -> tuple[np.ndarray, dict]:
    """A picture (or a clip's first frame) as the model sees it: (H, W, 3) uint8 and what the
    result records of it."""
    clip = engine.load_source(path, size, 8.0)
    meta = {"name": Path(path).name, "sha256": clip.digest, "summary": clip.summary}
    return clip.frames[0], meta


def inspect_picture(engine: Engine, path: str | Path, size: int = 64) -> Inspection:
    clip = engine.load_source(path, size, 8.0)
    return Inspection(clip.frames[:1], 0.0, clip.summary, clip.digest, clip.info)


def animate_job(engine: Engine, req: AnimateRequest) -> Job:
    engine.models.require("animator", NO_ANIMATOR)
    first, first_meta = read_picture(engine, req.image, req.size)
    given_pictures, index, meta = [first], [0], {"image": first_meta}
    if str(req.last).strip():
        last, meta["last"] = read_picture(engine, req.last, req.size)
        given_pictures.append(last)
        index.append(req.frames - 1)
    rewrite = engine.rewrite_text(req.prompt) if req.rewrite else None
    prompt = rewrite.text if rewrite is not None else req.prompt
    digests = {k: v["sha256"] for k, v in meta.items()}
    tae = engine.models.tae

    def prepare() -> Prepared:
        given = pictures(tae, np.stack(given_pictures), index, engine.device)
        shape = (1, *tae.cfg.latent_shape(req.frames, req.size, req.size))
        text = texts(engine.prompt_encoder("animator"), prompt)
        return prepare_given(given, text, shape, req, seed=req.seed, frames=req.frames)

    return Job(
        key=cache_key("animate", engine.models.ids["animator"], engine.precision, req.to_dict() | digests),
        prepare=prepare,
        model="animator",
        frames=req.frames,
        shape=(req.size, req.size),
        steps=req.steps,
        fps=req.fps,
        meta={"rewrite": rewrite.to_dict() if rewrite is not None else None} | meta,
    )


TASK = register(Task("animate", AnimateRequest, animate_job, inspect_picture, role="animator"))
