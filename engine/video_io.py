"""Reading and writing video with PyAV: what users upload and what the studio plays back.

Readers check every limit from the container's header before decoding a single frame, and
fail with a `VideoInputError` that says what was wrong and what is accepted.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class VideoInputError(ValueError):
    """An input the studio cannot use; the message is meant for the user."""


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int = 200 * 1024 * 1024
    max_seconds: float = 120.0
    max_frames: int = 2400
    max_side: int = 4096


ACCEPTED = "MP4, MOV, WebM, MKV, AVI or GIF video (or a PNG/JPEG image)"


def _rotation(stream: av.video.stream.VideoStream, frame: av.VideoFrame | None = None) -> int:
    """Counter-clockwise display rotation in degrees (phones store portrait video as rotated
    landscape). The display matrix (frame.rotation) is counter-clockwise; the legacy `rotate`
    tag older muxers wrote is clockwise, so it is negated."""
    rot = getattr(frame, "rotation", None) if frame is not None else None
    if rot:
        return int(rot) % 360
    meta = stream.metadata or {}
    try:
        return -int(float(meta.get("rotate", 0))) % 360
    except ValueError:
        return 0


def probe(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> dict:
    """Header facts (frames, fps, size, duration) checked against limits; decodes nothing."""
    path = Path(path)
    if not path.is_file():
        raise VideoInputError(f"{path.name}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise VideoInputError(f"{path.name} is empty (0 bytes). Accepted: {ACCEPTED}.")
    if size > limits.max_bytes:
        raise VideoInputError(f"{path.name} is {size / 2**20:.0f} MB; the limit is {limits.max_bytes / 2**20:.0f} MB.")
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise VideoInputError(f"{path.name} has no video stream. Accepted: {ACCEPTED}.")
            s = c.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 0) or 8.0
            duration = None
            if s.duration is not None and s.time_base is not None:
                duration = float(s.duration * s.time_base)
            elif c.duration is not None:
                duration = c.duration / av.time_base
            frames = s.frames or (round(duration * fps) if duration else 0)
            width, height = s.codec_context.width, s.codec_context.height
    except VideoInputError:
        raise
    except av.error.EOFError:
        raise VideoInputError(f"{path.name} has no frames. Accepted: {ACCEPTED}.") from None
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise VideoInputError(f"{path.name} is not a readable video ({e}). Accepted: {ACCEPTED}.") from None
    if duration is not None and duration > limits.max_seconds:
        raise VideoInputError(
            f"{path.name} lasts {duration:.0f} s; the limit is {limits.max_seconds:.0f} s. Trim it first."
        )
    if frames > limits.max_frames:
        raise VideoInputError(f"{path.name} has {frames} frames; the limit is {limits.max_frames}.")
    if max(width, height) > limits.max_side:
        raise VideoInputError(f"{path.name} is {width}x{height}; the limit is {limits.max_side} px a side.")
    return {"frames": frames, "fps": fps, "width": width, "height": height, "duration": duration}


def read_video(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> tuple[np.ndarray, float]:
    """All frames (T, H, W, 3) uint8 RGB, upright, at the stream's average rate, and that fps.

    Variable frame rate streams are resampled to their average rate by timestamp, so motion keeps
    its real speed; odd sizes are kept as they are (callers resize).
    """
    info = probe(path, limits)
    name = Path(path).name
    frames: list[np.ndarray] = []
    times: list[float] = []
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for frame in c.decode(s):
                if len(frames) >= limits.max_frames:
                    raise VideoInputError(f"{name} has more than {limits.max_frames} frames.")
                rgb = frame.to_ndarray(format="rgb24")
                rot = _rotation(s, frame)
                if rot:
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=rot // 90))
                frames.append(rgb)
                t = frame.time
                times.append(float(t) if t is not None else len(times) / info["fps"])
    except VideoInputError:
        raise
    except (av.error.FFmpegError, ValueError) as e:
        if not frames:
            raise VideoInputError(f"{name} could not be decoded ({e}). Accepted: {ACCEPTED}.") from None
        # A truncated file: keep what decoded, as players do.
    if not frames:
        raise VideoInputError(f"{name} has no frames. Accepted: {ACCEPTED}.")
    fps = info["fps"]
    video = np.stack(frames)
    if len(frames) > 1:
        video = _resample_constant_rate(video, np.asarray(times), fps)
    return video, fps


def _resample_constant_rate(video: np.ndarray, times: np.ndarray, fps: float) -> np.ndarray:
    """Pick, for each tick of a constant-rate clock, the frame shown at that time."""
    t = times - times[0]
    if np.allclose(np.diff(t), 1 / fps, rtol=0.05, atol=1e-3):
        return video  # already constant rate
    n = max(int(round(t[-1] * fps)) + 1, 1)
    ticks = np.arange(n) / fps
    idx = np.clip(np.searchsorted(t, ticks + 1e-6, side="right") - 1, 0, len(video) - 1)
    return video[idx]


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0, metadata: dict | None = None) -> Path:
    """H.264 yuv420p MP4 with faststart (plays in every browser); metadata goes in the comment tag.

    Sizes are padded to even numbers (yuv420p needs them) by repeating the edge.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got {frames.shape}")
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as c:
        if metadata:
            c.metadata["comment"] = json.dumps(metadata, sort_keys=True)
        s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = "yuv420p"
        # Near-lossless: the world's flat colours show every compression artefact.
        s.options = {"crf": "12", "preset": "medium"}
        for f in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    os.replace(tmp, path)  # readers never see a half-written file
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The request stored in a file written by write_video (empty if none)."""
    with av.open(str(path)) as c:
        raw = c.metadata.get("comment")
    return json.loads(raw) if raw else {}


def write_png(path: str | os.PathLike, image: np.ndarray, metadata: dict | None = None) -> Path:
    """An 8-bit RGB PNG, with metadata as a tEXt chunk; no imaging library needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    h, w, _ = img.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    if metadata:
        body += chunk(b"tEXt", b"request\x00" + json.dumps(metadata, sort_keys=True).encode("latin-1", "replace"))
    body += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def read_image(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> np.ndarray:
    """One RGB image (H, W, 3) uint8 from PNG/JPEG/WebP (decoded by FFmpeg through PyAV)."""
    video, _ = read_video(path, limits)
    return video[0]
