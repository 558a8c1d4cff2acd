"""Text-to-video (and text-to-image: one frame): the prompt, read by the rewriter into its
canonical form when there is one, denoised from noise by the T2V generator."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..cache import cache_key
from ..denoise import EncodePrompt, Prepared
from ..models.tae import TAE
from ..requests import RequestError, TaskRequest, check_sampling, check_text
from ..sampling import SCHEDULES
from .registry import Job, Task, register

if TYPE_CHECKING:
    from ..engine import Engine

EMPTY_PROMPT = "The prompt is empty. Describe the clip, e.g. 'a red circle moving left on a blue background'."


@dataclass(frozen=True)
class T2VRequest(TaskRequest):
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 24
    guidance: float = 5.0
    frames: int = 32  # 1 = an image
    size: int = 64
    fps: float = 8.0
    schedule: str = "linear-quadratic"
    rewrite: bool = True  # give the generator the prompt rewriter's canonical reading of the prompt
    upscale: int = 0  # 2 or 4: upscale the result in the same job (both are kept); 0: no

    task = "t2v"

    def validate(self, size_multiple: int = 16, max_frames: int = 128, max_size: int = 512) -> None:
        check_text("prompt", self.prompt, EMPTY_PROMPT)
        check_text("negative prompt", self.negative_prompt)
        if not 1 <= self.frames <= max_frames:
            raise RequestError(f"frames must be between 1 (an image) and {max_frames}, got {self.frames}.")
        check_sampling(self, size_multiple, max_size)


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


def t2v_job(engine: Engine, req: T2VRequest) -> Job:
    rewrite = engine.rewrite_text(req.prompt, image=req.frames == 1) if req.rewrite else None
    given = replace(req, prompt=rewrite.text) if rewrite is not None else req
    return Job(
        key=cache_key("t2v", engine.models.ids["generator"], engine.precision, req.to_dict()),
        prepare=lambda: prepare_t2v(given, engine.models.tae, engine.encode_prompt),
        model="generator",
        frames=req.frames,
        shape=(req.size, req.size),
        steps=req.steps,
        fps=req.fps,
        meta={"rewrite": rewrite.to_dict() if rewrite is not None else None},
    )


TASK = register(Task("t2v", T2VRequest, t2v_job))
