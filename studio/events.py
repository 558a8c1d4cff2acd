"""What every tab does with its handler's event stream: progress bar, status line, errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import gradio as gr

from engine.requests import Progress, Result
from engine.video_io import read_image, read_video


def progress_event(ev: Progress, tag: str = "") -> dict:
    """A tab's status line and progress bar for one engine step."""
    return {
        "status": f"{tag}step {ev.step}/{ev.total} · {ev.elapsed:.1f}s · ETA {ev.eta:.1f}s",
        "progress": (ev.step, ev.total),
    }


def made_from(ev: Result) -> Result:
    """The clip a tab made: the result, or for one upscaled in the same job the clip it was made
    from (written beside it, with its own metadata)."""
    base = ev.metadata.get("upscaled_from")
    if not base:
        return ev
    path = Path(ev.path).with_name(base["name"])
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        meta = {"request": base.get("request", {})}
    frames = read_image(path)[None] if path.suffix == ".png" else read_video(path)[0]
    return Result(path=path, metadata=meta, frames=frames)


def stream_updates(events: Iterable[dict], progress, status, fill: Callable[[dict, dict], None]) -> Iterator[dict]:
    """Gradio updates for a tab's events: the progress bar and status line, an error as a warning
    (a stopped job is not one) that ends the stream; fill(event, updates) adds the tab's own."""
    for ev in events:
        if "progress" in ev:
            progress(ev["progress"], desc=ev["status"])
        if "error" in ev:
            if not ev.get("cancelled"):
                gr.Warning(ev["error"])
            yield {status: f"**{ev['error']}**"}
            return
        out = {status: ev["status"]} if "status" in ev else {}
        fill(ev, out)
        yield out
