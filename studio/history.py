"""The outputs folder as a history: every result is an MP4 (or PNG) with a JSON sidecar of its
request. Reading the folder is the only state, so history survives reloads and restarts.

Files that go with a result are named after it and have no JSON of their own, so they are never
listed: its thumbnail (`<id>.thumb.png`) and the files its metadata names under `files` (an
upscale's bicubic enlargement, `<id>.bicubic.mp4`; a personalized clip's reference as the model saw
it, `<id>.reference.png`). Deleting a result deletes them with it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from engine.outputs import SIDECARS  # <id>.thumb.png, <id>.bicubic.mp4, <id>.reference.png

MEDIA = (".mp4", ".png")
EDITS = ("edit", "sdedit")  # the Edit tab's tasks: say what to change, or describe the result
# The Animate tab's tasks, one part each: picture to clip, continue a clip, fill in frames.
ANIMATIONS = ("animate", "extend", "interpolate")


def describes(request: dict) -> bool:
    """An edit that describes its result (SDEdit): its own task now, an edit's mode in older results."""
    return request.get("task") == "sdedit" or (request.get("task") == "edit" and request.get("mode") == "sdedit")


@dataclass(frozen=True)
class Entry:
    id: str  # the file stem, unique in the folder
    media: Path
    thumb: Path | None
    meta: dict

    @property
    def request(self) -> dict:
        return self.meta.get("request", {})

    @property
    def task(self) -> str:
        return self.request.get("task", "t2v")

    @property
    def prompt(self) -> str:
        """What was asked: the prompt, or for an edit its instruction (or the result described)."""
        r = self.request
        if self.task in EDITS:
            return f"edit: {r.get('prompt', '') if describes(r) else r.get('instruction', '')}"
        if self.task == "upscale":
            made_from = self.meta.get("upscaled_from")  # generated (or edited) and upscaled in one job
            what = (
                Entry("", self.media, None, {"request": made_from.get("request", {})}).prompt
                if made_from
                else self.meta.get("source", {}).get("name") or Path(r.get("video", "")).name
            )
            return f"upscale {r.get('scale', 4)}x: {what}"
        if self.task == "personalize":
            return f"{self.character}: {r.get('prompt', '')}"
        if self.task == "animate":
            return f"animate: {r.get('prompt', '')}"
        if self.task == "extend":
            return f"continue: {r.get('prompt', '')}"
        if self.task == "interpolate":  # the prompt is optional: else the clip it filled in
            return f"fill in {r.get('factor', 2)}x: {r.get('prompt') or self.source_name}"
        return r.get("prompt", "")

    @property
    def source_name(self) -> str:
        """The file a result was made from (an edit's, a continuation's...), as it was named."""
        return self.meta.get("source", {}).get("name") or Path(self.request.get("video", "")).name

    @property
    def character(self) -> str:
        """A personalized clip's character: the saved character's name, else the reference's file."""
        ref = self.meta.get("reference", {})
        return self.request.get("reference_name") or ref.get("name") or Path(self.request.get("reference", "")).name

    @property
    def seed(self) -> int:
        return int(self.request.get("seed", 0))

    @property
    def created(self) -> str:
        raw = self.meta.get("created")
        try:
            return datetime.fromisoformat(raw).astimezone().strftime("%Y-%m-%d %H:%M:%S") if raw else ""
        except ValueError:
            return raw or ""

    @property
    def fps(self) -> float:
        """The result's frame rate: the request's, or for an upscale its source's; frames filled in
        play at `factor` times the rate the source was read at."""
        fps = float(self.request.get("fps") or self.meta.get("source", {}).get("fps") or 8.0)
        return fps * int(self.request.get("factor") or 2) if self.task == "interpolate" else fps

    @property
    def is_video(self) -> bool:
        return self.media.suffix == ".mp4"

    def label(self) -> str:
        return f"{self.created} · seed {self.seed} · {self.prompt[:60]}"

    def settings_text(self) -> str:
        r = self.request
        if self.task in EDITS:
            parts = [f"seed {r.get('seed')}", f"{r.get('steps')} steps"]
            if describes(r):
                parts += [f"guidance {r.get('guidance')}", f"strength {r.get('strength')}"]
            else:
                parts += [f"follow {r.get('guidance')}", f"keep source {r.get('source_guidance')}"]
                parts.append(f"task {self.meta.get('edit_task') or r.get('edit_task')}")
            parts.append(f"source {self.meta.get('source', {}).get('name') or Path(r.get('video', '')).name}")
            return " · ".join(str(p) for p in parts if p)
        if self.task == "upscale":
            (w, h), (big_w, big_h) = self.meta.get("input_size", ["?", "?"]), self.meta.get("size", ["?", "?"])
            parts = [
                f"seed {r.get('seed')}",
                f"{r.get('steps')} steps",
                f"{r.get('scale')}x",
                f"{w}x{h} -> {big_w}x{big_h}",
            ]
            made_from = self.meta.get("upscaled_from")
            source = made_from["name"] if made_from else self.meta.get("source", {}).get("name")
            parts.append(f"from {source}")
            return " · ".join(str(p) for p in parts if p)
        if self.task == "personalize":
            parts = [f"seed {r.get('seed')}", f"{r.get('steps')} steps", f"follow {r.get('guidance')}"]
            parts += [f"look like {r.get('reference_guidance')}", f"{r.get('frames')} frames", f"{r.get('size')} px"]
            parts.append(f"reference {self.character}")
            return " · ".join(str(p) for p in parts if p)
        if self.task in ANIMATIONS:
            return " · ".join(str(p) for p in self._animation_settings() if p)
        parts = [f"seed {r.get('seed')}", f"{r.get('steps')} steps", f"guidance {r.get('guidance')}"]
        # Width and height 0 (and requests saved before they existed): the square at `size`.
        width, height = r.get("width") or r.get("size"), r.get("height") or r.get("size")
        shape = f"{width} px" if width == height else f"{width}x{height} px"
        parts += [f"{r.get('frames')} frames", shape, r.get("schedule", "")]
        if r.get("lora"):  # the style adapter, with its digest as the result recorded it
            digest = self.meta.get("lora", {}).get("digest", "")
            parts.append(f"style {r['lora']} x{r.get('lora_scale', 1.0):g}" + (f" ({digest[:8]})" if digest else ""))
        if r.get("negative_prompt"):
            parts.append(f"not: {r['negative_prompt']}")
        return " · ".join(str(p) for p in parts if p)

    def _animation_settings(self) -> list:
        """An Animate tab result's settings: what it was given, and what it made of it."""
        r, m = self.request, self.meta
        parts = [f"seed {r.get('seed')}", f"{r.get('steps')} steps"]
        if self.task == "animate":
            parts += [f"follow {r.get('guidance')}", f"keep to the pictures {r.get('frames_guidance')}"]
            parts += [
                f"{r.get('frames')} frames",
                f"from {m.get('image', {}).get('name') or Path(r.get('image', '')).name}",
            ]
            if m.get("last") or r.get("last"):
                parts.append(f"to {m.get('last', {}).get('name') or Path(r.get('last', '')).name}")
            return parts
        windows = m.get("windows", 1)
        windows = f"{windows} window{'s' if windows != 1 else ''}"
        if self.task == "extend":
            parts += [f"follow {r.get('guidance')}", f"keep to the clip {r.get('frames_guidance')}"]
            new = m.get("new_frames") or r.get("frames")
            seconds = f" ({r['seconds']:g} s)" if r.get("seconds") else ""
            return [*parts, f"+{new} frames{seconds}", windows, f"from {self.source_name}"]
        fps = float(r.get("fps") or 8.0)
        return [*parts, f"{r.get('factor')}x, {fps:g} -> {self.fps:g} fps", windows, f"from {self.source_name}"]


