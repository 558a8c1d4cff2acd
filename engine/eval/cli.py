"""`python -m engine eval WHAT`: quality figures on held-out data, printed as one JSON object
(its settings first, then what was measured)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ..cli import Formatter, add_common, add_fields, make_engine, request_from
from ..tasks import (
    AnimateRequest,
    EditRequest,
    ExtendRequest,
    InterpolateRequest,
    PersonalizeRequest,
    T2VRequest,
    UpscaleRequest,
)

WHAT = ("t2v", "tae", "edit", "upscale", "personalize", "animate", "extend", "interpolate")
DEFAULT_N = {"edit": 12, "upscale": 12, "personalize": 40, "animate": 24, "extend": 24, "interpolate": 12}  # else 48
SETS = ("held_out", "handwritten", "typed")  # t2v's prompt sets


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="quality figures on held-out data", formatter_class=Formatter)
    e.add_argument("what", choices=WHAT, help="what to measure")
    e.add_argument(
        "--n", type=int, default=None, help="prompts (t2v, 48), clips (tae, 48), sources per task (edit, 12)"
    )
    add_fields(e, EditRequest, only=["source_guidance"], helps={"source_guidance": "edit: keep the source (s_I)"})
    helps = {"strength": "edit: start from the source noised this far (1: from noise; 0: each task's own)"}
    add_fields(e, EditRequest, only=["strength"], prefix="edit", helps=helps)
    e.add_argument("--strengths", default="0.5,0.75", help="edit: SDEdit baseline strengths, comma-separated")
    e.add_argument("--cases-seed", type=int, default=123, help="edit: the seed the held-out cases are drawn with")
    e.add_argument("--t2v-sources", type=int, default=12, help="edit / upscale: T2V outputs edited or upscaled")
    e.add_argument("--photos", type=int, default=8, help="upscale: clips panned over the held-out photos")
    e.add_argument("--analyser-clips", type=int, default=300, help="personalize: truth clips the analyser reads")
    e.add_argument(
        "--no-baseline", action="store_true", help="personalize: skip the baseline (T2V given the character in words)"
    )
    helps = {"reference_guidance": "personalize: look like the reference"}
    add_fields(e, PersonalizeRequest, only=["reference_guidance"], helps=helps)
    helps = {"steps": "upscale: Euler steps", "schedule": "upscale: time schedule"}
    add_fields(e, UpscaleRequest, only=["steps", "schedule"], prefix="upscale", helps=helps)
    e.add_argument(
        "--frames-guidance",
        type=float,
        default=None,
        help="animate / extend / interpolate: keep to the given frames (s_F; default: each request's own)",
    )
    e.add_argument("--no-t2v-baseline", action="store_true", help="extend: skip the T2V baseline")
    e.add_argument("--verbose", action="store_true")
    e.add_argument("--sets", default=",".join(SETS), help="t2v prompt sets, comma-separated")
    add_fields(e, T2VRequest, skip=["prompt"])
    add_common(e)
    e.set_defaults(fn=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.n is None:
        args.n = DEFAULT_N.get(args.what, 48)
    names = args.sets.split(",")
    unknown = [n for n in names if n not in SETS]  # before any work: a typo should not cost an eval
    if args.what == "t2v" and unknown:
        raise SystemExit(f"error: unknown prompt set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")
    engine = make_engine(args)
    ids = engine.models.ids
    scratch = tempfile.TemporaryDirectory()  # evaluation clips must not flood the studio's history
    engine.outputs_dir = Path(scratch.name)
    log = print if args.verbose else lambda *_: None
    if args.what == "tae":
        from .tae import evaluate_tae

        res = evaluate_tae(engine.models.tae, n=args.n)
    elif args.what == "edit":
        from .edit import evaluate_edit

        # Only these settings: the rest are each case's (source, seed) or the edit default's.
        base = EditRequest(
            video="",
            steps=args.steps,
            guidance=args.guidance,
            source_guidance=args.source_guidance,
            strength=args.edit_strength,
            schedule=args.schedule,
            rewrite=args.rewrite,
        )
        strengths = tuple(float(x) for x in args.strengths.split(",") if x)
        res = {"settings": {k: v for k, v in base.to_dict().items() if k not in ("video", "seed")}}
        res["settings"] |= {"model": ids.get("editor") or ids["generator"], "precision": engine.precision}
        res["settings"] |= {"per_task": args.n, "sdedit_strengths": strengths}
        res["settings"]["cases_seed"] = args.cases_seed
        res |= evaluate_edit(
            engine, args.n, base, strengths, t2v_sources=args.t2v_sources, seed=args.cases_seed, log=log
        )
    elif args.what == "personalize":
        from .personalize import evaluate_personalize

        if engine.models.personalizer is None:
            raise SystemExit(
                f"error: the model folder {engine.models.folder} has no personalization model ('personalize')"
            )
        base = request_from(PersonalizeRequest, args, reference="", prompt="x")
        res = {"settings": {k: v for k, v in base.to_dict().items() if k not in ("reference", "prompt", "seed")}}
        res["settings"] |= {"model": ids["personalizer"], "precision": engine.precision}
        res |= evaluate_personalize(
            engine, args.n, base, analyser_clips=args.analyser_clips, baseline=not args.no_baseline, log=log
        )
    elif args.what in ("animate", "extend", "interpolate"):
        from . import animate as ev

        engine.models.require("animator", "has no animation model ('animate')")
        res = {"settings": {"model": ids["animator"], "precision": engine.precision, "n": args.n}}
        fg = {} if args.frames_guidance is None else {"frames_guidance": args.frames_guidance}
        if args.what == "interpolate":
            base = InterpolateRequest(video="", **fg)  # its own defaults otherwise: a few steps, no guidance
            res["settings"] |= {"steps": base.steps, "guidance": base.guidance, "frames_guidance": base.frames_guidance}
            res |= ev.evaluate_interpolate(engine, args.n, base, log=log)
        else:
            fg = fg or {"frames_guidance": AnimateRequest(image="", prompt="").frames_guidance}
            kw = {"steps": args.steps, "guidance": args.guidance} | fg
            res["settings"] |= kw
            if args.what == "animate":
                res |= ev.evaluate_animate(engine, args.n, AnimateRequest(image="", prompt="x", **kw), log=log)
            else:
                base = ExtendRequest(video="", prompt="x", **kw)
                res |= ev.evaluate_extend(engine, args.n, base, baseline=not args.no_t2v_baseline, log=log)
    elif args.what == "upscale":
        from .upscale import evaluate_upscale

        base = request_from(UpscaleRequest, args, prefix="upscale", video="", scale=4)
        res = {"settings": {k: v for k, v in base.to_dict().items() if k not in ("video", "seed")}}
        res["settings"] |= {"model": ids.get("upsampler", ""), "precision": engine.precision}
        res |= evaluate_upscale(engine, args.n, args.photos, args.t2v_sources, base, log=log)
    else:
        from .t2v import evaluate_t2v, handwritten_prompts, held_out_prompts, typed_prompts

        items = held_out_prompts(args.n // 2, args.n - args.n // 2)
        base = request_from(T2VRequest, args, prompt="x")
        res = {"settings": {k: v for k, v in base.to_dict().items() if k not in ("prompt", "seed")}}
        res["settings"] |= {"model": ids["generator"], "precision": engine.precision}
        sets = {"held_out": lambda: items, "handwritten": handwritten_prompts, "typed": typed_prompts}
        for name in names:
            res[name] = evaluate_t2v(engine, sets[name](), base, log=log)
    print(json.dumps(res, indent=2))
    return 0
