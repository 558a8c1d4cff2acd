"""Spatial upscaling (Movie Gen's upsampler): the input enlarged by bicubic in pixel space,
encoded, its latents on the transformer's extra channels, the result decoded with the enlarged
input beside the latents. The bicubic enlargement is written beside the result for comparison.

Nothing at the larger size is held whole (the input is enlarged, encoded and decoded a span at a
time and each decoded part is written as it comes), so memory is the same at any length; what
bounds a job is time (UPSCALE_MAX_OUTPUT).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..cache import cache_key
from ..denoise import EncodePrompt, Prepared
from ..models.upsampler import encode_tiled
from ..requests import UPSCALE_FACTORS, ModelLimits, RequestError, TaskRequest
from ..sampling import SCHEDULES
from ..upscale_data import EnlargedClip
from ..video_io import NormalizedClip, fit_clip, is_still_image, probe
from .registry import Inspection, Job, Task, register

if TYPE_CHECKING:
    from ..engine import Engine

# The upsampler was trained on 128 px crops of 16 frames (16x16 latents, 4 latent frames): it runs
# in tiles of that size, overlapping by half, whatever the clip's size and length.
UPSCALE_WINDOW, UPSCALE_OVERLAP = (4, 16, 16), (2, 8, 8)
UPSCALE_MAX_SIDE = 256  # input pixels on the long side (4x: 1024 out); larger uploads are reduced first
UPSCALE_MODEL_SCALE = 4  # what the upsampler learned; 2x is its 4x result area-halved
# About 8 microseconds per output pixel and frame on our 2-core CPU (17 s for 32 frames of
# 256x256), so 150 million is about 20 minutes of the engine, which serves one job at a time: 2288
# frames of 256x256 (4.8 minutes at 8 fps), or 254 of 1024x576.
UPSCALE_SECONDS_PER_OUTPUT = 8e-6
UPSCALE_MAX_OUTPUT = 150_000_000  # output pixels x frames per upscale job
NO_UPSAMPLER = (
    "has no upsampler ('upscale' and 'upscale-decoder' folders), so clips cannot be upscaled;"
    " use a model folder that has one"
)


@dataclass(frozen=True)
class UpscaleRequest(TaskRequest):
    video: str  # any upload (video or image) or a result; kept at its own shape and frame rate
    scale: int = 4
    seed: int = 0
    steps: int = 20
    schedule: str = "linear"

    task = "upscale"

    def validate(self, limits: ModelLimits | None = None, max_steps: int = 200) -> None:
        """(limits are the generators'; an upscale's size is its input's, bounded by UPSCALE_MAX_OUTPUT.)"""
        if not str(self.video).strip():
            raise RequestError("No input: upload a clip (MP4, MOV, WebM, MKV, AVI, GIF) or an image to upscale.")
        if self.scale not in UPSCALE_FACTORS:
            raise RequestError(f"scale must be 2 or 4, got {self.scale}.")
        if not 1 <= self.steps <= max_steps:
            raise RequestError(f"steps must be between 1 and {max_steps}, got {self.steps}.")
        if self.schedule not in SCHEDULES:
            raise RequestError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}.")
        if not 0 <= self.seed < 2**63:
            raise RequestError(f"seed must be between 0 and 2^63 - 1, got {self.seed}.")


def check_size(engine: Engine, path: str | Path) -> None:
    """Refuse, from the header alone (nothing decoded), an upload too long to upscale at its
    size; raises RequestError with what would fit. A header that says nothing about length
    passes here, and is checked again once decoded (see upscale_job)."""
    if Path(path).is_file() and is_still_image(Path(path)):
        return  # one frame of at most upscale_max_side: always fits
    head = probe(path, engine.limits)
    k = min(1.0, engine.upscale_max_side / max(head["width"], head["height"], 1))
    w, h = max(1, round(head["width"] * k)), max(1, round(head["height"] * k))
    _check_output(engine, Path(path).name, head["frames"], w, h, head["fps"])


def _check_output(engine: Engine, name: str, frames: int, w: int, h: int, fps: float) -> None:
    k = UPSCALE_MODEL_SCALE  # the model works at 4x whatever the scale asked for
    per_frame = w * k * h * k
    if frames * per_frame <= engine.upscale_max_output:
        return
    fit = engine.upscale_max_output // per_frame
    raise RequestError(
        f"{name} is too long to upscale at its size: {frames} frames of {w}x{h} would make"
        f" {w * k}x{h * k} frames (about {max(1, round(frames * per_frame * UPSCALE_SECONDS_PER_OUTPUT / 60))}"
        " minutes of upscaling on a 2-core CPU)."
        f" An upscale takes up to {fit} frames of this size ({fit / fps:.1f} s at {fps:.4g} fps):"
        " trim the clip (or make it smaller) and upscale it in parts."
    )


