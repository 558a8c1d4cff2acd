"""What a task is to the Engine, and the registry it looks requests up in.

A task is one module: its request dataclass, how its inputs are read (`job`), its cache key, its
`prepare()` and what its result records, all handed to the Engine as a `Job`. The Engine runs
every Job through the same path (cache, denoise, decode, write), so a new task is a new module
that calls `register` and nothing else in the engine changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..denoise import Prepared
from ..requests import RequestError

if TYPE_CHECKING:
    from ..engine import Engine


@dataclass
class Job:
    """What one request hands the shared path: its cache key, how to prepare it on a miss, the
    model that denoises it, and what to write."""

    key: str
    prepare: Callable[[], Prepared]
    model: str  # the ModelSet role that denoises it: "generator", "editor", "upsampler", ...
    frames: int
    shape: tuple[int, int]  # the result's (height, width)
    fps: float
    steps: int
    meta: dict  # the task's own metadata (how the prompt or instruction was read, the source)
    audio_from: Path | None = None  # an upload whose audio goes into the result
    # Latents (1, Cz, t, h, w) -> pixels (1, 3, T, H, W) in [-1, 1], or to its uint8 parts in order
    # (written as they come: the clip is never whole in memory, and the cache keeps only the
    # latents); None: the TAE's decoder.
    decode: Callable[[torch.Tensor], torch.Tensor | Iterator[np.ndarray]] | None = None
    # Clips written beside the result: whole, or a function giving one in parts.
    sidecars: dict[str, np.ndarray | Callable[[], Iterator[np.ndarray]]] = field(default_factory=dict)
    # Models that stand in for the ModelSet's in a role for this job alone (the T2V generator with a
    # style adapter merged), by role.
    nets: dict[str, torch.nn.Module] = field(default_factory=dict)


@dataclass(frozen=True)
class Inspection:
    """An upload read the way a task will read it, for the studio to show before anything runs."""

    frames: np.ndarray  # (T, H, W, 3) uint8, what the task will be given
    fps: float
    summary: str  # what was done to it, e.g. "1920x1080 30 fps 7.0 s -> centre square, 64x64, ..."
    digest: str  # the upload's content (sha256 of its bytes, first 16 hex digits)
    info: dict = field(default_factory=dict)  # the original's size, rate, duration, audio...

    def write(self, path: str | Path) -> Path:
        """The frames as a file a browser shows: a PNG for one frame, else an MP4 (atomic)."""
        from ..video_io import write_png, write_video

        path = Path(path)
        if len(self.frames) == 1 and path.suffix.lower() == ".png":
            return write_png(path, self.frames[0])
        return write_video(path, self.frames, self.fps or 8.0)


@dataclass(frozen=True)
class Task:
    name: str  # the request's `task`, the CLI subcommand, what results record
    request: type  # the frozen request dataclass
    job: Callable[[Engine, Any], Job]  # read and normalise the inputs, key, prepare, meta
    # The upload as this task reads it (the studio shows it before anything runs); None: no upload.
    inspect: Callable[..., Inspection] | None = None
    # The ModelSet role whose limits (frames, frame size) its requests are checked against.
    role: str = "generator"


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if getattr(task.request, "task", None) != task.name:
        raise ValueError(f"{task.request.__name__}.task must be {task.name!r}")
    TASKS[task.name] = task
    return task


def task_for(req: object) -> Task:
    """The registered task of a request, by its type."""
    for task in TASKS.values():
        if type(req) is task.request:
            return task
    names = ", ".join(t.request.__name__ for t in TASKS.values())
    raise RequestError(f"Not a request the engine knows: {type(req).__name__}; accepted: {names}.")
