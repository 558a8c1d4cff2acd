"""Command-line flags built from the request dataclasses: one flag per field, named, typed and
defaulted by the field, so a field added to a request shows up on its subcommand by itself.

A small helper over argparse rather than tyro or simple-parsing: the requests are flat records of
str / int / float / bool, and the flags users already type (`--no-rewrite`, `--task`, argparse's
usage errors with exit code 2, its help layout) stay exactly as they were, with no new dependency.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .requests import UPSCALE_FACTORS
from .sampling import SCHEDULES
from .tasks import EDIT_TASK_CHOICES

if TYPE_CHECKING:
    from .engine import Engine

# Fields whose flag is not their own name (`--task` is shorter, and older than the field).
RENAMED = {"edit_task": "task", "reference_name": "name"}

# Accepted values by field name, wherever the field appears (a field's metadata "choices" wins).
CHOICES: dict[str, tuple] = {
    "schedule": tuple(SCHEDULES),
    "upscale": (0, *UPSCALE_FACTORS),
    "scale": UPSCALE_FACTORS,
    "edit_task": EDIT_TASK_CHOICES,
}

# Help by task, then by field name for any task. A field's metadata "help" wins, so these lines
# can move into the request modules (`field(default=..., metadata={"help": ...})`) one by one.
SOURCE = "the source: MP4, MOV, WebM, MKV, AVI, GIF, or a PNG/JPEG image"
TASK_HELP: dict[str, dict[str, str]] = {
    "t2v": {
        "rewrite": "give the generator the prompt as typed, not the rewriter's canonical reading of it",
        "factorised": "make the first frame as an image, then animate it (Emu Video; needs an animation model)",
        "size": "the side of a square frame in pixels (where --width and --height are 0)",
        "width": "frame width in pixels, a multiple of 16 for the shipped model (0: --size)",
        "height": "frame height in pixels, a multiple of 16 for the shipped model (0: --size)",
        "lora": "a style adapter (LoRA) by name: a folder in the model's loras/ or in --loras",
        "lora_scale": "how strongly the style applies: 0 = the base model, 1 = as trained",
    },
    "edit": {
        "video": SOURCE,
        "instruction": "what to change, e.g. 'make the circle yellow'",
        "edit_task": "the edit task (auto: read it from the instruction)",
        "guidance": "follow the instruction (or the prompt)",
        "source_guidance": "keep the source",
        "rewrite": "give the model the instruction (or prompt) as typed, not its canonical reading",
    },
    "sdedit": {
        "video": SOURCE,
        "prompt": "the result described, e.g. 'a blue star moving left on a white background'",
        "guidance": "follow the prompt",
        "strength": "1 = generate anew, near 0 = the source",
        "rewrite": "give the generator the prompt as typed, not the rewriter's canonical reading of it",
    },
    "upscale": {"video": "MP4, MOV, WebM, MKV, AVI, GIF, or a PNG/JPEG/WebP image"},
    "personalize": {
        "reference": "PNG, JPEG or WebP: one character alone on a plain background",
        "prompt": "e.g. 'the character moving right on a green background'",
        "reference_name": "the character's name, recorded with the result",
        "guidance": "follow the prompt (s_T)",
        "reference_guidance": "look like the reference",
    },
    "animate": {
        "image": "the first frame: PNG, JPEG, WebP... (or a clip: its first frame)",
        "prompt": "what happens, e.g. 'a red circle moving left on a blue background'",
        "last": "optionally the last frame, a picture as --image",
        "guidance": "follow the prompt (s_T)",
        "frames_guidance": "keep to the given pictures (s_F)",
        "frames": "frames to make, 2-32",
    },
    "extend": {
        "video": SOURCE,
        "prompt": "what happens next, e.g. 'the red circle moving right on a blue background'",
        "frames": "new frames (after the source's)",
        "seconds": "new seconds instead of --frames (up to 60: window after window)",
        "guidance": "follow the prompt (s_T)",
        "frames_guidance": "keep to the clip so far (s_F)",
    },
    "interpolate": {
        "video": SOURCE,
        "factor": "2 or 4: N frames become (N-1)*factor+1 at factor times the rate",
        "prompt": "optionally what the clip shows",
        "guidance": "follow the prompt (1: off)",
        "frames_guidance": "keep to the given frames (1: off)",
        "fps": "the rate the source is read at; the result has factor times it",
    },
}
HELP = {
    "frames": "1 = an image",
    "upscale": "then upscale the result in the same job (both are kept: OUT and OUT's .base file)",
}


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help, unless the help already says it (the request fields'
    are written in by add_fields) or there is none (an off switch, a flag without a value)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        switch = action.nargs == 0  # --quiet, --no-rewrite: off unless given
        if "default" in text or switch or action.default in (None, argparse.SUPPRESS):
            return text
        if not action.option_strings and action.nargs != argparse.OPTIONAL:
            return text
        return f"{text} (default: %(default)s)".lstrip()


def flag(name: str, prefix: str = "") -> str:
    """The flag of a field: `--kebab-case`, renamed fields by RENAMED, behind `prefix` if one."""
    return "--" + "-".join(p for p in (prefix, RENAMED.get(name, name)) if p).replace("_", "-")


def _dest(name: str, prefix: str) -> str:
    return f"{prefix}_{name}" if prefix else name


_SCALARS = {"str": str, "int": int, "float": float, "bool": bool}


def _scalar(annotation: Any) -> type:
    """str, int, float or bool from a field's annotation: its text (as `from __future__ import
    annotations` leaves it) or the type; `X | None` is X. Read per field, not by get_type_hints,
    so an annotation elsewhere on the class (a ClassVar, a TYPE_CHECKING import) cannot break it."""
    if isinstance(annotation, str):
        parts = [p.strip() for p in annotation.split("|")]
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
        parts = [getattr(a, "__name__", repr(a)) for a in typing.get_args(annotation)]
    else:
        parts = [getattr(annotation, "__name__", repr(annotation))]
    kinds = [_SCALARS.get(p) for p in parts if p not in ("None", "NoneType")]
    if len(kinds) != 1 or kinds[0] is None:
        raise TypeError(f"no command-line flag for a field of type {annotation!r}")
    return kinds[0]


def flaggable(request: type) -> bool:
    """Whether every field of the request can be a flag (add_fields raises TypeError if not)."""
    try:
        for f in dataclasses.fields(request):
            _scalar(f.type)
    except TypeError:
        return False
    return True


def _shown(value: Any) -> str:
    return repr(value) if value == "" else str(value)


def add_fields(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    request: type,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    prefix: str = "",
    defaults: dict[str, Any] | None = None,
    helps: dict[str, str] | None = None,
) -> None:
    """One flag per field of the request dataclass, in field order; `dest` is the field's name
    (behind `prefix`), so request_from builds the request back. A field without a default is a
    required flag unless `defaults` gives it one (None: optional, nothing shown); True booleans
    become `--no-<name>`, False ones `--<name>`."""
    task_help = TASK_HELP.get(getattr(request, "task", ""), {})
    wanted, skipped = (set(only) if only is not None else None), set(skip)
    for f in dataclasses.fields(request):
        if (wanted is not None and f.name not in wanted) or f.name in skipped:
            continue
        kind = _scalar(f.type)
        text = (helps or {}).get(f.name) or f.metadata.get("help") or task_help.get(f.name) or HELP.get(f.name, "")
        default = (defaults or {}).get(f.name, f.default)  # MISSING: a required flag
        dest = _dest(f.name, prefix)
        if kind is bool and default is not dataclasses.MISSING:
            on = "on" if default else "off"
            name = f"no-{f.name}" if default else f.name
            text = f"{text} (default: {f.name.replace('_', '-')} {on})".lstrip().replace("%", "%%")
            action = "store_false" if default else "store_true"
            p.add_argument(flag(name, prefix), dest=dest, action=action, default=default, help=text)
            continue
        name = flag(f.name, prefix)
        kwargs: dict[str, Any] = {"dest": dest, "type": kind, "metavar": name[2:].replace("-", "_").upper()}
        if choices := f.metadata.get("choices", CHOICES.get(f.name)):
            kwargs |= {"choices": list(choices), "metavar": None}  # argparse shows them: {a,b}
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            if default is not None:
                text = f"{text} (default: {_shown(default)})".lstrip()
        p.add_argument(name, help=text.replace("%", "%%"), **kwargs)


def request_from(request: type, args: argparse.Namespace, *, prefix: str = "", **given: Any) -> Any:
    """The request the parsed flags describe: each field from its flag where the parser had one,
    `given` over those, the field's own default for the rest."""
    dests = {f.name: _dest(f.name, prefix) for f in dataclasses.fields(request)}
    values = {name: getattr(args, dest) for name, dest in dests.items() if hasattr(args, dest)}
    return request(**(values | given))


def add_common(p: argparse.ArgumentParser) -> None:
    """The flags every command that loads an engine takes."""
    p.add_argument("--model", help="model folder (default: the shipped assets/models/shapes-v2)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    p.add_argument("--cache-dir", default="cache", help="latent cache folder ('' to disable)")
    p.add_argument(
        "--fp32",
        action="store_true",
        help="run the transformer in fp32 (default: bf16 autocast where the hardware runs it natively)",
    )
    p.add_argument("--loras", help="a folder of style adapters (LoRAs), one subfolder each, besides the model's loras/")


def make_engine(args: argparse.Namespace) -> Engine:
    from .engine import DEFAULT_MODEL, Engine

    return Engine(
        model=args.model or DEFAULT_MODEL,
        device=args.device,
        cache_dir=args.cache_dir,
        bf16=not args.fp32,
        loras=getattr(args, "loras", None),
    )


def _numbers(text: str, kind: type, flag: str) -> tuple:
    """A comma-separated flag value: "32,16,8" as ints, "1,4/3,16/9" as floats (fractions allowed)."""
    from fractions import Fraction

    try:
        return tuple(kind(Fraction(v.strip())) for v in text.split(",") if v.strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{flag} takes comma-separated numbers (fractions like 16/9 allowed), got {text!r}") from None


def add_encode(sub: argparse._SubParsersAction) -> None:
    """`encode`: a user's clips and captions into sharded latents to train on (engine/data)."""
    from .data.buckets import BucketConfig
    from .data.encode import EncodeConfig

    b, e = BucketConfig(), EncodeConfig()
    p = sub.add_parser(
        "encode", help="encode your own clips and captions into latents to train on", formatter_class=Formatter
    )
    p.add_argument(
        "--data",
        required=True,
        help="a folder of clips and images with same-stem .txt captions, or a .jsonl / .csv "
        "manifest (columns path, caption, optional start and end seconds)",
    )
    p.add_argument("--model", help="model folder whose tae and t2v text encoders encode (default: the shipped one)")
    p.add_argument("--out", required=True, help="folder for the shards and index.json (run again to resume)")
    p.add_argument("--size", type=int, default=b.size, help="a square bucket's side; other aspects keep its area")
    p.add_argument("--frames", default=",".join(map(str, b.frames)), help="window lengths, longest that fits")
    p.add_argument("--fps", type=float, default=b.fps, help="the rate clips are resampled to")
    p.add_argument("--aspects", default="1,4/3,3/4,16/9,9/16", help="bucket aspects, width / height")
    p.add_argument("--shard-size", type=int, default=e.shard_size, help="samples a shard")
    p.add_argument("--windows-per-clip", type=int, default=e.windows_per_clip, help="0 = every non-overlapping window")
    p.add_argument("--batch", type=int, default=e.batch, help="windows the TAE encodes at once")
    p.add_argument("--device", help="cpu, cuda ... (default: cuda:LOCAL_RANK if present)")
    p.add_argument("--quiet", action="store_true", help="only the summary, not a line per clip")
    p.add_argument(
        "--text-encoder",
        action="append",
        default=[],
        metavar="DIR",
        help="a local transformers text encoder (T5, CLIP text) to read the captions too; training uses it",
    )
    p.add_argument("--no-words", action="store_true", help="leave out the world's word encoder")
    p.set_defaults(fn=cmd_encode)


def cmd_encode(args: argparse.Namespace) -> int:
    """Encode --data with --model's TAE and text encoders into --out; under torchrun (RANK and
    WORLD_SIZE set) each rank encodes its share and rank 0 writes the index."""
    import os
    import sys
    from datetime import timedelta
    from pathlib import Path

    import torch

    from .checkpoint import file_digest, load_component
    from .data.buckets import BucketConfig
    from .data.encode import EncodeConfig, encode_footage
    from .data.footage import read_footage
    from .engine import DEFAULT_MODEL
    from .models.generator import Generator, GeneratorConfig
    from .models.tae import TAE, TAEConfig
    from .models.text import HFEncoderConfig, TextConditioner

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", rank))
    device = torch.device(args.device or (f"cuda:{local}" if torch.cuda.is_available() else "cpu"))
    buckets = BucketConfig(
        size=args.size,
        aspects=_numbers(args.aspects, float, "--aspects"),
        frames=_numbers(args.frames, int, "--frames"),
        fps=args.fps,
    )
    cfg = EncodeConfig(buckets, shard_size=args.shard_size, windows_per_clip=args.windows_per_clip, batch=args.batch)
    footage = read_footage(args.data)
    model = Path(args.model or DEFAULT_MODEL)
    tae = load_component(model / "tae", TAE, TAEConfig, device)
    # The generator's text encoders only (their projections train): the rest is dropped here.
    text = load_component(model / "t2v", Generator, GeneratorConfig).text
    if args.text_encoder or args.no_words:
        # Other encoders than the model's: what training reads (index.json's text_config) follows.
        extra = tuple(HFEncoderConfig(str(Path(p).resolve())) for p in args.text_encoder)
        tcfg = dataclasses.replace(
            text.cfg, words=None if args.no_words else text.cfg.words, extra=text.cfg.extra + extra
        )
        own = TextConditioner(tcfg, 1)
        if tcfg.words is not None:
            own.encoders[0].load_state_dict(text.encoders[0].state_dict())
        for i, _ in enumerate(text.cfg.extra):  # the model's own transformers encoders, as they were
            own.encoders[i + (tcfg.words is not None)] = text.encoders[i + 1]
        text = own.requires_grad_(False).eval()
    text = text.to(device)

    def log(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    if rank == 0:
        print(f"{len(footage.items)} items in {args.data}, {len(footage.problems)} skipped", file=sys.stderr)
    barrier = lambda: None  # noqa: E731
    if world > 1:
        import torch.distributed as dist

        # gloo whatever the device: only the barrier crosses ranks, and ranks can finish hours apart.
        dist.init_process_group("gloo", timeout=timedelta(hours=24))
        barrier = dist.barrier
    try:
        ids = {"tae_id": file_digest(model / "tae"), "text_id": file_digest(model / "t2v")}
        report = encode_footage(footage, tae, text, cfg, args.out, rank, world, log, barrier=barrier, **ids)
    finally:
        if world > 1:
            dist.destroy_process_group()
    if rank == 0:
        print(report.summary(), file=sys.stderr)
        print(report.index)
    return 0