def read_input(engine: Engine, path: str | Path) -> NormalizedClip:
    """The input as the upsampler takes it: at its own shape and rate, reduced to at most
    upscale_max_side on its long side; too long a clip is refused before it is decoded."""
    check_size(engine, path)
    clip = fit_clip(path, engine.upscale_max_side, None, engine.limits)
    frames, h, w = clip.frames.shape[:3]
    if frames > 1:  # headers can lie; a picture (one frame of at most upscale_max_side) always fits
        _check_output(engine, Path(path).name, frames, w, h, clip.fps)
    return clip


def inspect_input(engine: Engine, path: str | Path) -> Inspection:
    """The input as the upsampler takes it, with the job's own checks: too long a clip is refused
    from its header, or once decoded where its header hides its length, so the tab never says
    "Ready." for a clip the job would refuse."""
    clip = read_input(engine, path)
    return Inspection(clip.frames, clip.fps, clip.summary, clip.digest, clip.info)


def prepare_upscale(req: UpscaleRequest, enlarged: torch.Tensor, encode: EncodePrompt, frames: int) -> Prepared:
    """The enlarged input's latents (1, Cz, t, h, w) on extra channels, no prompt and no guidance
    (video to video), over overlapping windows in time and tiles in space so any length and size
    fits in memory."""
    return Prepared(
        shape=tuple(enlarged.shape),
        cond=encode("") | {"cond": enlarged},
        uncond=None,
        guidance=1.0,
        times=SCHEDULES[req.schedule](req.steps),
        seed=req.seed,
        frames=frames,
        window=UPSCALE_WINDOW,
        overlap=UPSCALE_OVERLAP,
    )


def upscale_job(engine: Engine, req: UpscaleRequest) -> Job:
    models = engine.models
    models.require("upsampler", NO_UPSAMPLER)
    clip = read_input(engine, req.video)
    frames, h, w = clip.frames.shape[:3]
    k = UPSCALE_MODEL_SCALE
    m = models.tae.cfg.spatial_down * models.upsampler.cfg.dit.patch[1]  # latents must fill whole patches
    # The input enlarged by bicubic, its edges replicated out to whole patches (the result is
    # cropped back), made a span at a time as the encoder and decoder read it.
    enlarged = EnlargedClip(clip.frames, k, (-(-h * k // m) * m, -(-w * k // m) * m))

    def decode(latents: torch.Tensor) -> Iterator[np.ndarray]:
        # uint8 frames a part at a time, blended as they go (2x: the 4x result area-reduced).
        z = models.tae.denormalize(latents)
        return models.updecoder.iter_frames(z, enlarged, (h * k, w * k), k // req.scale)

    def bicubic() -> Iterator[np.ndarray]:
        return enlarged.parts() if req.scale == k else EnlargedClip(clip.frames, req.scale).parts()

    def prepare() -> Prepared:
        key = cache_key("enlarged", models.ids["upsampler"], clip.digest, clip.frames.shape, clip.fps)
        cond = engine.cached(key, lambda: {"latents": encode_tiled(models.tae, enlarged)})["latents"]
        return prepare_upscale(req, cond, engine.prompt_encoder("upsampler"), frames)

    source_meta = {"name": Path(req.video).name, "sha256": clip.digest, "summary": clip.summary} | clip.info
    out_h, out_w = h * req.scale, w * req.scale
    return Job(
        key=cache_key("upscale", models.ids["upsampler"], engine.precision, req.to_dict() | {"video": clip.digest}),
        prepare=prepare,
        model="upsampler",
        frames=frames,
        shape=(out_h, out_w),
        fps=clip.fps,
        steps=req.steps,
        meta={"source": source_meta, "size": [out_w, out_h], "input_size": [w, h]},
        audio_from=Path(req.video) if frames > 1 else None,
        decode=decode,
        sidecars={"bicubic": bicubic},
    )


TASK = register(Task("upscale", UpscaleRequest, upscale_job, inspect_input, role="upsampler"))
