"""Taking a frame from a clip: a tab that takes a picture (the Personalize tab's reference, the
Animate tab's first or last picture) can be given a clip instead (a result sent there, or an upload)
and lets the user pick one of its frames. Plain methods, so tests drive them without a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.requests import RequestError
from engine.video_io import VideoInputError, write_png

from .events import save_npy, shown_files_error
from .handler import shown_once


class FrameTaking:
    """A part of a tab's handlers: `engine` reads the clip, `workdir` keeps its frames and the frames
    taken from it, named by content (a clip sent twice is read once)."""

    engine: Any
    workdir: Path

    def take_from(self, clip) -> dict:
        """A clip (or an image) to take a frame from: {"frames" (a .npy of them), "count", "name",
        "summary"}; {"error"} when it cannot be read; {} for none."""
        if not clip:
            return {}
        path = Path(clip)
        try:
            got = self.engine.take_frames(path)
        except (VideoInputError, RequestError) as e:
            return {"error": str(e)}
        frames = got.frames
        try:
            npy = shown_once(self.workdir / f"take-{got.digest[:16]}-{len(frames)}.npy", lambda p: save_npy(p, frames))
        except OSError as e:
            return shown_files_error(e, path.name)
        return {
            "frames": str(npy),
            "count": len(frames),
            "name": path.stem,
            "digest": got.digest,
            "summary": f"{path.name}: {got.summary}",
        }

    def frame(self, taken: dict | None, k) -> np.ndarray | None:
        """Frame k of a clip loaded by take_from (clamped to the clip), or None."""
        if not taken or "frames" not in taken or not Path(taken["frames"]).is_file():
            return None
        frames = np.load(taken["frames"], mmap_mode="r")
        return np.array(frames[int(np.clip(int(k or 0), 0, len(frames) - 1))])

    def use_frame(self, taken: dict | None, k) -> str:
        """Frame k written as a PNG (named after the clip and the frame), to become the tab's picture."""
        image = self.frame(taken, k)
        if image is None:
            raise ValueError("Send a result here (or upload a clip) first, then pick a frame.")
        k = int(np.clip(int(k or 0), 0, taken["count"] - 1))
        folder = self.workdir / f"frames-{taken['digest'][:16]}"
        return str(write_png(folder / f"{_safe_stem(taken['name'])}-frame-{k}.png", image))


def _safe_stem(name: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(name))[:60].strip("-.")
    return stem or "clip"
