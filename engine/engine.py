"""The Engine: created once per process, holds the models on their device, runs one request at a
time into a stream of events (progress, previews, result, error), with a content cache on disk.

Every task takes the same path through `run`: validate, look the task up in the registry, let it
read its inputs into a Job (engine/tasks/), then cache, prepare, denoise, decode, write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .cache import TensorCache, cache_key
from .denoise import Prepared, denoise
from .host_memory import fix_mmap_threshold
from .loras import MergedAdapters, unknown_lora
from .model_set import ModelSet
from .models.generator import Generator
from .models.rewrite import Rewrite
from .precision import bf16_is_fast, keep_in_bf16
from .requests import (
    MAX_PROMPT_CHARS,
    Cancelled,
    CancelToken,
    Error,
    Event,
    ModelLimits,
    Preview,
    Progress,
    RequestError,
    Result,
)
from .results import check_out, write_error, write_result
from .stream import stream_steps, until_cancelled
from .tasks import TASKS, Inspection, Job, Request, UpscaleRequest, task_for
from .tasks.edit import SourceScenes, reading_of
from .tasks.personalize import take_frames
from .tasks.upscale import NO_UPSAMPLER, UPSCALE_MAX_OUTPUT, UPSCALE_MAX_SIDE
from .video_io import NormalizedClip, VideoInputError, VideoLimits, normalize_video
from .world.data import to_frames
from .world.instructions import InstructionReading

log = logging.getLogger(__name__)
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "models" / "shapes-v2"
VERSION = "0.1.0"


def available_devices() -> list[str]:
    """What --device accepts on this machine."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["auto", "cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(n)] if n else [])


