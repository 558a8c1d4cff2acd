"""What a user points at to train on: a folder of clips and images with captions, or a manifest.

A folder (read recursively) holds clips in any container PyAV reads and still images, each with
a same-stem `.txt` caption beside it (musubi-tuner's and diffusion-pipe's layout). A manifest is
a `.jsonl` file (one JSON object a line) or a `.csv` file with a header, with columns `path`
(relative to the manifest's folder, or absolute), `caption`, and optional `start` and `end`
seconds (a cut of a longer clip). Anything unusable (a missing or empty caption, a missing file, a
bad row) is reported in plain words and skipped: one stray file must not cost a night's run.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp", ".ogv"}
)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
MANIFEST_SUFFIXES = (".jsonl", ".csv")
ACCEPTED = (
    "a folder of clips (MP4, MOV, MKV, WebM, AVI, GIF...) and images (PNG, JPEG, WebP), each with a "
    "same-stem .txt caption beside it, or a .jsonl / .csv manifest with columns path, caption and "
    "optional start and end (seconds)"
)


@dataclass(frozen=True)
class Item:
    path: Path  # absolute
    caption: str  # whitespace runs collapsed to one space
    kind: Literal["video", "image"]  # by the file's suffix: a GIF is a video
    start: float = 0.0  # seconds into the clip (a manifest's cut); 0 for images
    end: float | None = None  # None: to the clip's end


@dataclass(frozen=True)
class Footage:
    root: Path  # the folder, or the manifest's folder: names in shards and problems are relative to it
    items: list[Item] = field(default_factory=list)  # sorted paths (a folder) or the manifest's order
    problems: list[str] = field(default_factory=list)  # what was skipped and why, one line each

    def name(self, item: Item) -> str:
        """The item's path as the user knows it: relative to the root where it lies under it."""
        return _rel(item.path, self.root)


def read_footage(path: str | Path) -> Footage:
    """The usable items under `path` (a folder or a manifest) and what was skipped.

    Raises ValueError only when the path does not exist, is not something accepted, or holds
    nothing usable; the message says what is accepted and the first problems found."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{path} does not exist. Give {ACCEPTED}.")
    if path.is_dir():
        footage = _read_folder(path.resolve())
    elif path.suffix.lower() in MANIFEST_SUFFIXES:
        footage = _read_manifest(path.resolve())
    else:
        raise ValueError(f"{path} is neither a folder nor a .jsonl / .csv manifest. Give {ACCEPTED}.")
    if not footage.items:
        shown = "; ".join(footage.problems[:5]) or "it is empty"
        more = f" (and {len(footage.problems) - 5} more)" if len(footage.problems) > 5 else ""
        raise ValueError(f"Nothing usable in {path}: {shown}{more}. Give {ACCEPTED}.")
    return footage


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _kind(path: Path) -> Literal["video", "image"]:
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def _file_problem(path: Path) -> str | None:
    """Why a named file cannot be used before anything decodes it, or None."""
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "a folder, not a file"
    if path.stat().st_size == 0:
        return "empty (0 bytes)"
    return None


def _caption(text: str) -> str:
    return " ".join(text.split())


def _read_folder(root: Path) -> Footage:
    def hidden(p: Path) -> bool:  # .DS_Store, .git/, editors' swap files
        return any(part.startswith(".") for part in p.relative_to(root).parts)

    files = sorted((p for p in root.rglob("*") if p.is_file() and not hidden(p)), key=lambda p: _rel(p, root))
    media_suffixes = VIDEO_SUFFIXES | IMAGE_SUFFIXES
    media_stems = {p.with_suffix("") for p in files if p.suffix.lower() in media_suffixes}
    items: list[Item] = []
    problems: list[str] = []
    for p in files:
        name, suffix = _rel(p, root), p.suffix.lower()
        if suffix == ".txt":
            if p.with_suffix("") not in media_stems:
                problems.append(f"{name}: a caption with no clip or image of the same name beside it; skipped")
            continue
        if suffix in MANIFEST_SUFFIXES:
            problems.append(f"{name}: a manifest inside a folder is not read; give its path to use it instead")
            continue
        if suffix not in media_suffixes:
            problems.append(f"{name}: not a clip or image (by its suffix); skipped")
            continue
        if (why := _file_problem(p)) is not None:
            problems.append(f"{name}: {why}; skipped")
            continue
        txt = p.with_suffix(".txt")
        if not txt.is_file():
            problems.append(f"{name}: no caption (expected {_rel(txt, root)} beside it); skipped")
            continue
        try:
            caption = _caption(txt.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            problems.append(f"{name}: its caption {_rel(txt, root)} is not UTF-8 text; skipped")
            continue
        if not caption:
            problems.append(f"{name}: its caption {_rel(txt, root)} is empty; skipped")
            continue
        items.append(Item(p, caption, _kind(p)))
    return Footage(root, items, problems)


def _seconds(value: object, column: str) -> float | None:
    """An optional time column: None when absent or blank, else a finite number >= 0."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):  # JSON true is an int to Python, not a time
        raise ValueError(f"{column} must be a number of seconds, got {value!r}")
    try:
        t = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{column} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"{column} must be a number of seconds >= 0, got {value!r}")
    return t


