"""SDEdit (the training-free baseline every edit model must beat): the source noised part of the
way to noise, then denoised by the plain T2V generator with a prompt that describes the result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..cache import cache_key
from ..denoise import EncodePrompt, Prepared
from ..requests import SHIPPED_LIMITS, ModelLimits, RequestError, TaskRequest, check_sampling, check_text
from ..sampling import SCHEDULES, sdedit_times
from .edit import NO_SOURCE, Source, inspect_source, read_source
from .registry import Job, Task, register

if TYPE_CHECKING:
    from ..engine import Engine


@dataclass(frozen=True)
class SDEditRequest(TaskRequest):
    video: str  # the source: any upload (video or image); normalised to the model's size and rate
    prompt: str  # the result described, as a T2V prompt
    seed: int = 0
    steps: int = 24
    guidance: float = 5.0  # follow the prompt
    strength: float = 0.6  # how far towards noise the source goes (1 = generate anew)
    size: int = 64
    fps: float = 8.0
    schedule: str = "linear-quadratic"
    rewrite: bool = True  # read the prompt into its canonical form first
    upscale: int = 0  # 2 or 4: upscale the result in the same job (both are kept); 0: no

    task = "sdedit"

    def validate(self, limits: ModelLimits = SHIPPED_LIMITS) -> None:
        empty = (
            "The prompt is empty. Say what the result should be, e.g. 'a blue star moving left on a white background'."
        )
        check_text("prompt", self.prompt, empty)
        if not str(self.video).strip():
            raise RequestError(NO_SOURCE)
        if not 0.0 < self.strength <= 1.0:
            raise RequestError(f"strength must be above 0 and at most 1, got {self.strength}.")
        check_sampling(self, limits)


def prepare_sdedit(req: SDEditRequest, src: Source, prompt: str, encode: EncodePrompt) -> Prepared:
    """The source noised to time 1 - strength, then denoised with the prompt."""
    return Prepared(
        shape=tuple(src.latents.shape),
        cond=encode(prompt),
        uncond=encode(""),
        guidance=req.guidance,
        times=sdedit_times(SCHEDULES[req.schedule](req.steps), req.strength),
        seed=req.seed,
        frames=src.frames,
        start=src.latents,
        window=src.window,
        overlap=src.window // 2,
    )


def sdedit_job(engine: Engine, req: SDEditRequest) -> Job:
    src = read_source(engine, req.video, req.size, req.fps)
    rewrite = engine.rewrite_text(req.prompt, image=src.frames == 1) if req.rewrite else None
    prompt = rewrite.text if rewrite is not None else req.prompt
    given = req.to_dict() | {"video": src.clip.digest}
    return Job(
        key=cache_key("sdedit", engine.models.ids["generator"], engine.precision, given),
        prepare=lambda: prepare_sdedit(req, src, prompt, engine.encode_prompt),
        model="generator",
        frames=src.frames,
        shape=(req.size, req.size),
        steps=req.steps,
        fps=src.clip.fps,
        meta={"rewrite": rewrite.to_dict() if rewrite is not None else None, "source": src.meta},
        audio_from=Path(req.video),
    )


TASK = register(Task("sdedit", SDEditRequest, sdedit_job, inspect_source))
