"""`python -m engine bench [WHAT]`: generation time (median of N after a warm-up), with previews,
time to the first preview, cache-hit time and peak memory, printed as one JSON object."""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .cli import Formatter, add_common, add_fields, make_engine, request_from
from .requests import Preview, Result
from .tasks import (
    AnimateRequest,
    EditRequest,
    ExtendRequest,
    InterpolateRequest,
    PersonalizeRequest,
    T2VRequest,
    UpscaleRequest,
)

PROMPT = "a red circle moving left on a blue background"
INSTRUCTION = "make the circle yellow"
WHAT = ("t2v", "edit", "upscale", "personalize", "animate", "extend", "interpolate", "train")
PERSONALIZE_PROMPT = "the character moving right on a green background"


def add_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "bench", help="generation time (median of N after a warm-up) and cache-hit time", formatter_class=Formatter
    )
    b.add_argument("what", nargs="?", choices=WHAT, default="t2v", help="the task timed")
    helps = {"reference_guidance": "personalize: look like the reference"}
    add_fields(b, PersonalizeRequest, only=["reference_guidance"], helps=helps)
    b.add_argument("--seconds", type=float, default=4.0, help="upscale: length of the 8 fps source clip")
    helps = {"steps": "upscale: Euler steps", "schedule": "upscale: time schedule"}
    add_fields(b, UpscaleRequest, only=["steps", "schedule"], prefix="upscale", helps=helps)
    helps = {"instruction": "edit: the instruction timed"}
    add_fields(b, EditRequest, only=["instruction"], defaults={"instruction": INSTRUCTION}, helps=helps)
    b.add_argument("--repeats", type=int, default=5, help="timed runs of each kind, after one warm-up")
    t = b.add_argument_group("train: throughput and memory of training on encoded footage")
    t.add_argument("--data", help="train: the folder `python -m engine encode` wrote")
    t.add_argument("--ranks", default="1,2", help="train: rank counts to run (torchrun beyond 1)")
    t.add_argument("--modes", default="ddp,fsdp", help="train: parallel modes")
    t.add_argument("--train-steps", type=int, default=8, help="train: steps a run (the first 2 untimed)")
    t.add_argument("--global-batch", type=int, default=16, help="train: samples a step")
    t.add_argument("--micro-batch", type=int, default=8, help="train: samples a forward on one rank")
    t.add_argument("--train-threads", type=int, default=1, help="train: CPU threads per rank")
    add_fields(b, T2VRequest, defaults={"prompt": PROMPT}, helps={"prompt": "t2v: the prompt timed"})
    add_common(b)
    b.set_defaults(fn=cmd_bench)


def _timed(engine, req, out: Path, previews: bool) -> tuple[float, float | None]:
    """(total seconds, seconds to the first preview or None)."""
    t = time.perf_counter()
    first = None
    for ev in engine.run(req, out=out, previews=previews):
        if isinstance(ev, Preview) and first is None:
            first = time.perf_counter() - t
        if not isinstance(ev, Preview | Result) and hasattr(ev, "message"):
            raise SystemExit(f"error: {ev.message}")
    return time.perf_counter() - t, first


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    if args.what == "train":
        from .train.bench_train import bench_training

        if not args.data:
            raise SystemExit("bench train needs --data LATENTS (from `python -m engine encode`)")
        from .engine import DEFAULT_MODEL

        res = bench_training(
            args.data,
            str(args.model or DEFAULT_MODEL),
            ranks=tuple(int(r) for r in args.ranks.split(",")),
            modes=tuple(args.modes.split(",")),
            steps=args.train_steps,
            global_batch=args.global_batch,
            micro_batch=args.micro_batch,
            device=args.device or "cpu",
            threads=args.train_threads,
        )
        print(json.dumps(res, indent=2))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        args.cache_dir = tmp
        engine = make_engine(args)
        cache, engine.cache = engine.cache, None  # timings below must not hit the cache
        out = Path(tmp) / "bench.mp4"
        if args.what == "edit":
            base = _edit_request(args, Path(tmp))
        elif args.what == "upscale":
            base = _upscale_request(args, Path(tmp))
        elif args.what == "personalize":
            base = _personalize_request(args, Path(tmp))
        elif args.what in ("animate", "extend", "interpolate"):
            base = _given_frames_request(args, Path(tmp))
        else:
            base = request_from(T2VRequest, args)
        seeds = [dataclasses.replace(base, seed=i) for i in range(args.repeats)]
        _timed(engine, dataclasses.replace(base, seed=10_000), out, False)  # warm-up
        plain = [_timed(engine, r, out, False)[0] for r in seeds]
        with_prev = [_timed(engine, r, out, True) for r in seeds]
        engine.cache = cache
        for r in seeds:  # fill the cache, then time hits
            engine.generate(r, out=out)
        hits = [_timed(engine, r, out, False)[0] for r in seeds]
        med = statistics.median
        print(
            json.dumps(
                {
                    "task": args.what,
                    "device": str(engine.device),
                    "threads": torch.get_num_threads(),
                    "precision": engine.precision,
                    "request": base.to_dict(),
                    "generate_median_s": round(med(plain), 3),
                    "generate_all_s": [round(t, 3) for t in plain],
                    "with_previews_median_s": round(med(t for t, _ in with_prev), 3),
                    "preview_overhead_pct": round(100 * (med(t for t, _ in with_prev) / med(plain) - 1), 2),
                    "first_preview_median_s": round(med(f for _, f in with_prev), 3),
                    "cache_hit_median_s": round(med(hits), 3),
                    # The whole process's peak resident memory (Linux reports KiB).
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                },
                indent=2,
            )
        )
    return 0


