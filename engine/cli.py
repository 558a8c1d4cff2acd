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


def make_engine(args: argparse.Namespace) -> Engine:
    from .engine import DEFAULT_MODEL, Engine

    return Engine(model=args.model or DEFAULT_MODEL, device=args.device, cache_dir=args.cache_dir, bf16=not args.fp32)
