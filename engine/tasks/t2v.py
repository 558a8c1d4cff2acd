"""Text-to-video (and text-to-image: one frame): the prompt, read by the rewriter into its
canonical form when there is one, denoised from noise by the T2V generator."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from ..cache import cache_key
from ..denoise import EncodePrompt, Prepared
from ..models.tae import TAE
from ..requests import RequestError, TaskRequest, check_sampling, check_text
from ..sampling import SCHEDULES
from .given import GivenFrames, prepare_given, texts
from .registry import Job, Task, register

FACTORISED_FRAMES_GUIDANCE = 3.0  # keep to the image made (s_F), as animate's default

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
    # Emu Video's factorised generation: the first frame made as an image by this generator, then
    # animated by the animation model (same prompt, seed and steps).
    factorised: bool = False

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


def prepare_factorised(req: T2VRequest, engine: Engine) -> Prepared:
    """Emu Video: an image from the prompt, then the clip from the image and the prompt. The image's
    latents (a 1-frame latent, as a still is encoded) are given to the animation model as frame 0
    as they were made, without decoding them."""
    image = prepare_t2v(replace(req, frames=1), engine.models.tae, engine.encode_prompt)
    image.model = "generator"

    def animate(made: list[torch.Tensor]) -> Prepared | None:
        if len(made) > 1:
            return None
        z = made[0]
        given = GivenFrames(
            z, torch.zeros(1, 1, dtype=torch.long, device=z.device), torch.zeros_like(z[:1, 0, :1, 0, 0]).long()
        )
        shape = (1, *engine.models.tae.cfg.latent_shape(req.frames, req.size, req.size))
        text = texts(engine.prompt_encoder("animator"), req.prompt)
        return prepare_given(
            given, text, shape, req, seed=req.seed, frames=req.frames, frames_guidance=FACTORISED_FRAMES_GUIDANCE
        )

    image.then = animate
    image.join = lambda windows: windows[-1]
    return image


def t2v_job(engine: Engine, req: T2VRequest) -> Job:
    rewrite = engine.rewrite_text(req.prompt, image=req.frames == 1) if req.rewrite else None
    given = replace(req, prompt=rewrite.text) if rewrite is not None else req
    factorised = req.factorised and req.frames > 1
    if factorised:
        engine.models.require("animator", "has no animation model (an 'animate' folder) to animate the image with")
    role = "animator" if factorised else "generator"
    return Job(
        key=cache_key("t2v", engine.models.ids[role], engine.precision, req.to_dict()),
        prepare=(lambda: prepare_factorised(given, engine))
        if factorised
        else (lambda: prepare_t2v(given, engine.models.tae, engine.encode_prompt)),
        model=role,
        frames=req.frames,
        shape=(req.size, req.size),
        steps=req.steps * (2 if factorised else 1),
        fps=req.fps,
        meta={"rewrite": rewrite.to_dict() if rewrite is not None else None},
    )


TASK = register(Task("t2v", T2VRequest, t2v_job))
