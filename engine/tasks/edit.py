"""Instruction editing (Movie Gen Edit): the source's latents on the edit model's extra channels,
the instruction as text with its task embedding, two-scale guidance (keep the source, follow the
instruction). Long sources go in overlapping windows of what the model was trained on."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..cache import cache_key
from ..denoise import EncodePrompt, Prepared
from ..requests import MAX_PROMPT_CHARS, SHIPPED_LIMITS, ModelLimits, RequestError, TaskRequest, check_sampling
from ..sampling import SCHEDULES, sdedit_times
from ..video_io import NormalizedClip
from ..world.analyse import source_scene
from ..world.edits import EDIT_TASKS
from ..world.edits import TASKS as TASK_EMBEDDINGS
from ..world.instructions import InstructionReading, read_instruction
from ..world.scene import Scene
from .registry import Inspection, Job, Task, register

if TYPE_CHECKING:
    from ..engine import Engine

# Where an edit starts by default, per task (docs/models/edit.md#strength): a new shape, or an object
# added, keeps the layout and motion of the noised source (reshape: 60% followed against 45% from
# noise, 36 dB kept against 27); a new colour, background or motion, or a removal, is drawn from
# noise, where the source's own colours and path do not pull the result back.
TASK_STRENGTH = {"recolor": 1.0, "background": 1.0, "reshape": 0.75, "remove": 1.0, "add": 0.75, "motion": 1.0}
EDIT_WINDOW_FRAMES = 32  # what the edit model was trained on; longer sources go in overlapping windows
EDIT_TASK_CHOICES = ("auto", *EDIT_TASKS)
NO_TASK = (
    "Could not tell which kind of edit this is. Say it as one of: recolor ('make the circle yellow'),"
    " background ('change the background to white'), reshape ('turn the circle into a star'), remove"
    " ('remove the green star'), add ('add a yellow square moving up'), motion ('make the circle move"
    " up'), or pick the task yourself."
)
NO_SOURCE = "No source video: upload a clip (MP4, MOV, WebM, MKV, AVI, GIF) or an image to edit."


@dataclass(frozen=True)
class EditRequest(TaskRequest):
    video: str  # the source: any upload (video or image); normalised to the model's size and rate
    instruction: str = ""  # what to change
    edit_task: str = "auto"  # the task embedding: read from the instruction, or one of EDIT_TASKS
    seed: int = 0
    steps: int = 24
    guidance: float = 5.0  # follow the instruction (s_T)
    source_guidance: float = 1.5  # keep the source (s_I)
    # Start from the source noised to time 1 - strength rather than from pure noise (the "denoise"
    # of other studios): 1 generates the result anew from the source's tokens alone; 0 is the
    # task's own (TASK_STRENGTH).
    strength: float = 0.0
    size: int = 64
    fps: float = 8.0
    schedule: str = "linear-quadratic"
    rewrite: bool = True  # read the instruction into its canonical form first
    upscale: int = 0  # 2 or 4: upscale the result in the same job (both are kept); 0: no

    task = "edit"

    def validate(self, limits: ModelLimits = SHIPPED_LIMITS) -> None:
        if not self.instruction.strip():
            raise RequestError(
                "The instruction is empty. Say what the result should be, e.g. 'make the circle yellow'."
            )
        if len(self.instruction) > MAX_PROMPT_CHARS:
            raise RequestError(
                f"The instruction is {len(self.instruction)} characters; at most {MAX_PROMPT_CHARS} are accepted."
            )
        if not str(self.video).strip():
            raise RequestError(NO_SOURCE)
        if self.edit_task not in EDIT_TASK_CHOICES:
            raise RequestError(f"task must be one of {', '.join(EDIT_TASK_CHOICES)}, got {self.edit_task!r}.")
        if not 0.0 <= self.source_guidance <= 30.0:
            raise RequestError(f"source guidance must be between 0 and 30, got {self.source_guidance}.")
        if not 0.0 <= self.strength <= 1.0:
            raise RequestError(f"strength must be between 0 (the task's own) and 1, got {self.strength}.")
        check_sampling(self, limits)


class SourceScenes:
    """What the analyser read in recent sources (the studio reads an instruction as it is typed:
    each source is analysed once, 0.3 s for 56 frames, not per key). Its own lock: the studio's
    reading handlers call it while a job may be running."""

    def __init__(self, size: int = 32):
        self.size = size
        self._lock = threading.Lock()
        self._scenes: OrderedDict[str, Scene | None] = OrderedDict()

    def __call__(self, frames: np.ndarray) -> Scene | None:
        key = hashlib.sha256(frames.tobytes()).hexdigest()
        with self._lock:
            if key in self._scenes:
                return self._scenes[key]
        scene = source_scene(frames)  # outside the lock: two readers may both analyse, harmlessly
        with self._lock:
            self._scenes[key] = scene
            while len(self._scenes) > self.size:
                self._scenes.popitem(last=False)
        return scene


def reading_of(engine: Engine, instruction: str, frames: np.ndarray | None = None) -> InstructionReading:
    """What the instruction asks for; with the source's frames, objects named by colour or shape
    alone are resolved against what the analyser reads in them (world clips)."""
    return read_instruction(instruction, engine.scenes(frames) if frames is not None else None)


@dataclass(frozen=True)
class Source:
    """An edit's source as the model sees it: the normalised clip and its latents."""

    clip: NormalizedClip
    latents: torch.Tensor  # (1, Cz, t, h, w)
    window: int  # latent frames per MultiDiffusion window
    meta: dict  # what the result records of it

    @property
    def frames(self) -> int:
        return len(self.clip.frames)


