"""Command line: generate, eval, bench, train.

python -m engine generate --prompt "a red circle moving left on a blue background" --seed 0 --out out.mp4
python -m engine edit --video in.mp4 --instruction "make the circle yellow" --seed 0 --out out.mp4
python -m engine upscale --video in.mp4 --out out.mp4
python -m engine personalize --reference char.png --prompt "the character moving right on a green background" --out out.mp4
python -m engine eval t2v | tae | edit | upscale | personalize
python -m engine bench [t2v | edit | upscale | personalize]
python -m engine train --preset shapes-v2 --out runs/shapes-v2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _engine(args):
    from .engine import DEFAULT_MODEL, Engine

    return Engine(model=args.model or DEFAULT_MODEL, device=args.device, cache_dir=args.cache_dir, bf16=not args.fp32)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model folder (default: the shipped assets/models/shapes-v2)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    p.add_argument("--cache-dir", default="cache", help="latent cache folder ('' to disable)")
    p.add_argument(
        "--fp32",
        action="store_true",
        help="run the transformer in fp32 (default: bf16 autocast where the hardware runs it natively)",
    )


def _request_args(p: argparse.ArgumentParser) -> None:
    from .requests import T2VRequest
    from .sampling import SCHEDULES

    d = T2VRequest(prompt="")
    p.add_argument("--negative-prompt", default=d.negative_prompt)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--guidance", type=float, default=d.guidance)
    p.add_argument("--frames", type=int, default=d.frames, help="1 = an image")
    p.add_argument("--size", type=int, default=d.size)
    p.add_argument("--fps", type=float, default=d.fps)
    p.add_argument("--schedule", choices=list(SCHEDULES), default=d.schedule)
    p.add_argument(
        "--no-rewrite",
        dest="rewrite",
        action="store_false",
        help="give the generator the prompt as typed, not the rewriter's canonical reading of it",
    )
    _upscale_flag(p)


def _upscale_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--upscale",
        type=int,
        choices=[0, 2, 4],
        default=0,
        help="then upscale the result in the same job (both are kept: OUT and OUT's .base file)",
    )


def _upscale_args(p: argparse.ArgumentParser) -> None:
    from .requests import UpscaleRequest
    from .sampling import SCHEDULES

    d = UpscaleRequest(video="")
    p.add_argument("--scale", type=int, choices=[2, 4], default=d.scale)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--schedule", choices=list(SCHEDULES), default=d.schedule)


def _edit_args(p: argparse.ArgumentParser) -> None:
    from .requests import EDIT_TASK_CHOICES, EditRequest
    from .sampling import SCHEDULES

    d = EditRequest(video="")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--guidance", type=float, default=d.guidance, help="follow the instruction (or the prompt)")
    p.add_argument("--source-guidance", type=float, default=d.source_guidance, help="keep the source")
    p.add_argument("--task", choices=EDIT_TASK_CHOICES, default=d.edit_task, help="the edit task (default: read it)")
    p.add_argument("--strength", type=float, default=d.strength, help="SDEdit: 1 = generate anew, near 0 = the source")
    p.add_argument("--schedule", choices=list(SCHEDULES), default=d.schedule)
    p.add_argument(
        "--no-rewrite",
        dest="rewrite",
        action="store_false",
        help="give the model the instruction (or prompt) as typed, not its canonical reading",
    )
    _upscale_flag(p)


def _upscale_sampling(p: argparse.ArgumentParser) -> None:
    from .requests import UpscaleRequest

    d = UpscaleRequest(video="")
    p.add_argument("--upscale-steps", type=int, default=d.steps, help="upscale: Euler steps")
    p.add_argument("--upscale-schedule", default=d.schedule, help="upscale: time schedule")


def _request(args, prompt: str):
    from .requests import T2VRequest

    return T2VRequest(
        prompt=prompt,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        frames=args.frames,
        size=args.size,
        fps=args.fps,
        schedule=args.schedule,
        rewrite=args.rewrite,
        upscale=getattr(args, "upscale", 0),
    )


def cmd_generate(args) -> int:

    engine = _engine(args)
    req = _request(args, args.prompt)
    rewrite = engine.rewrite(req)  # None when off, empty or over-long (run() then says what was wrong)
    if rewrite is not None and not args.quiet:
        print(rewrite.describe(), file=sys.stderr)
    return _run_printing(engine, req, args)


def _run_printing(engine, req, args, describe=lambda meta: []) -> int:
    """Run a request with a progress line on stderr; print the result's path (0) or the error (2).
    describe(metadata) gives lines to print above the path (how the inputs were read)."""
    from .requests import Error, Progress, Result

    for ev in engine.run(req, out=args.out, previews=False):
        if isinstance(ev, Progress) and not args.quiet:
            print(f"\rstep {ev.step}/{ev.total}  eta {ev.eta:4.1f}s", end="", file=sys.stderr, flush=True)
        elif isinstance(ev, Error):
            print(f"\nerror: {ev.message}", file=sys.stderr)
            return 2
        elif isinstance(ev, Result):
            if not args.quiet:
                print("", *describe(ev.metadata), sep="\n", file=sys.stderr)
                print(f"{ev.path}  ({ev.metadata['seconds']:.2f}s{', cached' if ev.cached else ''})", file=sys.stderr)
            print(ev.path)
    return 0


def _edit_request(args, video: str):
    from .requests import EditRequest

    return EditRequest(
        video=video,
        instruction=args.instruction or "",
        prompt=args.prompt or "",
        mode="sdedit" if args.prompt else "instruction",
        edit_task=args.task,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        source_guidance=args.source_guidance,
        strength=args.strength,
        schedule=args.schedule,
        rewrite=args.rewrite,
        upscale=args.upscale,
    )


def cmd_edit(args) -> int:
    if bool(args.instruction) == bool(args.prompt):
        print("error: give --instruction (what to change) or --prompt (the result described, SDEdit)", file=sys.stderr)
        return 2
    engine = _engine(args)

    def describe(meta: dict) -> list[str]:
        lines = [f"source: {meta['source']['summary']}"]
        if meta.get("reading"):
            lines.append(f"read as: {meta['edit_task']}: {meta['given']}")
        return lines

    return _run_printing(engine, _edit_request(args, args.video), args, describe)


def cmd_upscale(args) -> int:
    from .requests import UpscaleRequest

    req = UpscaleRequest(video=args.video, scale=args.scale, seed=args.seed, steps=args.steps, schedule=args.schedule)

    def describe(meta: dict) -> list[str]:
        w, h = meta["size"]
        return [f"input: {meta['source']['summary']} -> {w}x{h}"]

    return _run_printing(_engine(args), req, args, describe)


def _personalize_args(p: argparse.ArgumentParser) -> None:
    from .requests import PersonalizeRequest
    from .sampling import SCHEDULES

    d = PersonalizeRequest(reference="", prompt="")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--guidance", type=float, default=d.guidance, help="follow the prompt (s_T)")
    p.add_argument("--reference-guidance", type=float, default=d.reference_guidance, help="look like the reference")
    p.add_argument("--frames", type=int, default=d.frames, help="1 = an image")
    p.add_argument("--fps", type=float, default=d.fps)
    p.add_argument("--schedule", choices=list(SCHEDULES), default=d.schedule)
    _upscale_flag(p)


def _personalize_request(args, reference: str, prompt: str):
    from .requests import PersonalizeRequest

    return PersonalizeRequest(
        reference=reference,
        prompt=prompt,
        reference_name=getattr(args, "name", "") or "",
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        reference_guidance=args.reference_guidance,
        frames=args.frames,
        fps=args.fps,
        schedule=args.schedule,
        upscale=getattr(args, "upscale", 0),
    )


def cmd_personalize(args) -> int:
    def describe(meta: dict) -> list[str]:
        ref = meta.get("reference")  # an upscale's metadata names its base clip instead
        return [f"reference: {ref['summary']}"] if ref else []

    return _run_printing(_engine(args), _personalize_request(args, args.reference, args.prompt), args, describe)


def cmd_eval(args) -> int:
    import tempfile

    if args.n is None:
        args.n = {"edit": 12, "upscale": 12, "personalize": 40}.get(args.what, 48)
    engine = _engine(args)
    scratch = tempfile.TemporaryDirectory()  # evaluation clips must not flood the studio's history
    engine.outputs_dir = Path(scratch.name)
    if args.what == "tae":
        from .eval.tae import evaluate_tae

        res = evaluate_tae(engine.tae, n=args.n)
    elif args.what == "edit":
        from .eval.edit import evaluate_edit
        from .requests import EditRequest

        base = EditRequest(
            video="",
            steps=args.steps,
            guidance=args.guidance,
            source_guidance=args.source_guidance,
            schedule=args.schedule,
            rewrite=args.rewrite,
        )
        strengths = tuple(float(x) for x in args.strengths.split(",") if x)
        res = {"settings": {k: v for k, v in base.to_dict().items() if k not in ("video", "seed", "strength")}}
        res["settings"] |= {"model": engine.editor_id or engine.model_id, "precision": engine.precision}
        res["settings"] |= {"per_task": args.n, "sdedit_strengths": strengths}
        log = print if args.verbose else lambda *_: None
        res |= evaluate_edit(engine, args.n, base, strengths, t2v_sources=args.t2v_sources, log=log)
    elif args.what == "personalize":
        from .eval.personalize import evaluate_personalize

        if engine.personalizer is None:
            raise SystemExit(f"error: the model folder {engine.model_dir} has no personalization model ('personalize')")

        base = _personalize_request(args, "", "x")
        res = {"settings": {k: v for k, v in base.to_dict().items() if k not in ("reference", "prompt", "seed")}}
        res["settings"] |= {"model": engine.personalizer_id, "precision": engine.precision}
        log = print if args.verbose else lambda *_: None
        res |= evaluate_personalize(engine, args.n, base, analyser_clips=args.analyser_clips, log=log)
    elif args.what == "upscale":
        from .eval.upscale import evaluate_upscale
        from .requests import UpscaleRequest

        base = UpscaleRequest(video="", scale=4, steps=args.upscale_steps, schedule=args.upscale_schedule)
        res = {"settings": {k: v for k, v in base.to_dict().items() if k not in ("video", "seed")}}
        res["settings"] |= {"model": engine.upsampler_id, "precision": engine.precision}
        log = print if args.verbose else lambda *_: None
        res |= evaluate_upscale(engine, args.n, args.photos, args.t2v_sources, base, log=log)
    else:
        from .eval.t2v import evaluate_t2v, handwritten_prompts, held_out_prompts, typed_prompts

        log = print if args.verbose else lambda *_: None
        items = held_out_prompts(args.n // 2, args.n - args.n // 2)
        base = _request(args, "x")
        res = {"settings": {k: v for k, v in base.to_dict().items() if k not in ("prompt", "seed")}}
        res["settings"] |= {"model": engine.model_id, "precision": engine.precision}
        sets = {"held_out": lambda: items, "handwritten": handwritten_prompts, "typed": typed_prompts}
        names = args.sets.split(",")
        unknown = [n for n in names if n not in sets]  # before any work: a typo should not cost an eval
        if unknown:
            raise SystemExit(f"error: unknown prompt set(s) {', '.join(unknown)}; choose from {', '.join(sets)}")
        for name in names:
            res[name] = evaluate_t2v(engine, sets[name](), base, log=log)
    print(json.dumps(res, indent=2))
    return 0


def cmd_bench(args) -> int:
    import dataclasses
    import resource
    import tempfile

    import torch

    from .requests import Preview, Result

    def timed(engine, req, out, previews):
        """(total seconds, seconds to the first preview or None)."""
        t = time.perf_counter()
        first = None
        for ev in engine.run(req, out=out, previews=previews):
            if isinstance(ev, Preview) and first is None:
                first = time.perf_counter() - t
            if not isinstance(ev, Preview | Result) and hasattr(ev, "message"):
                raise SystemExit(f"error: {ev.message}")
        return time.perf_counter() - t, first

    with tempfile.TemporaryDirectory() as tmp:
        args.cache_dir = tmp
        engine = _engine(args)
        cache, engine.cache = engine.cache, None  # timings below must not hit the cache
        out = Path(tmp) / "bench.mp4"
        if args.what == "edit":
            base = _bench_edit_request(args, Path(tmp))
        elif args.what == "upscale":
            base = _bench_upscale_request(args, Path(tmp))
        elif args.what == "personalize":
            base = _bench_personalize_request(args, Path(tmp))
        else:
            base = _request(args, args.prompt)
        seeds = [dataclasses.replace(base, seed=i) for i in range(args.repeats)]
        timed(engine, dataclasses.replace(base, seed=10_000), out, False)  # warm-up
        plain = [timed(engine, r, out, False)[0] for r in seeds]
        with_prev = [timed(engine, r, out, True) for r in seeds]
        engine.cache = cache
        for r in seeds:  # fill the cache, then time hits
            engine.generate(r, out=out)
        hits = [timed(engine, r, out, False)[0] for r in seeds]
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


def _bench_edit_request(args, tmp: Path):
    """A 32-frame 64x64 world clip as an H.264 upload, and an instruction the model knows."""

    from .requests import EditRequest
    from .video_io import write_video
    from .world.render import render
    from .world.scene import Scene, ShapeObject

    scene = Scene("blue", (ShapeObject("red", "circle", "left", 0.5, 0.5),))
    src = write_video(tmp / "source.mp4", render(scene, 64, 32), 8.0, {})
    return EditRequest(video=str(src), instruction=args.instruction, steps=args.steps, guidance=args.guidance)


def _bench_upscale_request(args, tmp: Path):
    """A 32-frame 64x64 world clip (H.264) to 256x256, or --seconds of it (memory is flat in length)."""
    from .requests import UpscaleRequest
    from .video_io import write_video
    from .world.render import render
    from .world.scene import Scene, ShapeObject

    scene = Scene("blue", (ShapeObject("red", "circle", "left", 0.5, 0.5), ShapeObject("yellow", "star", "up")))
    frames = render(scene, 64, 32)
    reps = max(1, round(args.seconds * 8 / 32))
    src = write_video(tmp / "source.mp4", np.concatenate([frames] * reps), 8.0, {})
    return UpscaleRequest(video=str(src), steps=args.upscale_steps, schedule=args.upscale_schedule)


def _bench_personalize_request(args, tmp: Path):
    """A held-out character's reference as a PNG, and the default 32-frame clip of it."""
    from PIL import Image

    from .world.characters import Character

    path = tmp / "reference.png"
    Image.fromarray(Character("star", "red", "cyan", "hstripes").reference("white", 256)).save(path)
    return _personalize_request(args, str(path), "the character moving right on a green background")