def _world_clip(tmp: Path, objects: tuple, frames: int = 32) -> Path:
    """A 64x64 world clip on blue as an H.264 upload, `frames` long (in repeats of 32)."""
    from .video_io import write_video
    from .world.render import render
    from .world.scene import Scene

    clip = render(Scene("blue", objects), 64, 32)
    return write_video(tmp / "source.mp4", np.concatenate([clip] * max(1, frames // 32)), 8.0, {})


def _edit_request(args: argparse.Namespace, tmp: Path) -> EditRequest:
    """A 32-frame clip, and an instruction the model knows; only steps and guidance from the flags
    (the figures compare with the README's, at the edit defaults)."""
    from .world.scene import ShapeObject

    src = _world_clip(tmp, (ShapeObject("red", "circle", "left", 0.5, 0.5),))
    return EditRequest(video=str(src), instruction=args.instruction, steps=args.steps, guidance=args.guidance)


def _upscale_request(args: argparse.Namespace, tmp: Path) -> UpscaleRequest:
    """A 32-frame clip to 256x256, or --seconds of it (memory is flat in length)."""
    from .world.scene import ShapeObject

    objects = (ShapeObject("red", "circle", "left", 0.5, 0.5), ShapeObject("yellow", "star", "up"))
    src = _world_clip(tmp, objects, 32 * max(1, round(args.seconds * 8 / 32)))
    return request_from(UpscaleRequest, args, prefix="upscale", video=str(src))


def _personalize_request(args: argparse.Namespace, tmp: Path) -> PersonalizeRequest:
    """A held-out character's reference as a PNG, and the default 32-frame clip of it."""
    from PIL import Image

    from .world.characters import Character

    path = tmp / "reference.png"
    Image.fromarray(Character("star", "red", "cyan", "hstripes").reference("white", 256)).save(path)
    return request_from(PersonalizeRequest, args, reference=str(path), prompt=PERSONALIZE_PROMPT)


def _given_frames_request(args: argparse.Namespace, tmp: Path) -> AnimateRequest | ExtendRequest | InterpolateRequest:
    """animate: a picture to the default 32-frame clip; extend: a 32-frame clip by 32 new frames
    (two windows); interpolate: a 32-frame clip 4x (125 frames, five windows), at its defaults.
    Steps and guidance from the flags for the first two (the T2V defaults)."""
    from .video_io import write_png
    from .world.render import render
    from .world.scene import Scene, ShapeObject

    obj = ShapeObject("red", "circle", "left", 0.5, 0.5)
    if args.what == "interpolate":
        return InterpolateRequest(video=str(_world_clip(tmp, (obj,))), factor=4)
    if args.what == "extend":
        src = _world_clip(tmp, (obj,))
        return ExtendRequest(video=str(src), prompt=args.prompt, steps=args.steps, guidance=args.guidance)
    pic = write_png(tmp / "first.png", render(Scene("blue", (obj,)), 64, 1)[0])
    return AnimateRequest(image=str(pic), prompt=args.prompt, steps=args.steps, guidance=args.guidance)
