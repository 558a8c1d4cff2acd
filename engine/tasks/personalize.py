"""Personalized generation (Movie Gen PT2V): the reference picture's tokens beside the prompt's,
two-scale guidance with the reference in the source's place. The reference as the model saw it
is written beside the result, so the result keeps it whatever happens to the upload."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from ..cache import cache_key
from ..denoise import EncodePrompt, Prepared
from ..reference_image import MAX_BYTES as REFERENCE_MAX_BYTES
from ..reference_image import PreparedReference, prepare_reference
from ..requests import SHIPPED_LIMITS, ModelLimits, RequestError, TaskRequest, check_frames, check_sampling, check_text
from ..sampling import SCHEDULES
from ..video_io import fit_clip, is_still_image, probe
from .registry import Inspection, Job, Task, register

if TYPE_CHECKING:
    from ..engine import Engine

# Taking a reference from a clip: at most this many frames to pick from, this many pixels a side.
TAKE_MAX_FRAMES, TAKE_MAX_SIDE = 256, 256
SHOWN_MAX_SIDE = 512  # the upload as read, as the studio shows it


@dataclass(frozen=True)
class PersonalizeRequest(TaskRequest):
    """Movie Gen PT2V: a character from a reference image, doing what the prompt says."""

    reference: str  # an image (PNG, JPEG, WebP) of the character alone on a plain background
    prompt: str  # names it: "the character moving right on a green background" (or "it", "my character")
    reference_name: str = ""  # the saved character's name, if it is one ("Stripey"); recorded only
    seed: int = 0
    steps: int = 24
    guidance: float = 5.0  # follow the prompt (s_T)
    reference_guidance: float = 2.0  # look like the reference (s_R)
    frames: int = 32  # 1 = an image
    size: int = 64
    fps: float = 8.0
    schedule: str = "linear-quadratic"
    upscale: int = 0  # 2 or 4: upscale the result in the same job (both are kept); 0: no

    task = "personalize"

    def validate(self, limits: ModelLimits = SHIPPED_LIMITS) -> None:
        if not str(self.reference).strip():
            raise RequestError(
                "No reference image: upload a picture (PNG, JPEG or WebP) of your character alone on a plain"
                " background, pick a saved character, or take a frame from a result."
            )
        empty = (
            "The prompt is empty. Say what the character does, e.g. 'the character moving right on a green background'."
        )
        check_text("prompt", self.prompt, empty)
        check_text("reference name", self.reference_name)
        check_frames(self.frames, limits)
        if not 0.0 <= self.reference_guidance <= 30.0:
            raise RequestError(f"reference guidance must be between 0 and 30, got {self.reference_guidance}.")
        check_sampling(self, limits)


def load_reference(engine: Engine, path: str | Path) -> PreparedReference:
    """A reference image as the personalization model will see it: the character found on its
    plain background, centred at r = 0.3. Raises ReferenceImageError (a VideoInputError) with a
    message for the user when it cannot be read."""
    model = engine.models.personalizer
    size = model.cfg.reference.size if model is not None and model.cfg.reference is not None else 64
    # The upload limit holds here too (the reference's own limit when that is lower).
    return prepare_reference(path, size, max_bytes=min(engine.limits.max_bytes, REFERENCE_MAX_BYTES))


def inspect_reference(engine: Engine, path: str | Path) -> Inspection:
    """The reference as the model will see it; info["picture"] is the upload as it was read
    (upright, RGB, long side at most SHOWN_MAX_SIDE), for the studio to show."""
    ref = load_reference(engine, path)
    shown = Image.fromarray(ref.picture)
    shown.thumbnail((SHOWN_MAX_SIDE, SHOWN_MAX_SIDE), Image.Resampling.BOX)
    return Inspection(ref.image[None], 0.0, ref.summary, ref.digest, {"picture": np.asarray(shown)})


def take_frames(engine: Engine, path: str | Path) -> Inspection:
    """A clip (or an image) to take a reference frame from: at most TAKE_MAX_FRAMES frames, spread
    evenly over a long clip, at most TAKE_MAX_SIDE pixels a side."""
    path = Path(path)
    fps = None
    if not (path.is_file() and is_still_image(path)):
        head = probe(path, engine.limits)
        seconds = head.get("video_duration") or head.get("duration") or 0.0
        if seconds and head["fps"] and seconds * head["fps"] > TAKE_MAX_FRAMES:
            fps = TAKE_MAX_FRAMES / seconds  # a long clip: frames evenly spread in time
    got = fit_clip(path, TAKE_MAX_SIDE, fps, engine.limits)
    return Inspection(got.frames[:TAKE_MAX_FRAMES], got.fps, got.summary, got.digest, got.info)


def prepare_personalize(
    req: PersonalizeRequest, engine: Engine, encode: EncodePrompt, reference: torch.Tensor
) -> Prepared:
    """The reference picture (1, 3, S, S) in [-1, 1] conditions the generator as every condition
    does (docs/conditioning.md): its TAE latents in the sequence, at a place of their own. (An
    older model reads it with a vision encoder whose tokens join the prompt's, Movie Gen PT2V.)
    Two-scale guidance as in editing, the reference in the source's place:
    v = v(none) + s_R (v(reference) - v(none)) + s_T (v(reference, prompt) - v(reference))."""
    model = engine.models.personalizer
    if model.cfg.reference is None:
        z = engine.models.tae.encode(reference[:, :, None])  # (1, Cz, 1, S/8, S/8)
        keep, drop = torch.ones(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool)

        def with_reference(ctx: dict, ref: torch.Tensor | None) -> dict:
            return ctx | {"reference": z, "reference_keep": (keep if ref is not None else drop).to(z.device)}
    else:
        with_reference = model.with_reference
    return Prepared(
        shape=(1, *engine.models.tae.cfg.latent_shape(req.frames, req.size, req.size)),
        cond=with_reference(encode(req.prompt), reference),
        source=with_reference(encode(""), reference),
        uncond=with_reference(encode(""), None),
        guidance=req.guidance,
        source_guidance=req.reference_guidance,
        times=SCHEDULES[req.schedule](req.steps),
        seed=req.seed,
        frames=req.frames,
    )


def personalize_job(engine: Engine, req: PersonalizeRequest) -> Job:
    engine.models.require(
        "personalizer", "has no personalization model (a 'personalize' folder); use a model folder that has one"
    )
    ref = load_reference(engine, req.reference)
    image = torch.from_numpy(ref.image.copy()).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
    image = image.to(engine.device)  # (1, 3, S, S)
    encode = engine.prompt_encoder("personalizer")
    # What the model sees decides the result (and its cache entry), not the file or its name: a
    # result's own prepared reference reproduces it.
    seen = hashlib.sha256(ref.image.tobytes()).hexdigest()
    given = req.to_dict() | {"reference": seen, "reference_name": ""}
    name = req.reference_name or Path(req.reference).name
    ref_meta = {"name": name, "file": Path(req.reference).name, "sha256": ref.digest, "summary": ref.summary}
    ref_meta["prepared_sha256"] = seen
    return Job(
        key=cache_key("personalize", engine.models.ids["personalizer"], engine.precision, given),
        prepare=lambda: prepare_personalize(req, engine, encode, image),
        model="personalizer",
        frames=req.frames,
        shape=(req.size, req.size),
        steps=req.steps,
        fps=req.fps,
        meta={"reference": ref_meta},
        sidecars={"reference": ref.image[None]},
    )


TASK = register(Task("personalize", PersonalizeRequest, personalize_job, inspect_reference, role="personalizer"))