def read_source(engine: Engine, video: str, size: int, fps: float) -> Source:
    """Decoded as a stream, upright, centre square, resized, resampled to the model's rate, then
    encoded (cached by content)."""
    clip = engine.load_source(video, size, fps)
    window = engine.models.tae.cfg.latent_shape(EDIT_WINDOW_FRAMES, size, size)[1]
    meta = {"name": Path(video).name, "sha256": clip.digest, "summary": clip.summary} | clip.info
    return Source(clip, engine.encode_source(clip), window, meta)


def inspect_source(engine: Engine, video: str, size: int = 64, fps: float = 8.0) -> Inspection:
    """The source as an edit (or SDEdit) will see it."""
    clip = engine.load_source(video, size, fps)
    return Inspection(clip.frames, clip.fps, clip.summary, clip.digest, clip.info)


def prepare_edit(
    req: EditRequest,
    src: Source,
    instruction: str,
    task: int,
    encode: EncodePrompt,
    in_sequence: bool,
    strength: float = 1.0,
) -> Prepared:
    """The source conditions the generator as every condition does (docs/conditioning.md): its
    latents' tokens in the sequence at the target's own positions, the instruction as text with
    its task embedding; v(none) has the source masked out, v(source) no instruction. (An older
    model takes the source on extra channels, Movie Gen Edit; a blank source is zeros there.)"""
    z = src.latents
    none_task = torch.zeros(1, dtype=torch.long, device=z.device)  # "generate"
    if in_sequence:
        keep, drop = torch.ones(1, dtype=torch.bool, device=z.device), torch.zeros(1, dtype=torch.bool, device=z.device)
        given, blank = {"source": z, "source_keep": keep}, {"source": z, "source_keep": drop}
    else:
        given, blank = {"cond": z}, {"cond": torch.zeros_like(z)}
    return Prepared(
        shape=tuple(z.shape),
        cond=encode(instruction) | given | {"task": torch.full_like(none_task, task)},
        source=encode("") | given | {"task": none_task},
        uncond=encode("") | blank | {"task": none_task},
        guidance=req.guidance,
        source_guidance=req.source_guidance,
        times=sdedit_times(SCHEDULES[req.schedule](req.steps), strength),
        seed=req.seed,
        frames=src.frames,
        start=z if strength < 1.0 else None,
        window=src.window,
        overlap=src.window // 2,
    )


def edit_job(engine: Engine, req: EditRequest) -> Job:
    engine.models.require(
        "editor",
        "has no edit model (an 'edit' folder), so instructions cannot be followed; describe the result instead"
        " (the SDEdit mode), or use a model folder that has one",
    )
    src = read_source(engine, req.video, req.size, req.fps)
    reading = reading_of(engine, req.instruction, src.clip.frames)
    task = reading.task if req.edit_task == "auto" else req.edit_task
    if task is None:
        raise RequestError(NO_TASK)
    text = reading.canonical if req.rewrite and reading.canonical else req.instruction
    given = req.to_dict() | {"video": src.clip.digest}  # the content, not the file's name, identifies it
    encode = engine.prompt_encoder("editor")
    in_sequence = engine.models.editor.dit.cfg.context_kinds > 0
    strength = req.strength or TASK_STRENGTH[task]
    return Job(
        key=cache_key("edit", engine.models.ids["editor"], engine.precision, given),
        prepare=lambda: prepare_edit(req, src, text, TASK_EMBEDDINGS.index(task), encode, in_sequence, strength),
        model="editor",
        frames=src.frames,
        shape=(req.size, req.size),
        steps=req.steps,
        fps=src.clip.fps,
        meta={
            "reading": reading.to_dict(),
            "edit_task": task,
            "given": text,
            "strength": strength,
            "source": src.meta,
        },
        audio_from=Path(req.video),
    )


TASK = register(Task("edit", EditRequest, edit_job, inspect_source, role="editor"))