def cmd_train(args) -> int:
    from .train.recipe import train

    train(args.preset, args.out or f"runs/{args.preset}", args.device, tuple(args.stages.split(",")), args.threads)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m engine", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("generate", help="text to video (or image with --frames 1)")
    g.add_argument("--prompt", required=True)
    g.add_argument("--out", help="output .mp4 (or .png with --frames 1); default: outputs/")
    g.add_argument("--quiet", action="store_true")
    _request_args(g)
    _common(g)
    g.set_defaults(fn=cmd_generate)

    ed = sub.add_parser("edit", help="edit a video by instruction (or by describing the result: SDEdit)")
    ed.add_argument("--video", required=True, help="the source: MP4, MOV, WebM, MKV, AVI, GIF, or a PNG/JPEG image")
    ed.add_argument("--instruction", help="what to change, e.g. 'make the circle yellow'")
    ed.add_argument("--prompt", help="instead of an instruction: the result described (SDEdit through the T2V model)")
    ed.add_argument("--out", help="output .mp4 (or .png for an image source); default: outputs/")
    ed.add_argument("--quiet", action="store_true")
    _edit_args(ed)
    _common(ed)
    ed.set_defaults(fn=cmd_edit)

    u = sub.add_parser("upscale", help="make a clip (or image) 2x or 4x larger (Movie Gen's spatial upsampler)")
    u.add_argument("--video", required=True, help="MP4, MOV, WebM, MKV, AVI, GIF, or a PNG/JPEG/WebP image")
    u.add_argument("--out", help="output .mp4 (or .png for an image); default: outputs/")
    u.add_argument("--quiet", action="store_true")
    _upscale_args(u)
    _common(u)
    u.set_defaults(fn=cmd_upscale)

    pz = sub.add_parser("personalize", help="a character from a reference image doing what the prompt says (PT2V)")
    pz.add_argument("--reference", required=True, help="PNG, JPEG or WebP: one character alone on a plain background")
    pz.add_argument("--prompt", required=True, help="e.g. 'the character moving right on a green background'")
    pz.add_argument("--name", default="", help="the character's name, recorded with the result")
    pz.add_argument("--out", help="output .mp4 (or .png with --frames 1); default: outputs/")
    pz.add_argument("--quiet", action="store_true")
    _personalize_args(pz)
    _common(pz)
    pz.set_defaults(fn=cmd_personalize)

    e = sub.add_parser("eval", help="quality figures on held-out data")
    e.add_argument("what", choices=["t2v", "tae", "edit", "upscale", "personalize"])
    e.add_argument(
        "--n", type=int, default=None, help="prompts (t2v, 48), clips (tae, 48), sources per task (edit, 12)"
    )
    e.add_argument("--source-guidance", type=float, default=1.5, help="edit: keep the source (s_I)")
    e.add_argument("--strengths", default="0.5,0.75", help="edit: SDEdit baseline strengths, comma-separated")
    e.add_argument("--t2v-sources", type=int, default=12, help="edit / upscale: T2V outputs edited or upscaled")
    e.add_argument("--photos", type=int, default=8, help="upscale: clips panned over the held-out photos")
    e.add_argument("--analyser-clips", type=int, default=300, help="personalize: truth clips the analyser reads")
    e.add_argument("--reference-guidance", type=float, default=2.0, help="personalize: look like the reference")
    _upscale_sampling(e)
    e.add_argument("--verbose", action="store_true")
    e.add_argument("--sets", default="held_out,handwritten,typed", help="t2v prompt sets, comma-separated")
    _request_args(e)
    _common(e)
    e.set_defaults(fn=cmd_eval)

    b = sub.add_parser("bench", help="generation time (median of N after a warm-up) and cache-hit time")
    b.add_argument("what", nargs="?", choices=["t2v", "edit", "upscale", "personalize"], default="t2v")
    b.add_argument("--reference-guidance", type=float, default=2.0, help="personalize: look like the reference")
    b.add_argument("--seconds", type=float, default=4.0, help="upscale: length of the 8 fps source clip")
    _upscale_sampling(b)
    b.add_argument("--prompt", default="a red circle moving left on a blue background")
    b.add_argument("--instruction", default="make the circle yellow", help="edit: the instruction timed")
    b.add_argument("--repeats", type=int, default=5)
    _request_args(b)
    _common(b)
    b.set_defaults(fn=cmd_bench)

    t = sub.add_parser("train", help="rebuild a model from scratch (fixed seeds)")
    t.add_argument(
        "--preset", default="shapes-v2", help="shapes-v2 (shipped; ~20 min on one H100), shapes-v1 (CPU), tiny"
    )
    t.add_argument("--out", help="output folder (default: runs/PRESET)")
    t.add_argument("--device")
    t.add_argument("--threads", type=int, help="CPU threads (default: the preset's)")
    t.add_argument(
        "--stages",
        default="tae,t2v,refine,decoder,rewrite,edit,updecoder,upscale,pt2v",
        help="comma list of tae,t2v,refine,decoder,rewrite,edit,updecoder,upscale,chartae,pt2v (a stage left out"
        " reuses OUT)",
    )
    t.set_defaults(fn=cmd_train)

    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
