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


def check_sampling(req, size_multiple: int, max_size: int) -> None:
    """The settings every generating task shares: steps, guidance, size, schedule, frame rate, seed,
    and the upscale that may follow."""
    if req.upscale not in (0, *UPSCALE_FACTORS):
        raise RequestError(f"upscale must be 0 (no), 2 or 4, got {req.upscale}.")
    if not 1 <= req.steps <= 500:
        raise RequestError(f"steps must be between 1 and 500, got {req.steps}.")
    if not 0.0 <= req.guidance <= 30.0:
        raise RequestError(f"guidance must be between 0 and 30, got {req.guidance}.")
    if req.size % size_multiple or not size_multiple <= req.size <= max_size:
        raise RequestError(
            f"size must be a multiple of {size_multiple} between {size_multiple} and {max_size}, got {req.size}."
        )
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