def _row(entry: object, base: Path) -> Item:
    """One manifest row as an Item; ValueError says what is wrong with it."""
    if not isinstance(entry, dict):
        raise ValueError(f"expected an object with path and caption, got {type(entry).__name__}")
    raw_path, raw_caption = entry.get("path"), entry.get("caption")
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise ValueError("no path")
    if raw_caption is None:
        raise ValueError(f"{raw_path}: no caption")
    if not isinstance(raw_caption, str):
        raise ValueError(f"{raw_path}: the caption must be text, got {raw_caption!r}")
    caption = _caption(raw_caption)
    if not caption:
        raise ValueError(f"{raw_path}: the caption is empty")
    start, end = _seconds(entry.get("start"), "start"), _seconds(entry.get("end"), "end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"{raw_path}: end ({end:g} s) must come after start ({start:g} s)")
    path = Path(raw_path.strip()).expanduser()
    path = (path if path.is_absolute() else base / path).resolve()
    if (why := _file_problem(path)) is not None:
        raise ValueError(f"{raw_path}: {why}")
    kind = _kind(path)
    if kind == "image":
        return Item(path, caption, kind)  # a still has no time to cut
    return Item(path, caption, kind, start or 0.0, end)


def _read_manifest(manifest: Path) -> Footage:
    base, items, problems = manifest.parent, [], []

    def add(line: int, entry: object) -> None:
        try:
            items.append(_row(entry, base))
        except ValueError as e:
            problems.append(f"{manifest.name} line {line}: {e}; skipped")

    try:
        text = manifest.read_text(encoding="utf-8-sig")  # a spreadsheet's CSV often starts with a BOM
    except UnicodeDecodeError:
        raise ValueError(f"{manifest} is not UTF-8 text. Give {ACCEPTED}.") from None
    if manifest.suffix.lower() == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"{manifest.name} line {n}: not valid JSON ({e.msg}); skipped")
                continue
            add(n, entry)
    else:
        rows = csv.reader(text.splitlines(keepends=True))
        columns = [c.strip() for c in next(rows, [])]
        if "path" not in columns or "caption" not in columns:
            raise ValueError(
                f"{manifest} has no path and caption columns in its header (it has: {', '.join(columns) or 'none'}). "
                f"Give {ACCEPTED}."
            )
        end = rows.line_num  # the header's last line
        for row in rows:
            first, end = end + 1, rows.line_num  # a quoted caption may span lines: its row starts at `first`
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(columns):
                problems.append(f"{manifest.name} line {first}: more fields than the header has columns; skipped")
                continue
            add(first, dict(zip(columns, row, strict=False)))  # a short row lacks its last columns
    return Footage(base, items, problems)
