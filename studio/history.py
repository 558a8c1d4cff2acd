"""The outputs folder as a history: every result is an MP4 (or PNG) with a JSON sidecar of its
request. Reading the folder is the only state, so history survives reloads and restarts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

MEDIA = (".mp4", ".png")


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
        if self.task == "edit":
            text = r.get("instruction", "") if r.get("mode", "instruction") == "instruction" else r.get("prompt", "")
            return f"edit: {text}"
        return r.get("prompt", "")

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
    def is_video(self) -> bool:
        return self.media.suffix == ".mp4"

    def label(self) -> str:
        return f"{self.created} · seed {self.seed} · {self.prompt[:60]}"

    def settings_text(self) -> str:
        r = self.request
        if self.task == "edit":
            parts = [f"seed {r.get('seed')}", f"{r.get('steps')} steps"]
            if r.get("mode", "instruction") == "instruction":
                parts += [f"follow {r.get('guidance')}", f"keep source {r.get('source_guidance')}"]
                parts.append(f"task {self.meta.get('edit_task') or r.get('edit_task')}")
            else:
                parts += [f"guidance {r.get('guidance')}", f"strength {r.get('strength')}"]
            parts.append(f"source {self.meta.get('source', {}).get('name') or Path(r.get('video', '')).name}")
            return " · ".join(str(p) for p in parts if p)
        parts = [f"seed {r.get('seed')}", f"{r.get('steps')} steps", f"guidance {r.get('guidance')}"]
        parts += [f"{r.get('frames')} frames", f"{r.get('size')} px", r.get("schedule", "")]
        if r.get("negative_prompt"):
            parts.append(f"not: {r['negative_prompt']}")
        return " · ".join(str(p) for p in parts if p)


class History:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def entries(self) -> list[Entry]:
        """Newest first; files without a readable sidecar are skipped, not fatal."""
        out = []
        if not self.folder.is_dir():
            return out
        for side in self.folder.glob("*.json"):
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
        """Remove a result's files; only names inside the folder are touched."""
        if not entry_id or "/" in entry_id or "\\" in entry_id or entry_id.startswith("."):
            return False
        found = False
        for f in self.folder.glob(f"{entry_id}.*"):
            if f.stem.split(".")[0] == entry_id or f.name.startswith(entry_id + "."):
                f.unlink(missing_ok=True)
                found = True
        return found
