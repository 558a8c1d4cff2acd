"""Writing a result: the clip (MP4, or PNG for one frame) with its request inside, the clips that
go with it (sidecars), a thumbnail, and the JSON beside it, written last and atomically so History
lists a result only once it is whole. A failure removes everything of the result written so far.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .requests import RequestError
from .video_io import write_png, write_video

OUTPUT_SUFFIXES = (".mp4", ".png")


def write_result(
    frames: np.ndarray | Iterator[np.ndarray],
    count: int,
    req,  # the request (its task and seed name a fresh file)
    meta: dict,
    out: str | Path | None,
    folder: Path,
    fps: float,
    audio_from: Path | None,
    sidecars: dict[str, np.ndarray | Callable[[], Iterator[np.ndarray]]] | None = None,
) -> Path:
    """Write a result of `count` frames: the clip (T, H, W, 3), or its parts in order, each
    encoded as it comes (a streamed job: the clip is never whole in memory)."""
    image = count == 1 and (out is None or Path(out).suffix.lower() == ".png")
    if image and not isinstance(frames, np.ndarray):
        frames = np.concatenate(list(frames))  # one frame
    if out is None:  # a fresh name in the folder
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        out = Path(folder) / f"{stamp}-{req.task}-{req.seed}{'.png' if image else '.mp4'}"
    out = Path(out)
    written: list[Path] = []  # everything of this result, removed again if any part fails
    try:
        # Clips that go with the result (the upscaler's bicubic baseline), named after it.
        for name, clip in (sidecars or {}).items():
            # A still beside a clip (a reference) is a PNG; a callable gives a clip of the
            # result's length in parts.
            still = image or (len(clip) if isinstance(clip, np.ndarray) else count) == 1
            clip = clip if isinstance(clip, np.ndarray) else clip()
            side = out.with_name(f"{out.stem}.{name}{'.png' if still else out.suffix}")
            written.append(side)
            if still:
                write_png(side, clip[0] if isinstance(clip, np.ndarray) else next(iter(clip))[0])
            else:
                write_video(side, clip, fps, {}, count=count)
            meta.setdefault("files", {})[name] = side.name
        written.append(out)
        # The middle frame (a thumbnail for history lists), kept as the parts go by.
        mid: list[np.ndarray] = []
        if image:
            write_png(out, frames[0], meta)
            mid.append(frames[0])
        else:
            write_video(out, keep_frame(frames, count // 2, mid), fps, meta, audio_from=audio_from, count=count)
        # At least 128 px; nearest keeps it crisp.
        k = max(1, 128 // max(mid[0].shape[:2]))
        thumb = out.with_name(out.stem + ".thumb.png")
        written.append(thumb)
        write_png(thumb, mid[0].repeat(k, 0).repeat(k, 1))
        # The JSON last, atomically: History lists a result only once it is whole.
        sidecar = out.with_suffix(".json")
        written.append(sidecar)
        write_atomic(sidecar, (json.dumps(meta, indent=2) + "\n").encode())
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return out


def keep_frame(frames: np.ndarray | Iterable[np.ndarray], index: int, into: list) -> Iterator[np.ndarray]:
    """The clip's parts as they come, with frame `index` copied into `into` on the way."""
    parts = [frames] if isinstance(frames, np.ndarray) else frames
    at = 0
    for part in parts:
        if at <= index < at + len(part):
            into.append(part[index - at].copy())
        at += len(part)
        yield part


def write_error(e: OSError) -> str:
    """The real cause of a failed write, for the user."""
    where = f" to {e.filename}" if getattr(e, "filename", None) else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"Could not write the result{where}: the disk is full. Free some disk space and try again."
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Could not write the result{where}: permission denied (a read-only or protected place)."
    return f"Could not write the result{where} ({e.strerror or e})."


def check_out(out: str | Path | None, frames: int | None) -> None:
    """Refuse an output name the engine cannot honour, before anything runs (frames None: not
    known yet)."""
    if out is None:
        return
    out = Path(out)
    if out.is_dir():
        raise RequestError(f"Cannot write {str(out)!r}: it is a folder; give a file name such as {out / 'out.mp4'}.")
    folder = out.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RequestError(f"Cannot write {str(out)!r}: {str(existing)!r} is a file, not a folder.")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise RequestError(f"Cannot write {str(out)!r}: the folder {str(existing)!r} is not writable.")
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise RequestError(
            f"Cannot write {Path(out).name!r}: outputs are .mp4 (H.264, plays in a browser) or .png (with --frames 1)."
        )
    if suffix == ".png" and frames is not None and frames != 1:
        raise RequestError("A .png output holds one frame: use --frames 1 (or an image source), or an .mp4 output.")