def pick_device(name: str | None = None) -> torch.device:
    """The device named, checked against what this machine has (a name like 'tpu' or 'meta' is
    refused here with the list, not deep inside a model)."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    accepted = available_devices()
    if name not in accepted:
        hint = "" if torch.cuda.is_available() else " (this machine has no CUDA GPU)"
        raise RequestError(f"Unknown or unavailable device {name!r}{hint}; accepted here: {', '.join(accepted)}.")
    return torch.device(name)


class Engine:
    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        device: str | None = None,
        cache_dir: str | Path | None = "cache",
        outputs_dir: str | Path = "outputs",
        bf16: bool = True,
        limits: VideoLimits = VideoLimits(),
        loras: str | Path | None = None,
    ):
        """`loras`: a folder of style adapters (one subfolder each) besides the model folder's own
        loras/."""
        self.device = pick_device(device)
        fix_mmap_threshold()  # long jobs' peak memory stays flat (host_memory.py)
        # bf16 autocast for the transformer where the hardware runs it natively (see precision.py).
        self.bf16 = bf16 and bf16_is_fast(self.device)
        self.precision = "bf16" if self.bf16 else "fp32"
        self.models = ModelSet.load(model, self.device, [loras] if loras else [])
        self.styles = MergedAdapters(self.models.generator)
        if self.bf16 and self.device.type == "cuda":
            if self.models.loras:
                self.styles.base_digest()  # adapters record the base's fp32 weights: read them before the cast
            # On a GPU the transformers' weights are kept in bf16 too: half the memory and no cast of
            # every weight at every step. A CPU keeps fp32 weights (autocast there casts per op, and
            # the tiny CPU models' fp32 checkpoints stay exact).
            for role in ("generator", "editor", "upsampler", "personalizer", "animator"):
                if getattr(self.models, role) is not None:
                    keep_in_bf16(getattr(self.models, role))
        self.limits = limits
        self.upscale_max_side = UPSCALE_MAX_SIDE  # longer uploads are reduced to this before upscaling
        self.upscale_max_output = UPSCALE_MAX_OUTPUT  # output pixels x frames; longer clips are refused
        self.cache = TensorCache.open(cache_dir) if cache_dir else None  # never fatal: see cache.py
        self.outputs_dir = Path(outputs_dir)
        self._lock = threading.Lock()  # one job at a time
        # The studio reads prompts and instructions as they are typed, outside the job queue: the
        # rewriter gets its own lock, the analyser's memory has one of its own.
        self._reading = threading.Lock()
        self.scenes = SourceScenes()

    # -- the cache and the conditions tasks share -------------------------------------------------
    def cached(self, key: str, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The entry under `key` on this engine's device, computed (and stored) on a miss."""
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            return {k: v.to(self.device) for k, v in hit.items()}
        with torch.no_grad():
            value = compute()
        if self.cache is not None:
            self.cache.put(key, {k: v.cpu() for k, v in value.items()})
        return value

    def encode_prompt(self, prompt: str, role: str = "generator") -> dict[str, torch.Tensor]:
        """Text tokens for one prompt (or instruction) through the text encoder of the model in
        `role` (default the T2V generator), from the cache when that model has seen it before."""
        model = getattr(self.models, role)
        return self.cached(cache_key("text", self.models.ids[role], prompt), lambda: model.encode_prompts([prompt]))

    def prompt_encoder(self, role: str) -> Callable[[str], dict[str, torch.Tensor]]:
        return partial(self.encode_prompt, role=role)

    def limits_for(self, role: str = "generator") -> ModelLimits:
        """What the model in `role` can make: frames and frame size (the studio sets its controls'
        ranges from it; requests beyond it are refused naming it)."""
        return self.models.limits(role)

    def lora_names(self) -> list[str]:
        """The style adapters a T2V request may name."""
        return list(self.models.loras)

    def styled(self, name: str, scale: float = 1.0) -> tuple[Generator, dict]:
        """The T2V generator with the style adapter `name` merged at `scale` (a copy; the base is
        shared by every other request), and what a result made with it records. RequestError for
        a name the model does not have, with the ones it has."""
        adapter = self.models.loras.get(name)
        if adapter is None:
            raise unknown_lora(name, self.models.loras, self.models.folder)
        merged = self.styles.get(adapter, scale)
        matches = not adapter.base or adapter.base == self.styles.base_digest()
        if not matches:
            log.warning("LoRA %r was trained on other base weights (%s) than these", name, adapter.base)
        return merged, adapter.record(scale, matches)

    def load_source(self, path: str | Path, size: int = 64, fps: float = 8.0) -> NormalizedClip:
        """An upload as a generator will see it: decoded as a stream, upright, centre square,
        resized, resampled to the model's rate. Raises VideoInputError with a message for the user
        (a missing file and a folder too)."""
        return normalize_video(path, size, fps, self.limits)

    def encode_source(self, clip: NormalizedClip) -> torch.Tensor:
        """Normalised TAE latents (1, Cz, t, h, w) of a normalised clip, cached by its content."""

        def encode() -> dict[str, torch.Tensor]:
            x = torch.from_numpy(clip.frames.copy()).to(self.device).permute(3, 0, 1, 2)[None].float()
            return {"latents": self.models.tae.encode(x / 127.5 - 1)}

        key = cache_key("source", self.models.ids["generator"], clip.digest, clip.frames.shape, clip.fps)
        return self.cached(key, encode)["latents"]

    # -- reading what the user typed or uploaded (safe while a job runs) -------------------------
    def rewrite_text(self, prompt: str, image: bool = False) -> Rewrite | None:
        """The rewriter's canonical reading of a prompt (None: no rewriter, empty or over-long)."""
        if self.models.rewriter is None or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
            return None
        with self._reading:
            return self.models.rewriter([prompt], image=image)[0]

    def rewrite(self, req: Request) -> Rewrite | None:
        """What the generator will be given for this request's prompt (None: the prompt as typed).
        Over-long prompts are refused by validate(), so are not worth reading here."""
        return self.rewrite_text(req.prompt, image=getattr(req, "frames", 0) == 1) if req.rewrite else None

    def read_instruction(self, instruction: str, frames: np.ndarray | None = None) -> InstructionReading:
        """What an edit instruction asks for, with objects named by colour or shape alone resolved
        against what the analyser reads in the source's frames (when given)."""
        return reading_of(self, instruction, frames)

    def inspect(self, task: str, path: str | Path, **settings) -> Inspection:
        """An upload read the way `task` will read it (the studio shows it before anything runs).
        Raises VideoInputError or RequestError with a message for the user."""
        inspect = TASKS[task].inspect
        if inspect is None:
            raise RequestError(f"The {task} task takes no upload.")
        return inspect(self, path, **settings)

    def take_frames(self, path: str | Path) -> Inspection:
        """Frames of a clip (or an image) to pick a personalization reference from."""
        return take_frames(self, path)

    # -- running requests ---------------------------------------------------------------------
    def run(
        self,
        req: Request,
        cancel: CancelToken | None = None,
        out: str | Path | None = None,
        previews: bool = True,
        folder: str | Path | None = None,
    ) -> Iterator[Event]:
        """Run one request of any task, yielding Progress and Preview each step, then a Result or
        an Error. One path for every task: validate, normalise inputs, look up the cache, prepare,
        denoise, decode, write, record metadata.

        `out` names the result; without it the result gets a fresh name in `folder` (default the
        engine's outputs folder; the studio gives each signed-in user a folder of their own).

        One job at a time per engine, whoever calls (the studio's queue, a script, a test)."""
        try:
            task = task_for(req)
            m = self.models
            req.validate(self.limits_for(task.role))
            check_out(out, getattr(req, "frames", None))  # before work
            folder = Path(folder) if folder is not None else self.outputs_dir
            if out is None:
                check_out(folder / "check.mp4", None)  # the folder results go to, before work too
            with self._lock:
                job = task.job(self, req)
                check_out(out, job.frames)  # an upload's frame count is known once it is read
                cancel = cancel or CancelToken()
                scale = getattr(req, "upscale", 0)
                if not scale:
                    yield from self._execute(req, job, cancel, out, previews, folder)
                    return
                # Generation then upscaling as one job with one progress bar: both results are
                # kept (History lists both), the larger one names the clip it was made from.
                upscale = TASKS[UpscaleRequest.task]
                up_req = UpscaleRequest(video="", scale=scale, seed=req.seed)
                m.require("upsampler", NO_UPSAMPLER)
                span = (time.perf_counter(), job.steps + up_req.steps)
                base_out = None if out is None else Path(out).with_name(f"{Path(out).stem}.base{Path(out).suffix}")
                base = None
                for ev in self._execute(req, job, cancel, base_out, previews, folder, (0, *span)):
                    if isinstance(ev, Result):
                        base = ev  # not the job's result: its upscale is
                    else:
                        yield ev
                up_req = UpscaleRequest(video=str(base.path), scale=scale, seed=req.seed)
                up_job = upscale.job(self, up_req)
                up_job.meta["upscaled_from"] = {"name": base.path.name, "request": base.metadata["request"]}
                yield from self._execute(up_req, up_job, cancel, out, previews, folder, (job.steps, *span))
        except (RequestError, VideoInputError) as e:
            yield Error(str(e))
        except Cancelled:
            yield Error("Cancelled: the job was stopped; nothing was saved.", cancelled=True)
        except torch.OutOfMemoryError:
            yield Error("Out of memory: try fewer frames or a smaller size.")
        except OSError as e:
            yield Error(write_error(e))
        except Exception as e:  # noqa: BLE001 - a bug must not take the studio down with it
            log.exception("request failed")
            yield Error(f"Internal error ({type(e).__name__}: {e}). The studio keeps working; please report this.")

    def generate(self, req: Request, out: str | Path | None = None) -> Result:
        """Run to the end and return the Result (raises RequestError on failure)."""
        for event in self.run(req, out=out, previews=False):
            if isinstance(event, Result):
                return event
            if isinstance(event, Error):
                raise RequestError(event.message)
        raise RuntimeError("the engine ended without a result")

    def _execute(
        self,
        req: Request,
        job: Job,
        cancel: CancelToken,
        out,
        previews: bool,
        folder: Path,
        span: tuple[int, float, int] | None = None,
    ) -> Iterator[Event]:
        """The shared path: cache, prepare, denoise, decode, write. Yields progress and previews,
        then the Result. `span` (steps before this one, start time, steps in all) puts this job's
        steps on a longer job's progress bar."""
        start = time.perf_counter()
        offset, t0, total_all = span if span is not None else (0, start, job.steps)
        hit = self.cache.get(job.key) if self.cache is not None else None
        cached = hit is not None
        model = job.nets.get(job.model) or getattr(self.models, job.model)
        decode = job.decode or (lambda z: self.models.tae.decode(z, job.frames))
        frames: np.ndarray | Iterator[np.ndarray]
        if cached and "frames" in hit:
            frames = hit["frames"].numpy()
        elif cached:  # a streamed result keeps only its latents: decoded again, skipping the steps
            frames = decode(hit["latents"].to(self.device))
        else:
            prep: Prepared | None = job.prepare()
            events: list[Event] = []
            windows: list[torch.Tensor] = []
            before = offset  # steps of earlier windows (and jobs) on this progress bar

            def on_step(step: int, total: int, x1_hat: torch.Tensor) -> None:
                if cancel.cancelled:
                    raise Cancelled
                el, done = time.perf_counter() - t0, before + step
                events.append(Progress(done, total_all, el, el / done * (total_all - done)))
                if previews:
                    events.append(Preview(done, self.preview_frames(x1_hat, job.frames, job.shape)))

            while prep is not None:  # one window, or window after window (Prepared.then)
                # The loop runs as a generator of steps, so events reach the caller as they happen.
                run = prep
                net = (job.nets.get(run.model) or getattr(self.models, run.model)) if run.model else model
                latents = yield from stream_steps(
                    partial(denoise, net, run, self.device, autocast=self.bf16), on_step, events
                )
                if cancel.cancelled:
                    raise Cancelled
                windows.append(latents)
                before += len(run.times) - 1
                prep = run.then(windows) if run.then is not None else None
            latents = run.join(windows) if run.join is not None else windows[-1]
            decoded = decode(latents)
            # (T, H, W, 3), or its parts in order for a job that streams (written as they come).
            frames = to_frames(decoded[0]) if isinstance(decoded, torch.Tensor) else decoded
            if self.cache is not None:
                entry = {"latents": latents.cpu()}
                if isinstance(frames, np.ndarray):
                    entry["frames"] = torch.from_numpy(frames)
                self.cache.put(job.key, entry)
        if not isinstance(frames, np.ndarray):  # decoded as it is written: Stop still reaches it
            frames = until_cancelled(frames, cancel)
        if cancel.cancelled:  # stopped after the last step or during a cache hit: nothing is written
            raise Cancelled
        meta = {"request": req.to_dict()} | job.meta
        meta |= {
            "model": self.models.ids[job.model],
            "engine": VERSION,
            "device": str(self.device),
            "precision": self.precision,
            "seconds": round(time.perf_counter() - start, 3),
            "cached": cached,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        path = write_result(frames, job.frames, req, meta, out, folder, job.fps, job.audio_from, job.sidecars)
        meta["seconds"] = round(time.perf_counter() - start, 3)
        yield Result(path=path, metadata=meta, held=frames if isinstance(frames, np.ndarray) else None, cached=cached)

    def preview_frames(self, latents: torch.Tensor, frames: int, shape: tuple[int, int]) -> np.ndarray:
        """(T', H, W, 3) uint8 from the linear latent -> RGB map: no decoder, next to free."""
        rgb = self.models.tae.preview(latents.float())[0]  # (3, t, h, w)
        rgb = F.interpolate(rgb[None], size=(rgb.shape[1], *shape), mode="nearest")[0]
        return to_frames(rgb)
