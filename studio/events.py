"""What every tab shares: its handler's event stream (progress bar, status line, errors), the
live preview, whose job a cancel token is, and writing the files it shows besides results."""

from __future__ import annotations

import base64
import errno
import io
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from engine.requests import Progress, Result

# What the upload boxes offer (any of them can be read by the engine; an image is one frame).
VIDEO_TYPES = [".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif", ".m4v", ".png", ".jpg", ".jpeg", ".webp"]


log = logging.getLogger("studio")


def user_error(message: str) -> gr.Error:
    """What a user is told when a request cannot be done: one line on the page and one line in
    the terminal's log, not a traceback (it is not a fault of the studio's)."""
    log.info("told the user: %s", message)
    return gr.Error(message, print_exception=False)


def session_key(request) -> str:
    """Whose job a cancel token is: the page session, with its signed-in user, so one user (or a
    caller not signed in at all) can never stop or end another's job by naming its session."""
    session = getattr(request, "session_hash", None) or "local"
    user = getattr(request, "username", None)
    return f"{user}/{session}" if user else session


def progress_event(ev: Progress, tag: str = "") -> dict:
    """A tab's status line and progress bar for one engine step."""
    return {
        "status": f"{tag}step {ev.step}/{ev.total} · {ev.elapsed:.1f}s · ETA {ev.eta:.1f}s",
        "progress": (ev.step, ev.total),
    }


def made_from(ev: Result) -> Result:
    """The clip a tab made: the result, or for one upscaled in the same job the clip it was made
    from (written beside it, with its own metadata; its frames are read only when asked for)."""
    base = ev.metadata.get("upscaled_from")
    if not base:
        return ev
    path = Path(ev.path).with_name(base["name"])
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        meta = {"request": base.get("request", {})}
    return Result(path=path, metadata=meta)


def shown_files_error(e: OSError, name: str) -> dict:
    """{"error"} for a tab that could not write what it shows of an upload (the source as the model
    sees it, frames to pick from): the cause, and what to do."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return {"error": f"Could not prepare {name} to show it: the disk is full. Free some disk space and try again."}
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return {"error": f"Could not prepare {name} to show it: the studio's folder cannot be written."}
    return {"error": f"Could not prepare {name} to show it ({e.strerror or e}); try again."}


def write_shown(path: Path, write: Callable[[Path], object]) -> Path:
    """Write a file a tab shows through `part-<name>` and a rename: complete, or not there (a
    failure removes the part and raises)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name("part-" + path.name)
    try:
        write(part)
        part.replace(path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return path


def save_npy(path: Path, frames: np.ndarray) -> None:
    """np.save through a file that is closed (and so complete) before it is renamed."""
    with open(path, "wb") as f:
        np.save(f, frames)


def live_preview(elem_id: str) -> gr.HTML:
    """The box a tab's preview streams into, every step. HTML with the image inline: an image
    component would have Gradio write a file per step into its temporary folder (50 a default job)."""
    return gr.HTML(
        # Below the box's label, which Gradio draws over the top of its content.
        '<div class="live-preview-empty" style="padding-top:1.8em">The preview shows here while a job runs.</div>',
        label="Live preview (latent → RGB, every step)",
        show_label=True,
        container=True,  # the labelled box the image preview had
        elem_id=elem_id,
    )


def preview_html(strip: np.ndarray, height: int = 160) -> str:
    """A preview strip (H, W, 3) uint8 as an inline PNG, shown at most `height` px high."""
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, format="PNG", compress_level=1)  # fast: a new one every step
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{data}" alt="preview" '
        f'style="max-height:{height}px; max-width:100%; display:block; margin:1.8em auto 0">'
    )


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