class History:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def entries(self) -> list[Entry]:
        """Newest first; files without a readable sidecar are skipped, not fatal."""
        out = []
        if not self.folder.is_dir():
            return out
        for side in self.folder.glob("*.json"):
            if side.stem.endswith(SIDECARS):
                continue
            media = next((side.with_suffix(s) for s in MEDIA if side.with_suffix(s).is_file()), None)
            if media is None:
                continue
            try:
                meta = json.loads(side.read_text())
            except (OSError, ValueError):
                continue
            thumb = side.with_name(side.stem + ".thumb.png")
            out.append(Entry(side.stem, media, thumb if thumb.is_file() else None, meta))
        out.sort(key=lambda e: (e.meta.get("created", ""), e.id), reverse=True)
        return out

    def get(self, entry_id: str) -> Entry | None:
        return next((e for e in self.entries() if e.id == entry_id), None)

    def delete(self, entry_id: str) -> bool:
        """Remove a result's files (media, JSON, thumbnail and the sidecars its metadata names); only
        names inside the folder are touched, and never another result's (`<id>.base.mp4` is one)."""
        if not _plain_name(entry_id):
            return False
        names = {f"{entry_id}{part}{suffix}" for part in ("", *SIDECARS) for suffix in MEDIA} | {f"{entry_id}.json"}
        try:
            files = json.loads((self.folder / f"{entry_id}.json").read_text()).get("files", {})
        except (OSError, ValueError, AttributeError):
            files = {}
        names |= {n for n in files.values() if isinstance(n, str) and _plain_name(n) and n.startswith(entry_id + ".")}
        found = False
        for name in names:
            f = self.folder / name
            if f.is_file():
                f.unlink(missing_ok=True)
                found = True
        return found


def _plain_name(name) -> bool:
    """A file name inside the folder: no path separators, not hidden, not empty."""
    return bool(name) and isinstance(name, str) and "/" not in name and "\\" not in name and not name.startswith(".")
