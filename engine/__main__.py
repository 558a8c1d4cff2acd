"""Command line: one subcommand per task (its flags are its request's fields), eval, bench, train.

python -m engine generate --prompt "a red circle moving left on a blue background" --seed 0 --out out.mp4
python -m engine edit --video in.mp4 --instruction "make the circle yellow" --seed 0 --out out.mp4
python -m engine sdedit --video in.mp4 --prompt "a blue star moving left on a white background" --out out.mp4
python -m engine upscale --video in.mp4 --out out.mp4
python -m engine personalize --reference char.png --prompt "the character moving right on a green background" --out out.mp4
python -m engine eval t2v | tae | edit | upscale | personalize
python -m engine bench [t2v | edit | upscale | personalize]
python -m engine train --preset shapes-v2 --out runs/shapes-v2
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .cli import Formatter, add_common, add_encode, add_fields, flaggable, make_engine, request_from
from .tasks import TASKS, EditRequest, SDEditRequest, T2VRequest


def _source(meta: dict) -> list[str]:
    return [f"source: {meta['source']['summary']}"]


def _edit(meta: dict) -> list[str]:
    reading = [f"read as: {meta['edit_task']}: {meta['given']}"] if meta.get("reading") else []
    return _source(meta) + reading


def _upscale(meta: dict) -> list[str]:
    w, h = meta["size"]
    return [f"input: {meta['source']['summary']} -> {w}x{h}"]


def _reference(meta: dict) -> list[str]:
    ref = meta.get("reference")  # an upscale's metadata names its base clip instead
    return [f"reference: {ref['summary']}"] if ref else []


@dataclass(frozen=True)
class Command:
    """What a task's subcommand says beyond its request's fields."""

    name: str
    help: str
    out: str  # what --out writes
    describe: Callable[[dict], list[str]] = lambda meta: []  # lines above the path: how inputs were read


IMAGE_OUT = "output .mp4 (or .png with --frames 1); default: outputs/"
COMMANDS = {  # by task name, in the order --help lists them; a task not here gets a plain subcommand
    "t2v": Command("generate", "text to video (or image with --frames 1)", IMAGE_OUT),
    "edit": Command(
        "edit",
        "edit a video by instruction (or by describing the result: SDEdit)",
        "output .mp4 (or .png for an image source); default: outputs/",
        _edit,
    ),
    "sdedit": Command(
        "sdedit",
        "edit a video by describing the result (SDEdit through the T2V model)",
        "output .mp4 (or .png for an image source); default: outputs/",
        _source,
    ),
    "upscale": Command(
        "upscale",
        "make a clip (or image) 2x or 4x larger (Movie Gen's spatial upsampler)",
        "output .mp4 (or .png for an image); default: outputs/",
        _upscale,
    ),
    "personalize": Command(
        "personalize", "a character from a reference image doing what the prompt says (PT2V)", IMAGE_OUT, _reference
    ),
    "animate": Command("animate", "animate a picture (optionally to a last picture) as the prompt says", "output .mp4"),
    "extend": Command(
        "extend", "continue a clip as the prompt says: the source, then the new frames", "output .mp4", _source
    ),
    "interpolate": Command("interpolate", "fill in frames: 2x or 4x the frame rate", "output .mp4", _source),
}


def _edit_request(args: argparse.Namespace) -> EditRequest | SDEditRequest:
    """`edit --prompt` is SDEdit, as before it had its own subcommand."""
    if bool(args.instruction) == bool(args.prompt):
        raise ValueError("give --instruction (what to change) or --prompt (the result described, SDEdit)")
    if not args.prompt:
        return request_from(EditRequest, args)
    default = {} if args.strength else {"strength": SDEditRequest.strength}  # 0: SDEdit's own default
    return request_from(SDEditRequest, args, **default)


def cmd_task(args: argparse.Namespace) -> int:
    req = args.build(args)
    engine = make_engine(args)
    if isinstance(req, T2VRequest) and not args.quiet:
        rewrite = engine.rewrite(req)  # None when off, empty or over-long (run() then says what was wrong)
        if rewrite is not None:
            print(rewrite.describe(), file=sys.stderr)
    return _run_printing(engine, req, args, args.describe)


def _run_printing(engine, req, args: argparse.Namespace, describe: Callable[[dict], list[str]]) -> int:
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


def _add_task(sub: argparse._SubParsersAction, name: str) -> None:
    task = TASKS[name]
    cmd = COMMANDS.get(name, Command(name, f"the {name} task", "output .mp4 or .png; default: outputs/"))
    p = sub.add_parser(cmd.name, help=cmd.help, formatter_class=Formatter)
    build = partial(request_from, task.request)
    if name == "edit":  # `edit --prompt` (SDEdit) predates the sdedit subcommand and still works
        strength = "start from the source noised this far: 1 = anew, near 0 = the source; 0 = the default (an edit's task's own, SDEdit's 0.6)"
        add_fields(p, task.request, helps={"strength": strength})
        sdedit = {"prompt": "instead of an instruction: the result described (SDEdit through the T2V model)"}
        add_fields(p, SDEditRequest, only=sdedit, defaults={"prompt": None}, helps=sdedit)
        build = _edit_request
    else:
        add_fields(p, task.request)
    p.add_argument("--out", help=cmd.out)
    p.add_argument("--quiet", action="store_true")
    add_common(p)
    p.set_defaults(fn=cmd_task, build=build, describe=cmd.describe)


def cmd_train(args: argparse.Namespace) -> int:
    from .train.recipe import PRESETS, preset_toml, train
    from .train.run_config import apply_overrides, build, read_file

    if args.print_config:
        print(preset_toml(PRESETS[args.preset], args.preset), end="")
        return 0
    data = read_file(args.config) if args.config else {}
    quick = {"latents": args.data, "model": args.model, "steps": args.steps}
    footage_set = any(item.startswith("footage.") for item in args.set)
    if args.data or "footage" in data or footage_set:  # the user's own footage
        from .train.footage_stage import FootageTrainConfig, run_footage

        stray = [item for item in args.set if not item.startswith("footage.")]
        if stray:
            raise SystemExit(f"a footage run takes --set footage.FIELD=VALUE; not {', '.join(stray)}")

        section = data.get("footage", {}) | {k: v for k, v in quick.items() if v is not None}
        data = apply_overrides({"footage": section}, args.set)
        cfg = build(FootageTrainConfig, data["footage"], "footage.")
        if not cfg.latents or not cfg.model:
            raise SystemExit("train on footage needs --data LATENTS (from `encode`) and --model M (the folder it used)")
        run_footage(cfg, Path(args.out or "runs/footage"), args.device, args.threads)
        return 0
    stages = tuple(args.stages.split(","))
    stray = [item for item in args.set if not item.startswith("recipe.")]
    if stray:
        raise SystemExit(f"a recipe run takes --set recipe.FIELD=VALUE; not {', '.join(stray)}")
    if "recipe" in data or args.set:
        from .train.recipe import Preset

        base = data.get("recipe") or tomllib.loads(preset_toml(PRESETS[args.preset]))["recipe"]
        preset = build(Preset, apply_overrides({"recipe": base}, args.set)["recipe"], "recipe.")
        train(preset, args.out or "runs/custom", args.device, stages, args.threads)
        return 0
    train(args.preset, args.out or f"runs/{args.preset}", args.device, stages, args.threads)
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train",
        help="rebuild a model from scratch (fixed seeds), or train on your own footage",
        formatter_class=Formatter,
    )
    t.add_argument(
        "--preset", default="shapes-v2", help="shapes-v2 (shipped; ~20 min on one H100), shapes-v1 (CPU), tiny"
    )
    t.add_argument(
        "--config", help="a run file (TOML or JSON): a [recipe] table (a preset's fields) or a [footage] one"
    )
    t.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="override one setting, e.g. footage.steps=500"
    )
    t.add_argument("--print-config", action="store_true", help="print the preset as a run file and stop")
    t.add_argument("--data", help="train on your own footage: the folder `python -m engine encode` wrote")
    t.add_argument("--model", help="with --data: the model folder the latents were encoded with (fine-tuned)")
    t.add_argument("--steps", type=int, help="with --data: optimiser steps")
    t.add_argument("--out", help="output folder (default: runs/PRESET)")
    t.add_argument("--device")
    t.add_argument("--threads", type=int, help="CPU threads (default: the preset's)")
    from .train.recipe import DEFAULT_STAGES, stages_help

    t.add_argument("--stages", default=",".join(DEFAULT_STAGES), help=stages_help())
    t.set_defaults(fn=cmd_train)


def parser() -> argparse.ArgumentParser:
    from . import bench
    from .eval import cli as eval_cli

    ap = argparse.ArgumentParser(prog="python -m engine", description=__doc__, formatter_class=Formatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    # The built-in tasks in COMMANDS' order, then any other registered task whose fields can all
    # be flags (one that cannot must not take the whole command line down with it).
    extra = [n for n in TASKS if n not in COMMANDS and flaggable(TASKS[n].request)]
    for name in [*(n for n in COMMANDS if n in TASKS), *extra]:
        _add_task(sub, name)
    eval_cli.add_parser(sub)
    bench.add_parser(sub)
    _add_train(sub)
    add_encode(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
