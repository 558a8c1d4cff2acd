"""One dataclass per task, and the events a running request yields."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .sampling import SCHEDULES

MAX_PROMPT_CHARS = 500
UPSCALE_FACTORS = (2, 4)


class RequestError(ValueError):
    """A request the engine cannot run; the message says what was wrong and what is accepted."""


class Cancelled(Exception):
    pass


@dataclass(frozen=True)
class T2VRequest:
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
        if not self.prompt.strip():
            raise RequestError(
                "The prompt is empty. Describe the clip, e.g. 'a red circle moving left on a blue background'."
            )
        for name, value in (("prompt", self.prompt), ("negative prompt", self.negative_prompt)):
            if len(value) > MAX_PROMPT_CHARS:
                raise RequestError(f"The {name} is {len(value)} characters; at most {MAX_PROMPT_CHARS} are accepted.")
        if not 1 <= self.frames <= max_frames:
            raise RequestError(f"frames must be between 1 (an image) and {max_frames}, got {self.frames}.")
        _check_sampling(self, size_multiple, max_size)

    def to_dict(self) -> dict:
        return {"task": self.task} | asdict(self)


def _check_sampling(req: T2VRequest | EditRequest | PersonalizeRequest, size_multiple: int, max_size: int) -> None:
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


EDIT_MODES = ("instruction", "sdedit")  # say what to change / describe the result (SDEdit)
EDIT_TASK_CHOICES = ("auto", "recolor", "background", "reshape", "remove", "add", "motion")


@dataclass(frozen=True)
class EditRequest:
    video: str  # the source: any upload (video or image); normalised to the model's size and rate
    instruction: str = ""  # mode "instruction": what to change
    prompt: str = ""  # mode "sdedit": the result described, as a T2V prompt
    mode: str = "instruction"
    edit_task: str = "auto"  # the task embedding: read from the instruction, or one of EDIT_TASKS
    seed: int = 0
    steps: int = 24
    guidance: float = 5.0  # follow the instruction (s_T), or the prompt in SDEdit
    source_guidance: float = 1.5  # keep the source (s_I)
    strength: float = 0.6  # SDEdit: how far towards noise the source goes (1 = generate anew)
    size: int = 64
    fps: float = 8.0
    schedule: str = "linear-quadratic"
    rewrite: bool = True  # read the instruction / prompt into its canonical form first
    upscale: int = 0  # 2 or 4: upscale the result in the same job (both are kept); 0: no

    task = "edit"

    def validate(self, size_multiple: int = 16, max_size: int = 512) -> None:
        if self.mode not in EDIT_MODES:
            raise RequestError(f"mode must be one of {', '.join(EDIT_MODES)}, got {self.mode!r}.")
        text, what = (self.instruction, "instruction") if self.mode == "instruction" else (self.prompt, "prompt")
        if not text.strip():
            example = (
                "'make the circle yellow'"
                if what == "instruction"
                else "'a blue star moving left on a white background'"
            )
            raise RequestError(f"The {what} is empty. Say what the result should be, e.g. {example}.")
        for name, value in (("instruction", self.instruction), ("prompt", self.prompt)):
            if len(value) > MAX_PROMPT_CHARS:
                raise RequestError(f"The {name} is {len(value)} characters; at most {MAX_PROMPT_CHARS} are accepted.")
        if not str(self.video).strip():
            raise RequestError("No source video: upload a clip (MP4, MOV, WebM, MKV, AVI, GIF) or an image to edit.")
        if self.edit_task not in EDIT_TASK_CHOICES:
            raise RequestError(f"task must be one of {', '.join(EDIT_TASK_CHOICES)}, got {self.edit_task!r}.")
        if not 0.0 <= self.source_guidance <= 30.0:
            raise RequestError(f"source guidance must be between 0 and 30, got {self.source_guidance}.")
        if not 0.0 < self.strength <= 1.0:
            raise RequestError(f"strength must be above 0 and at most 1, got {self.strength}.")
        _check_sampling(self, size_multiple, max_size)

    def to_dict(self) -> dict:
        return {"task": self.task} | asdict(self)


@dataclass(frozen=True)
class UpscaleRequest:
    video: str  # any upload (video or image) or a result; kept at its own shape and frame rate
    scale: int = 4
    seed: int = 0
    steps: int = 20
    schedule: str = "linear"

    task = "upscale"

    def validate(self, size_multiple: int = 16, max_steps: int = 200) -> None:
        """(size_multiple is the generators'; an upscale's size is its input's.)"""
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

    def to_dict(self) -> dict:
        return {"task": self.task} | asdict(self)


@dataclass(frozen=True)
class PersonalizeRequest:
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

    def validate(self, size_multiple: int = 16, max_frames: int = 128, max_size: int = 512) -> None:
        if not str(self.reference).strip():
            raise RequestError(
                "No reference image: upload a picture (PNG, JPEG or WebP) of your character alone on a plain"
                " background, pick a saved character, or take a frame from a result."
            )
        if not self.prompt.strip():
            raise RequestError(
                "The prompt is empty. Say what the character does, e.g. 'the character moving right on a green"
                " background'."
            )
        for name, value in (("prompt", self.prompt), ("reference name", self.reference_name)):
            if len(value) > MAX_PROMPT_CHARS:
                raise RequestError(f"The {name} is {len(value)} characters; at most {MAX_PROMPT_CHARS} are accepted.")
        if not 1 <= self.frames <= max_frames:
            raise RequestError(f"frames must be between 1 (an image) and {max_frames}, got {self.frames}.")
        if not 0.0 <= self.reference_guidance <= 30.0:
            raise RequestError(f"reference guidance must be between 0 and 30, got {self.reference_guidance}.")
        _check_sampling(self, size_multiple, max_size)

    def to_dict(self) -> dict:
        return {"task": self.task} | asdict(self)


Request = T2VRequest | EditRequest | UpscaleRequest | PersonalizeRequest


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
