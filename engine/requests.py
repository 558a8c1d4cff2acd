"""What every request shares (its errors, its checks, its cancel token) and the events a running
request yields. Each task's request type lives in its own module under engine/tasks/."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from .sampling import SCHEDULES

MAX_PROMPT_CHARS = 500
UPSCALE_FACTORS = (2, 4)


class RequestError(ValueError):
    """A request the engine cannot run; the message says what was wrong and what is accepted."""


class Cancelled(Exception):
    pass


class TaskRequest:
    """What every request type shares: the name of its task (a class attribute, `task = "t2v"`) and
    its record (what results store and cache keys hash)."""

    task: ClassVar[str]

    def to_dict(self) -> dict:
        return {"task": self.task} | asdict(self)


def check_text(name: str, value: str, empty: str | None = None) -> None:
    """A prompt-like field: at most MAX_PROMPT_CHARS; `empty` is what to say when it is blank (None:
    it may be)."""
    if empty is not None and not value.strip():
        raise RequestError(empty)
    if len(value) > MAX_PROMPT_CHARS:
        raise RequestError(f"The {name} is {len(value)} characters; at most {MAX_PROMPT_CHARS} are accepted.")


@dataclass(frozen=True)
class ModelLimits:
    """What a loaded generator can make: its DiT's learned position tables (in patches) times its
    patch and the TAE's downsampling. A request beyond them would fail deep inside the model, so
    it is refused up front with these numbers. The defaults are the shipped model's (16 latent
    frames of 4, 32x32 patches of 2x2 latents of 8x8 pixels)."""

    size_multiple: int = 16  # pixels per patch side: the TAE's spatial downsampling x the DiT's patch
    max_frames: int = 64  # max_t x patch_t x the TAE's temporal downsampling
    max_height: int = 512  # max_h x patch_h x spatial downsampling
    max_width: int = 512

    @property
    def max_size(self) -> int:
        """The largest square side."""
        return min(self.max_height, self.max_width)

    def describe(self) -> str:
        return (
            f"this model makes up to {self.max_frames} frames of up to {self.max_width}x{self.max_height} px,"
            f" sides multiples of {self.size_multiple}"
        )


SHIPPED_LIMITS = ModelLimits()  # what a request is checked against outside an engine


def check_side(name: str, value: int, largest: int, limits: ModelLimits) -> None:
    """One side of a frame in pixels: a multiple of the patch size within the model's tables."""
    multiple = limits.size_multiple
    if value % multiple or not multiple <= value <= largest:
        raise RequestError(
            f"{name} must be a multiple of {multiple} between {multiple} and {largest}, got {value}"
            f" ({limits.describe()})."
        )


def check_frames(frames: int, limits: ModelLimits) -> None:
    """A generated clip's length: 1 (an image) up to what the model's time table holds."""
    if not 1 <= frames <= limits.max_frames:
        raise RequestError(
            f"frames must be between 1 (an image) and {limits.max_frames}, got {frames} ({limits.describe()})."
        )


def check_sampling(req, limits: ModelLimits) -> None:
    """The settings every generating task shares: steps, guidance, frame size, schedule, frame rate,
    seed, and the upscale that may follow. The frame is `size` square, or for a request with
    `frame_shape` (T2V) its (height, width)."""
    if req.upscale not in (0, *UPSCALE_FACTORS):
        raise RequestError(f"upscale must be 0 (no), 2 or 4, got {req.upscale}.")
    if not 1 <= req.steps <= 500:
        raise RequestError(f"steps must be between 1 and 500, got {req.steps}.")
    if not 0.0 <= req.guidance <= 30.0:
        raise RequestError(f"guidance must be between 0 and 30, got {req.guidance}.")
    for name in ("width", "height"):  # T2V's own sides; 0: `size`
        if getattr(req, name, 0) < 0:
            raise RequestError(f"{name} must be 0 (square, at size) or positive, got {getattr(req, name)}.")
    if getattr(req, "width", 0) or getattr(req, "height", 0):
        height, width = req.frame_shape
        sides = [("width", width, limits.max_width), ("height", height, limits.max_height)]
    else:
        sides = [("size", req.size, limits.max_size)]
    for name, value, largest in sides:
        check_side(name, value, largest, limits)
    if req.schedule not in SCHEDULES:
        raise RequestError(f"schedule must be one of {', '.join(SCHEDULES)}, got {req.schedule!r}.")
    if not 0 < req.fps <= 60:
        raise RequestError(f"fps must be between 0 and 60, got {req.fps}.")
    if not 0 <= req.seed < 2**63:
        raise RequestError(f"seed must be between 0 and 2^63 - 1, got {req.seed}.")


class CancelToken:
    """Set from any thread; the engine checks it every step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    elapsed: float
    eta: float


@dataclass(frozen=True)
class Preview:
    step: int
    frames: np.ndarray  # (T, H, W, 3) uint8, rough colours from the linear latent -> RGB map


@dataclass(frozen=True)
class Result:
    path: Path
    metadata: dict
    # The frames as made, or None for a result written as it was decoded (an upscale: never whole
    # in memory); `frames` then reads them back from the file when someone asks.
    held: np.ndarray | None = field(default=None, repr=False)
    cached: bool = False

    @property
    def frames(self) -> np.ndarray:
        """(T, H, W, 3) uint8."""
        if self.held is None:
            from .video_io import read_image, read_video

            path = Path(self.path)
            frames = read_image(path)[None] if path.suffix.lower() == ".png" else read_video(path)[0]
            object.__setattr__(self, "held", frames)  # read once
        return self.held


@dataclass(frozen=True)
class Error:
    message: str
    cancelled: bool = False


Event = Progress | Preview | Result | Error
