"""The Engine: created once per process, holds the models on their device, runs one request at a
time into a stream of events (progress, previews, result, error), with a content cache on disk.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .cache import TensorCache, cache_key
from .checkpoint import config_from_dict, file_digest, load_weights, read_config
from .models.generator import Generator, GeneratorConfig
from .models.rewrite import PromptRewriter, Rewrite, RewriterConfig
from .models.tae import TAE, TAEConfig
from .precision import bf16_is_fast
from .requests import (
    MAX_PROMPT_CHARS,
    Cancelled,
    CancelToken,
    Error,
    Event,
    Preview,
    Progress,
    RequestError,
    Result,
    T2VRequest,
)
from .tasks import denoise, prepare_t2v
from .video_io import write_png, write_video
from .world.data import to_frames

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "models" / "shapes-v2"
VERSION = "0.1.0"


def pick_device(name: str | None = None) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RequestError("--device cuda was asked for, but this machine has no CUDA GPU; use --device cpu.")
    return dev


class Engine:
    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        device: str | None = None,
        cache_dir: str | Path | None = "cache",
        outputs_dir: str | Path = "outputs",
        bf16: bool = True,
    ):
        self.model_dir = Path(model)
        self.device = pick_device(device)
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
        self.cache = TensorCache(cache_dir) if cache_dir else None
        self.outputs_dir = Path(outputs_dir)
        self._lock = threading.Lock()

    def _load(self, path: Path, cls, cfg_cls):
        cfg = config_from_dict(cfg_cls, read_config(path)["config"])
        return load_weights(path, cls(cfg)).to(self.device).eval().requires_grad_(False)

    # -- conditioning -------------------------------------------------------------------------
    def encode_prompt(self, prompt: str) -> dict[str, torch.Tensor]:
        """Text tokens for one prompt, from the cache when this model has seen it before."""
        key = cache_key("text", self.model_id, prompt)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            return {k: v.to(self.device) for k, v in hit.items()}
        with torch.no_grad():
            out = self.generator.encode_prompts([prompt])
        if self.cache is not None:
            self.cache.put(key, out)
        return out

    def rewrite(self, req: T2VRequest) -> Rewrite | None:
        """What the generator will be given for this request's prompt (None: the prompt as typed)."""
        if not req.rewrite or self.rewriter is None or not req.prompt.strip():
            return None
        if len(req.prompt) > MAX_PROMPT_CHARS:  # refused by validate(); not worth reading (studio reads as you type)
            return None
        return self.rewriter([req.prompt], image=req.frames == 1)[0]

    # -- running requests ---------------------------------------------------------------------
    def run(
        self, req: T2VRequest, cancel: CancelToken | None = None, out: str | Path | None = None, previews: bool = True
    ) -> Iterator[Event]:
        """Run one request, yielding Progress and Preview each step, then a Result or an Error.

        One job at a time per engine, whoever calls (the studio's queue, a script, a test)."""
        try:
            req.validate(size_multiple=self.tae.cfg.spatial_down * self.generator.cfg.dit.patch[1])
            _check_out(out, req)  # before any work: a wrong name should not cost a generation
            with self._lock:
                yield from self._run_t2v(req, cancel or CancelToken(), out, previews)
        except RequestError as e:
            yield Error(str(e))
        except Cancelled:
            yield Error("Cancelled: the job was stopped; nothing was saved.", cancelled=True)
        except torch.OutOfMemoryError:
            yield Error("Out of memory: try fewer frames or a smaller size.")
        except OSError as e:
            yield Error(f"Could not write the result ({e.strerror or e}). Free some disk space and try again.")

    def generate(self, req: T2VRequest, out: str | Path | None = None) -> Result:
        """Run to the end and return the Result (raises RequestError on failure)."""
        for event in self.run(req, out=out, previews=False):
            if isinstance(event, Result):
                return event
            if isinstance(event, Error):
                raise RequestError(event.message)
        raise RuntimeError("the engine ended without a result")

    def _run_t2v(self, req: T2VRequest, cancel: CancelToken, out, previews: bool) -> Iterator[Event]:
        start = time.perf_counter()
        rewrite = self.rewrite(req)
        key = cache_key("t2v", self.model_id, self.precision, req.to_dict())
        hit = self.cache.get(key) if self.cache is not None else None
        cached = hit is not None
        if cached:
            frames = hit["frames"].numpy()
        else:
            given = replace(req, prompt=rewrite.text) if rewrite is not None else req
            prep = prepare_t2v(given, self.tae, self.encode_prompt)
            events: list[Event] = []

            def on_step(step: int, total: int, x1_hat: torch.Tensor) -> None:
                if cancel.cancelled:
                    raise Cancelled
                el = time.perf_counter() - start
                events.append(Progress(step, total, el, el / step * (total - step)))
                if previews:
                    events.append(Preview(step, self.preview_frames(x1_hat, req.frames, req.size)))

            # The loop runs as a generator of steps, so events reach the caller as they happen.
            latents = yield from _stream(
                lambda cb: denoise(self.generator, prep, self.device, cb, self.bf16), on_step, events
            )
            if cancel.cancelled:
                raise Cancelled
            video = self.tae.decode(latents, req.frames)[0]  # (3, T, H, W)
            frames = to_frames(video)
            if self.cache is not None:
                self.cache.put(key, {"latents": latents.cpu(), "frames": torch.from_numpy(frames)})
        meta = {
            "request": req.to_dict(),
            "rewrite": rewrite.to_dict() if rewrite is not None else None,
            "model": self.model_id,
            "engine": VERSION,
            "device": str(self.device),
            "precision": self.precision,
            "seconds": round(time.perf_counter() - start, 3),
            "cached": cached,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        path = self._write(frames, req, meta, out)
        meta["seconds"] = round(time.perf_counter() - start, 3)
        yield Result(path=path, metadata=meta, frames=frames, cached=cached)

    def _write(self, frames: np.ndarray, req: T2VRequest, meta: dict, out) -> Path:
        if out is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            out = self.outputs_dir / f"{stamp}-{req.task}-{req.seed}{'.png' if req.frames == 1 else '.mp4'}"
        out = Path(out)
        if out.suffix.lower() == ".png":
            write_png(out, frames[0], meta)
        else:
            write_video(out, frames, req.fps, meta)
        # A thumbnail (middle frame, at least 128 px) for history lists; nearest keeps it crisp.
        mid = frames[len(frames) // 2]
        k = max(1, 128 // max(mid.shape[:2]))
        write_png(out.with_name(out.stem + ".thumb.png"), mid.repeat(k, 0).repeat(k, 1))
        out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        return out

    def preview_frames(self, latents: torch.Tensor, frames: int, size: int) -> np.ndarray:
        """(T', size, size, 3) uint8 from the linear latent -> RGB map: no decoder, next to free."""
        rgb = self.tae.preview(latents.float())[0]  # (3, t, h, w)
        rgb = F.interpolate(rgb[None], size=(rgb.shape[1], size, size), mode="nearest")[0]
        return to_frames(rgb)


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


def _check_out(out: str | Path | None, req: T2VRequest) -> None:
    """Refuse an output name the engine cannot honour, before anything runs."""
    if out is None:
        return
    suffix = Path(out).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise RequestError(
            f"Cannot write {Path(out).name!r}: outputs are .mp4 (H.264, plays in a browser) or .png (with --frames 1)."
        )
    if suffix == ".png" and req.frames != 1:
        raise RequestError("A .png output holds one frame: use --frames 1, or an .mp4 output.")
