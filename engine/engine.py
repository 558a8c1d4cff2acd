"""The Engine: created once per process, holds the models on their device, runs one request at a
time into a stream of events (progress, previews, result, error), with a content cache on disk.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .cache import TensorCache, cache_key
from .checkpoint import config_from_dict, file_digest, load_weights, read_config
from .host_memory import fix_mmap_threshold
from .models.generator import Generator, GeneratorConfig
from .models.rewrite import PromptRewriter, Rewrite, RewriterConfig
from .models.tae import TAE, TAEConfig
from .models.upsampler import SkipDecoder, encode_tiled
from .precision import bf16_is_fast
from .reference import MAX_BYTES as REFERENCE_MAX_BYTES
from .reference import PreparedReference, prepare_reference
from .requests import (
    MAX_PROMPT_CHARS,
    Cancelled,
    CancelToken,
    EditRequest,
    Error,
    Event,
    PersonalizeRequest,
    Preview,
    Progress,
    Request,
    RequestError,
    Result,
    T2VRequest,
    UpscaleRequest,
)
from .tasks import Prepared, denoise, prepare_edit, prepare_personalize, prepare_sdedit, prepare_t2v, prepare_upscale
from .upscale_data import EnlargedClip
from .video_io import (
    NormalizedClip,
    VideoInputError,
    VideoLimits,
    fit_clip,
    is_still_image,
    normalize_video,
    probe,
    write_png,
    write_video,
)
from .world.analyse import source_scene
from .world.data import to_frames
from .world.edits import TASKS
from .world.instructions import InstructionReading, read_instruction
from .world.scene import Scene

log = logging.getLogger(__name__)
EDIT_WINDOW_FRAMES = 32  # what the edit model was trained on; longer sources go in overlapping windows
# The upsampler was trained on 128 px crops of 16 frames (16x16 latents, 4 latent frames): it runs
# in tiles of that size, overlapping by half, whatever the clip's size and length.
UPSCALE_WINDOW, UPSCALE_OVERLAP = (4, 16, 16), (2, 8, 8)
UPSCALE_MAX_SIDE = 256  # input pixels on the long side (4x: 1024 out); larger uploads are reduced first
UPSCALE_MODEL_SCALE = 4  # what the upsampler learned; 2x is its 4x result area-halved
# An upscale holds nothing at the larger size whole (the input is enlarged, encoded and decoded a
# span at a time and each decoded part is written as it comes), so its memory is the same at any
# length. What bounds a job is time: about 8 microseconds per output pixel and frame on our 2-core
# CPU (17 s for 32 frames of 256x256), so 150 million is about 20 minutes of the engine, which
# serves one job at a time: 2288 frames of 256x256 (4.8 minutes at 8 fps), or 254 of 1024x576.
UPSCALE_SECONDS_PER_OUTPUT = 8e-6
UPSCALE_MAX_OUTPUT = 150_000_000  # output pixels x frames per upscale job
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "models" / "shapes-v2"
VERSION = "0.1.0"


@dataclass
class _Job:
    """What one request hands the shared path: its cache key, how to prepare it on a miss, the
    model that denoises it, and what to write."""

    key: str
    prepare: Callable[[], Prepared]
    model: Generator
    frames: int
    shape: tuple[int, int]  # the result's (height, width)
    fps: float
    steps: int
    meta: dict  # the task's own metadata (how the prompt or instruction was read, the source)
    audio_from: Path | None = None  # an upload whose audio goes into the result
    # Latents (1, Cz, t, h, w) -> pixels (1, 3, T, H, W) in [-1, 1], or straight to uint8 frames
    # (T, H, W, 3), or to its parts in order (written as they come: the clip is never whole in
    # memory, and the cache keeps only the latents); None: the TAE's decoder.
    decode: Callable[[torch.Tensor], torch.Tensor | np.ndarray | Iterator[np.ndarray]] | None = None
    # Clips written beside the result: whole, or a function giving one in parts.
    sidecars: dict[str, np.ndarray | Callable[[], Iterator[np.ndarray]]] = field(default_factory=dict)


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
    ):
        self.model_dir = Path(model)
        self.device = pick_device(device)
        fix_mmap_threshold()  # long jobs' peak memory stays flat (host_memory.py)
        # bf16 autocast for the transformer where the hardware runs it natively (see precision.py).
        self.bf16 = bf16 and bf16_is_fast(self.device)
        self.precision = "bf16" if self.bf16 else "fp32"
        self.tae = self._load(self.model_dir / "tae", TAE, TAEConfig)
        self.generator = self._load(self.model_dir / "t2v", Generator, GeneratorConfig)
        # The prompt rewriter is optional: a model folder without one runs prompts as typed.
        has_rewriter = (self.model_dir / "rewrite" / "config.json").is_file()
        self.rewriter = self._load(self.model_dir / "rewrite", PromptRewriter, RewriterConfig) if has_rewriter else None
        parts = ("tae", "t2v", "rewrite") if has_rewriter else ("tae", "t2v")
        self.model_id = f"{self.model_dir.name}@" + "".join(file_digest(self.model_dir / p)[:8] for p in parts)
        # The edit model is optional too: without one, the Edit tab offers SDEdit only.
        has_editor = (self.model_dir / "edit" / "config.json").is_file()
        self.editor = self._load(self.model_dir / "edit", Generator, GeneratorConfig) if has_editor else None
        self.editor_id = f"{self.model_id}+{file_digest(self.model_dir / 'edit')[:8]}" if has_editor else ""
        # The upsampler too: its transformer and its decoder (which also sees the enlarged input).
        up, updec = self.model_dir / "upscale", self.model_dir / "upscale-decoder"
        has_upsampler = (up / "config.json").is_file() and (updec / "config.json").is_file()
        self.upsampler = self._load(up, Generator, GeneratorConfig) if has_upsampler else None
        self.updecoder = self._load(updec, SkipDecoder, TAEConfig) if has_upsampler else None
        self.upsampler_id = f"{self.model_id}+{file_digest(up)[:8]}{file_digest(updec)[:8]}" if has_upsampler else ""
        # And personalization: the T2V generator grown with a vision encoder for the reference.
        pt = self.model_dir / "personalize"
        has_pt2v = (pt / "config.json").is_file()
        self.personalizer = self._load(pt, Generator, GeneratorConfig) if has_pt2v else None
        self.personalizer_id = f"{self.model_id}+{file_digest(pt)[:8]}" if has_pt2v else ""
        self.limits = limits
        self.upscale_max_side = UPSCALE_MAX_SIDE  # longer uploads are reduced to this before upscaling
        self.upscale_max_output = UPSCALE_MAX_OUTPUT  # output pixels x frames; longer clips are refused
        self.cache = TensorCache.open(cache_dir) if cache_dir else None  # never fatal: see cache.py
        self.outputs_dir = Path(outputs_dir)
        self._lock = threading.Lock()
        self._scenes: dict[str, Scene | None] = {}  # what the analyser read in recent sources

    def _model_ids(self) -> dict[int, str]:
        """Each task model's id (names cache entries and results), by the model object's id."""
        models = (
            (self.editor, self.editor_id),
            (self.upsampler, self.upsampler_id),
            (self.personalizer, self.personalizer_id),
        )
        return {id(m): i for m, i in models if m is not None}

    def _load(self, path: Path, cls, cfg_cls):
        cfg = config_from_dict(cfg_cls, read_config(path)["config"])
        return load_weights(path, cls(cfg)).to(self.device).eval().requires_grad_(False)

    # -- conditioning -------------------------------------------------------------------------
    def encode_prompt(self, prompt: str, model: Generator | None = None) -> dict[str, torch.Tensor]:
        """Text tokens for one prompt (or instruction) through `model`'s text encoder (default: the
        T2V generator's), from the cache when that model has seen it before."""
        model = model or self.generator
        owner = self._model_ids().get(id(model))
        key = cache_key("text", owner or self.model_id, prompt)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            return {k: v.to(self.device) for k, v in hit.items()}
        with torch.no_grad():
            out = model.encode_prompts([prompt])
        if self.cache is not None:
            self.cache.put(key, out)
        return out

    def rewrite(self, req: T2VRequest) -> Rewrite | None:
        """What the generator will be given for this request's prompt (None: the prompt as typed).
        Over-long prompts are refused by validate(), so are not worth reading here."""
        return self.rewrite_text(req.prompt, image=req.frames == 1) if req.rewrite else None

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
            req.validate(size_multiple=self.tae.cfg.spatial_down * self.generator.cfg.dit.patch[1])
            _check_out(out, req.frames if isinstance(req, T2VRequest | PersonalizeRequest) else None)  # before work
            folder = Path(folder) if folder is not None else self.outputs_dir
            if out is None:
                _check_out(folder / "check.mp4", None)  # the folder results go to, before work too
            with self._lock:
                job = self._job(req)
                _check_out(out, job.frames)  # an upload's frame count is known once it is read
                cancel = cancel or CancelToken()
                scale = 0 if isinstance(req, UpscaleRequest) else req.upscale
                if not scale:
                    yield (yield from self._execute(req, job, cancel, out, previews, folder))
                    return
                # Generation then upscaling as one job with one progress bar: both results are
                # kept (History lists both), the larger one names the clip it was made from.
                up_req = UpscaleRequest(video="", scale=scale, seed=req.seed)
                self._need_upsampler()
                span = (time.perf_counter(), job.steps + up_req.steps)
                base_out = None if out is None else Path(out).with_name(f"{Path(out).stem}.base{Path(out).suffix}")
                base = yield from self._execute(req, job, cancel, base_out, previews, folder, (0, *span))
                up_req = replace(up_req, video=str(base.path))
                up_job = self._job_upscale(up_req)
                up_job.meta["upscaled_from"] = {"name": base.path.name, "request": base.metadata["request"]}
                yield (yield from self._execute(up_req, up_job, cancel, out, previews, folder, (job.steps, *span)))
        except (RequestError, VideoInputError) as e:
            yield Error(str(e))
        except Cancelled:
            yield Error("Cancelled: the job was stopped; nothing was saved.", cancelled=True)
        except torch.OutOfMemoryError:
            yield Error("Out of memory: try fewer frames or a smaller size.")
        except OSError as e:
            yield Error(_write_error(e))
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

    def _job(self, req: Request) -> _Job:
        if isinstance(req, EditRequest):
            return self._job_edit(req)
        if isinstance(req, UpscaleRequest):
            return self._job_upscale(req)
        if isinstance(req, PersonalizeRequest):
            return self._job_personalize(req)
        return self._job_t2v(req)

    def _need_upsampler(self) -> None:
        if self.upsampler is None:
            raise RequestError(
                f"The model folder {self.model_dir} has no upsampler ('upscale' and 'upscale-decoder' folders),"
                " so clips cannot be upscaled; use a model folder that has one."
            )

    def check_upscale_size(self, path: str | Path) -> None:
        """Refuse, from the header alone (nothing decoded), an upload too long to upscale at its
        size; raises RequestError with what would fit. A header that says nothing about length
        passes here, and is checked again once decoded (see _job_upscale)."""
        if Path(path).is_file() and is_still_image(Path(path)):
            return  # one frame of at most upscale_max_side: always fits
        head = probe(path, self.limits)
        k = min(1.0, self.upscale_max_side / max(head["width"], head["height"], 1))
        w, h = max(1, round(head["width"] * k)), max(1, round(head["height"] * k))
        self._check_upscale_output(Path(path).name, head["frames"], w, h, head["fps"])

    def _check_upscale_output(self, name: str, frames: int, w: int, h: int, fps: float) -> None:
        k = UPSCALE_MODEL_SCALE  # the model works at 4x whatever the scale asked for
        per_frame = w * k * h * k
        if frames * per_frame <= self.upscale_max_output:
            return
        fit = self.upscale_max_output // per_frame
        raise RequestError(
            f"{name} is too long to upscale at its size: {frames} frames of {w}x{h} would make"
            f" {w * k}x{h * k} frames (about {max(1, round(frames * per_frame * UPSCALE_SECONDS_PER_OUTPUT / 60))}"
            " minutes of upscaling on a 2-core CPU)."
            f" An upscale takes up to {fit} frames of this size ({fit / fps:.1f} s at {fps:.4g} fps):"
            " trim the clip (or make it smaller) and upscale it in parts."
        )

    def _job_upscale(self, req: UpscaleRequest) -> _Job:
        """Movie Gen's spatial upsampler: the input enlarged by bicubic in pixel space, encoded,
        its latents on the transformer's extra channels, the result decoded with the enlarged input
        beside the latents. The bicubic enlargement is written beside the result for comparison."""
        self._need_upsampler()
        self.check_upscale_size(req.video)  # before decoding: a long upload is refused at once
        clip = fit_clip(req.video, self.upscale_max_side, None, self.limits)
        frames, h, w = clip.frames.shape[:3]
        self._check_upscale_output(Path(req.video).name, frames, w, h, clip.fps)  # headers can lie
        k = UPSCALE_MODEL_SCALE
        m = self.tae.cfg.spatial_down * self.upsampler.cfg.dit.patch[1]  # latents must fill whole patches
        # The input enlarged by bicubic, its edges replicated out to whole patches (the result is
        # cropped back), made a span at a time as the encoder and decoder read it: nothing at the
        # larger size is held whole, so memory is the same at any length.
        enlarged = EnlargedClip(clip.frames, k, (-(-h * k // m) * m, -(-w * k // m) * m))

        def decode(latents: torch.Tensor) -> Iterator[np.ndarray]:
            # uint8 frames a part at a time, blended as they go (2x: the 4x result area-reduced).
            z = self.tae.denormalize(latents)
            return self.updecoder.iter_frames(z, enlarged, (h * k, w * k), k // req.scale)

        def bicubic() -> Iterator[np.ndarray]:
            if req.scale == k:
                return enlarged.parts()
            small = EnlargedClip(clip.frames, req.scale)
            return small.parts()

        def prepare() -> Prepared:
            key = cache_key("enlarged", self.upsampler_id, clip.digest, clip.frames.shape, clip.fps)
            hit = self.cache.get(key) if self.cache is not None else None
            cond = hit["latents"].to(self.device) if hit is not None else encode_tiled(self.tae, enlarged)
            if hit is None and self.cache is not None:
                self.cache.put(key, {"latents": cond.cpu()})
            encode = partial(self.encode_prompt, model=self.upsampler)
            return prepare_upscale(req, cond, encode, frames, UPSCALE_WINDOW, UPSCALE_OVERLAP)

        source_meta = {"name": Path(req.video).name, "sha256": clip.digest, "summary": clip.summary} | clip.info
        out_h, out_w = h * req.scale, w * req.scale
        return _Job(
            key=cache_key("upscale", self.upsampler_id, self.precision, req.to_dict() | {"video": clip.digest}),
            prepare=prepare,
            model=self.upsampler,
            frames=frames,
            shape=(out_h, out_w),
            fps=clip.fps,
            steps=req.steps,
            meta={"source": source_meta, "size": [out_w, out_h], "input_size": [w, h]},
            audio_from=Path(req.video) if frames > 1 else None,
            decode=decode,
            sidecars={"bicubic": bicubic},
        )

    def load_reference(self, path: str | Path) -> PreparedReference:
        """A reference image as the personalization model will see it: the character found on its
        plain background, centred at r = 0.3. Raises ReferenceError (a VideoInputError) with a
        message for the user when it cannot be read."""
        size = self.personalizer.cfg.reference.size if self.personalizer is not None else 64
        # The upload limit holds here too (the reference's own limit when that is lower).
        return prepare_reference(path, size, max_bytes=min(self.limits.max_bytes, REFERENCE_MAX_BYTES))

    def _job_personalize(self, req: PersonalizeRequest) -> _Job:
        """Movie Gen PT2V: the prepared reference's tokens beside the prompt's. The reference as the
        model saw it is written beside the result, so the result keeps it whatever happens to
        the upload or the saved character."""
        if self.personalizer is None:
            raise RequestError(
                f"The model folder {self.model_dir} has no personalization model (a 'personalize' folder);"
                " use a model folder that has one."
            )
        ref = self.load_reference(req.reference)
        image = torch.from_numpy(ref.image.copy()).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
        image = image.to(self.device)  # (1, 3, S, S)
        model = self.personalizer
        encode = partial(self.encode_prompt, model=model)
        # What the model sees decides the result (and its cache entry), not the file or its name: a
        # result's own prepared reference reproduces it.
        seen = hashlib.sha256(ref.image.tobytes()).hexdigest()
        given = req.to_dict() | {"reference": seen, "reference_name": ""}
        name = req.reference_name or Path(req.reference).name
        ref_meta = {"name": name, "file": Path(req.reference).name, "sha256": ref.digest, "summary": ref.summary}
        ref_meta["prepared_sha256"] = seen
        return _Job(
            key=cache_key("personalize", self.personalizer_id, self.precision, given),
            prepare=lambda: prepare_personalize(req, self.tae, encode, model.with_reference, image),
            model=model,
            frames=req.frames,
            shape=(req.size, req.size),
            steps=req.steps,
            fps=req.fps,
            meta={"reference": ref_meta},
            sidecars={"reference": ref.image[None]},
        )

    def _job_t2v(self, req: T2VRequest) -> _Job:
        rewrite = self.rewrite(req)
        given = replace(req, prompt=rewrite.text) if rewrite is not None else req
        return _Job(
            key=cache_key("t2v", self.model_id, self.precision, req.to_dict()),
            prepare=lambda: prepare_t2v(given, self.tae, self.encode_prompt),
            model=self.generator,
            frames=req.frames,
            shape=(req.size, req.size),
            steps=req.steps,
            fps=req.fps,
            meta={"rewrite": rewrite.to_dict() if rewrite is not None else None},
        )

    def _job_edit(self, req: EditRequest) -> _Job:
        clip = self.load_source(req.video, req.size, req.fps)
        frames = len(clip.frames)
        src = self.encode_source(clip)  # (1, Cz, t, h, w)
        window = self.tae.cfg.latent_shape(EDIT_WINDOW_FRAMES, req.size, req.size)[1]
        source_meta = {"name": Path(req.video).name, "sha256": clip.digest, "summary": clip.summary} | clip.info
        given = req.to_dict() | {"video": clip.digest}  # the content, not the file's name, identifies it
        if req.mode == "sdedit":
            rewrite = self.rewrite_text(req.prompt, image=frames == 1) if req.rewrite else None
            prompt = rewrite.text if rewrite is not None else req.prompt
            return _Job(
                key=cache_key("sdedit", self.model_id, self.precision, given),
                prepare=lambda: prepare_sdedit(req, src, prompt, self.encode_prompt, frames, window),
                model=self.generator,
                frames=frames,
                shape=(req.size, req.size),
                steps=req.steps,
                fps=clip.fps,
                meta={"rewrite": rewrite.to_dict() if rewrite is not None else None, "source": source_meta},
                audio_from=Path(req.video),
            )
        if self.editor is None:
            raise RequestError(
                f"The model folder {self.model_dir} has no edit model (an 'edit' folder), so instructions cannot be"
                " followed; describe the result instead (the SDEdit mode), or use a model folder that has one."
            )
        reading = self.read_instruction(req.instruction, clip.frames)
        task = reading.task if req.edit_task == "auto" else req.edit_task
        if task is None:
            raise RequestError(
                "Could not tell which kind of edit this is. Say it as one of: recolor ('make the circle yellow'),"
                " background ('change the background to white'), reshape ('turn the circle into a star'), remove"
                " ('remove the green star'), add ('add a yellow square moving up'), motion ('make the circle move"
                " up'), or pick the task yourself."
            )
        text = reading.canonical if req.rewrite and reading.canonical else req.instruction
        encode = partial(self.encode_prompt, model=self.editor)
        return _Job(
            key=cache_key("edit", self.editor_id, self.precision, given),
            prepare=lambda: prepare_edit(req, src, text, TASKS.index(task), encode, frames, window),
            model=self.editor,
            frames=frames,
            shape=(req.size, req.size),
            steps=req.steps,
            fps=clip.fps,
            meta={"reading": reading.to_dict(), "edit_task": task, "given": text, "source": source_meta},
            audio_from=Path(req.video),
        )

    def _execute(
        self,
        req: Request,
        job: _Job,
        cancel: CancelToken,
        out,
        previews: bool,
        folder: Path,
        span: tuple[int, float, int] | None = None,
    ) -> Iterator[Event]:
        """The shared path: cache, prepare, denoise, decode, write. Yields progress and previews,
        returns the Result. `span` (steps before this one, start time, steps in all) puts this
        job's steps on a longer job's progress bar."""
        start = time.perf_counter()
        offset, t0, total_all = span if span is not None else (0, start, job.steps)
        hit = self.cache.get(job.key) if self.cache is not None else None
        cached = hit is not None
        frames: np.ndarray | Iterator[np.ndarray]
        if cached and "frames" in hit:
            frames = hit["frames"].numpy()
        elif cached:  # a streamed result keeps only its latents: decoded again, skipping the steps
            frames = job.decode(hit["latents"].to(self.device))
        else:
            prep = job.prepare()
            events: list[Event] = []

            def on_step(step: int, total: int, x1_hat: torch.Tensor) -> None:
                if cancel.cancelled:
                    raise Cancelled
                el, done = time.perf_counter() - t0, offset + step
                events.append(Progress(done, total_all, el, el / done * (total_all - done)))
                if previews:
                    events.append(Preview(done, self.preview_frames(x1_hat, job.frames, job.shape)))

            # The loop runs as a generator of steps, so events reach the caller as they happen.
            latents = yield from _stream(
                lambda cb: denoise(job.model, prep, self.device, cb, self.bf16), on_step, events
            )
            if cancel.cancelled:
                raise Cancelled
            decode = job.decode or (lambda z: self.tae.decode(z, job.frames))
            decoded = decode(latents)
            # (T, H, W, 3), or its parts in order for a job that streams (written as they come).
            frames = to_frames(decoded[0]) if isinstance(decoded, torch.Tensor) else decoded
            if self.cache is not None:
                entry = {"latents": latents.cpu()}
                if isinstance(frames, np.ndarray):
                    entry["frames"] = torch.from_numpy(frames)
                self.cache.put(job.key, entry)
        if not isinstance(frames, np.ndarray):  # decoded as it is written: Stop still reaches it
            frames = _until_cancelled(frames, cancel)
        meta = {"request": req.to_dict()} | job.meta
        model_id = self._model_ids().get(id(job.model))
        meta |= {
            "model": model_id or self.model_id,
            "engine": VERSION,
            "device": str(self.device),
            "precision": self.precision,
            "seconds": round(time.perf_counter() - start, 3),
            "cached": cached,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        path = self._write(frames, job.frames, req, meta, out, folder, job.fps, job.audio_from, job.sidecars)
        meta["seconds"] = round(time.perf_counter() - start, 3)
        return Result(path=path, metadata=meta, held=frames if isinstance(frames, np.ndarray) else None, cached=cached)

    # -- sources and instructions (edits) -------------------------------------------------------
    def load_source(self, path: str | Path, size: int = 64, fps: float = 8.0) -> NormalizedClip:
        """An upload as the model will see it: decoded as a stream, upright, centre square, resized,
        resampled to the model's rate. Raises VideoInputError with a message for the user (a missing
        file and a folder too)."""
        return normalize_video(path, size, fps, self.limits)

    def encode_source(self, clip: NormalizedClip) -> torch.Tensor:
        """Normalised TAE latents (1, Cz, t, h, w) of a normalised clip, cached by its content."""
        key = cache_key("source", self.model_id, clip.digest, clip.frames.shape, clip.fps)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            return hit["latents"].to(self.device)
        x = torch.from_numpy(clip.frames.copy()).to(self.device).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        z = self.tae.encode(x)  # (1, Cz, t, h, w)
        if self.cache is not None:
            self.cache.put(key, {"latents": z.cpu()})
        return z

    def read_instruction(self, instruction: str, frames: np.ndarray | None = None) -> InstructionReading:
        """What the instruction asks for; with the source's frames, objects named by colour or shape
        alone are resolved against what the analyser reads in them (world clips)."""
        if frames is None:
            return read_instruction(instruction)
        # The studio reads as you type: analyse each source once (0.3 s for 56 frames), not per key.
        key = hashlib.sha256(frames.tobytes()).hexdigest()
        if key not in self._scenes:
            if len(self._scenes) >= 32:
                self._scenes.pop(next(iter(self._scenes)))
            self._scenes[key] = source_scene(frames)
        return read_instruction(instruction, self._scenes[key])

    def rewrite_text(self, prompt: str, image: bool = False) -> Rewrite | None:
        if self.rewriter is None or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
            return None
        return self.rewriter([prompt], image=image)[0]

    def _write(
        self,
        frames: np.ndarray | Iterator[np.ndarray],
        count: int,
        req: Request,
        meta: dict,
        out: str | Path | None,
        folder: Path,
        fps: float,
        audio_from: Path | None,
        sidecars: dict[str, np.ndarray | Callable[[], Iterator[np.ndarray]]] | None = None,
    ) -> Path:
        """Write a result of `count` frames: the clip (T, H, W, 3), or its parts in order, each
        encoded as it comes (a streamed job: the clip is never whole in memory)."""
        image = count == 1 and (out is None or Path(out).suffix.lower() == ".png")
        if image and not isinstance(frames, np.ndarray):
            frames = np.concatenate(list(frames))  # one frame
        if out is None:  # a fresh name in the folder
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            out = Path(folder) / f"{stamp}-{req.task}-{req.seed}{'.png' if image else '.mp4'}"
        out = Path(out)
        written: list[Path] = []  # everything of this result, removed again if any part fails
        try:
            # Clips that go with the result (the upscaler's bicubic baseline), named after it.
            for name, clip in (sidecars or {}).items():
                # A still beside a clip (a reference) is a PNG; a callable gives a clip of the
                # result's length in parts.
                still = image or (len(clip) if isinstance(clip, np.ndarray) else count) == 1
                clip = clip if isinstance(clip, np.ndarray) else clip()
                side = out.with_name(f"{out.stem}.{name}{'.png' if still else out.suffix}")
                written.append(side)
                if still:
                    write_png(side, clip[0] if isinstance(clip, np.ndarray) else next(iter(clip))[0])
                else:
                    write_video(side, clip, fps, {}, count=count)
                meta.setdefault("files", {})[name] = side.name
            written.append(out)
            # The middle frame (a thumbnail for history lists), kept as the parts go by.
            mid: list[np.ndarray] = []
            if image:
                write_png(out, frames[0], meta)
                mid.append(frames[0])
            else:
                write_video(out, _keep_frame(frames, count // 2, mid), fps, meta, audio_from=audio_from, count=count)
            # At least 128 px; nearest keeps it crisp.
            k = max(1, 128 // max(mid[0].shape[:2]))
            thumb = out.with_name(out.stem + ".thumb.png")
            written.append(thumb)
            write_png(thumb, mid[0].repeat(k, 0).repeat(k, 1))
            # The JSON last, atomically: History lists a result only once it is whole.
            sidecar = out.with_suffix(".json")
            written.append(sidecar)
            _write_atomic(sidecar, (json.dumps(meta, indent=2) + "\n").encode())
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return out

    def preview_frames(self, latents: torch.Tensor, frames: int, shape: tuple[int, int]) -> np.ndarray:
        """(T', H, W, 3) uint8 from the linear latent -> RGB map: no decoder, next to free."""
        rgb = self.tae.preview(latents.float())[0]  # (3, t, h, w)
        rgb = F.interpolate(rgb[None], size=(rgb.shape[1], *shape), mode="nearest")[0]
        return to_frames(rgb)


def _until_cancelled(parts: Iterable[np.ndarray], cancel: CancelToken) -> Iterator[np.ndarray]:
    """The parts of a clip decoded as it is written, ending the job (Cancelled) once it is stopped:
    what was written of it is removed (see _write)."""
    for part in parts:
        if cancel.cancelled:
            raise Cancelled
        yield part


def _keep_frame(frames: np.ndarray | Iterable[np.ndarray], index: int, into: list) -> Iterator[np.ndarray]:
    """The clip's parts as they come, with frame `index` copied into `into` on the way."""
    parts = [frames] if isinstance(frames, np.ndarray) else frames
    at = 0
    for part in parts:
        if at <= index < at + len(part):
            into.append(part[index - at].copy())
        at += len(part)
        yield part


def _stream(run, on_step, events: list) -> Iterator[Event]:
    """Run `run(callback)` on a worker thread, yielding the events each step appends.

    The sampler stays an ordinary loop with a callback. Each step waits until the caller has
    handled that step's events, so a cancel set while handling them stops the very next step.
    """
    from queue import Queue

    q: Queue = Queue()
    result: dict = {}
    abandoned = threading.Event()  # the caller stopped listening (closed the generator)

    def target() -> None:
        def cb(step, total, x1_hat):
            on_step(step, total, x1_hat)
            while events:
                q.put(events.pop(0))
            q.join()  # back-pressure: wait for the consumer
            if abandoned.is_set():
                raise Cancelled

        try:
            with torch.no_grad():  # grad mode is per thread
                result["latents"] = run(cb)
        except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread
            result["error"] = e
        q.put(None)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    finished = False
    try:
        while (item := q.get()) is not None:
            try:
                yield item
            finally:
                q.task_done()
        q.task_done()
        finished = True
    finally:
        if not finished:  # drain, so the worker wakes up, sees `abandoned` and stops
            abandoned.set()
            while True:
                item = q.get()
                q.task_done()
                if item is None:
                    break
        th.join()
    if "error" in result:
        raise result["error"]
    return result["latents"]


OUTPUT_SUFFIXES = (".mp4", ".png")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file and rename: a kill leaves the old file or the new one, and a
    failure leaves no temporary file behind."""
    tmp = path.with_name(path.name + ".part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_error(e: OSError) -> str:
    """The real cause of a failed write, for the user."""
    where = f" to {e.filename}" if getattr(e, "filename", None) else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"Could not write the result{where}: the disk is full. Free some disk space and try again."
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Could not write the result{where}: permission denied (a read-only or protected place)."
    return f"Could not write the result{where} ({e.strerror or e})."


def _check_out(out: str | Path | None, frames: int | None) -> None:
    """Refuse an output name the engine cannot honour, before anything runs (frames None: not
    known yet)."""
    if out is None:
        return
    out = Path(out)
    if out.is_dir():
        raise RequestError(f"Cannot write {str(out)!r}: it is a folder; give a file name such as {out / 'out.mp4'}.")
    folder = out.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RequestError(f"Cannot write {str(out)!r}: {str(existing)!r} is a file, not a folder.")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise RequestError(f"Cannot write {str(out)!r}: the folder {str(existing)!r} is not writable.")
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise RequestError(
            f"Cannot write {Path(out).name!r}: outputs are .mp4 (H.264, plays in a browser) or .png (with --frames 1)."
        )
    if suffix == ".png" and frames is not None and frames != 1:
        raise RequestError("A .png output holds one frame: use --frames 1 (or an image source), or an .mp4 output.")
