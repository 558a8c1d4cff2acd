"""Text-to-video (and text-to-image: one frame): the prompt, read by the rewriter into its
canonical form when there is one, denoised from noise by the T2V generator."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from ..cache import cache_key
from ..denoise import EncodePrompt, Prepared
from ..models.tae import TAE
from ..requests import SHIPPED_LIMITS, ModelLimits, RequestError, TaskRequest, check_frames, check_sampling, check_text
from ..sampling import SCHEDULES
from .given import GivenFrames, prepare_given, texts
from .registry import Job, Task, register

FACTORISED_FRAMES_GUIDANCE = 3.0  # keep to the image made (s_F), as animate's default
MAX_LORA_SCALE = 2.0  # past about twice its trained strength an adapter only adds artefacts

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
    size: int = 64  # the side of a square frame, where width and height are 0
    # A frame of its own shape (pixels, multiples of the model's patch): 0 takes `size`, so requests
    # and results saved before these fields existed read as the square they were.
    width: int = 0
    height: int = 0
    fps: float = 8.0
    schedule: str = "linear-quadratic"
    rewrite: bool = True  # give the generator the prompt rewriter's canonical reading of the prompt
    upscale: int = 0  # 2 or 4: upscale the result in the same job (both are kept); 0: no
    # Emu Video's factorised generation: the first frame made as an image by this generator, then
    # animated by the animation model (same prompt, seed and steps).
    factorised: bool = False
    # A style adapter (a LoRA in the model folder's loras/) merged into the generator at this scale;
    # "" none.
    lora: str = ""
    lora_scale: float = 1.0

    task = "t2v"

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (self.height or self.size, self.width or self.size)

    def validate(self, limits: ModelLimits = SHIPPED_LIMITS) -> None:
        check_text("prompt", self.prompt, EMPTY_PROMPT)
        check_text("negative prompt", self.negative_prompt)
        check_frames(self.frames, limits)
        check_sampling(self, limits)
        if not 0.0 <= self.lora_scale <= MAX_LORA_SCALE:
            raise RequestError(
                f"lora scale must be between 0 (the base model) and {MAX_LORA_SCALE:g}, got {self.lora_scale}."
            )


def prepare_t2v(req: T2VRequest, tae: TAE, encode_prompt: EncodePrompt) -> Prepared:
    shape = (1, *tae.cfg.latent_shape(req.frames, *req.frame_shape))
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
        shape = (1, *engine.models.tae.cfg.latent_shape(req.frames, *req.frame_shape))
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
    meta: dict = {"rewrite": rewrite.to_dict() if rewrite is not None else None}
    nets = {}
    if req.lora:  # the generator with the style merged (through an image: the image is made with it)
        nets["generator"], meta["lora"] = engine.styled(req.lora, req.lora_scale)
    height, width = req.frame_shape
    return Job(
        # The adapter's content is in the key: an adapter replaced under the same name is a new one.
        key=cache_key("t2v", engine.models.ids[role], engine.precision, req.to_dict(), meta.get("lora")),
        prepare=(lambda: prepare_factorised(given, engine))
        if factorised
        else (lambda: prepare_t2v(given, engine.models.tae, engine.encode_prompt)),
        model=role,
        frames=req.frames,
        shape=(height, width),
        steps=req.steps * (2 if factorised else 1),
        fps=req.fps,
        meta=meta,
        nets=nets,
    )


TASK = register(Task("t2v", T2VRequest, t2v_job))
