"""Reading and writing video with PyAV: what users upload and what the studio plays back.

Readers check every limit from the container's header before decoding a single frame, and
fail with a `VideoInputError` that says what was wrong and what is accepted. Uploads are
normalised while they stream (`normalize_video`): no more than one full-resolution frame is
ever held, so a two-minute 4K phone clip costs the memory of one frame and the small result.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from .atomic import atomic_path, write_atomic


class VideoInputError(ValueError):
    """An input the studio cannot use; the message is meant for the user."""


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int = 200 * 1024 * 1024
    max_seconds: float = 120.0
    max_frames: int = 7200  # 120 s at 60 fps: uploads are decoded as a stream, so length costs time, not memory
    max_side: int = 4096


ACCEPTED = "MP4, MOV, WebM, MKV, AVI or GIF video (or a PNG/JPEG/WebP image)"

# Audio codecs an MP4 holds and every browser plays: carried over packet for packet. Anything
# else (Vorbis, PCM, FLAC, AC-3...) is transcoded to AAC, the one every browser plays in MP4.
MP4_AUDIO_COPY = {"aac", "mp3", "opus"}
AAC_RATES = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}

# Still images go through Pillow, which reads EXIF orientation; FFmpeg's image demuxers do not.
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


WHITE = (255, 255, 255)
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_LUT16 = np.rint(np.arange(65536) / 257).astype(np.uint8)  # 16-bit grey -> 8-bit: v / 257, rounded


def _grey8(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float grey picture (I;16*, I, F) as 8-bit L, scaled by its range.

    Pillow's own convert("L") clips these (a 16-bit value of 40000 becomes 255, white) and its
    I;16N -> I is wrong, so the values are scaled here, as read by numpy, by a table lookup."""
    a = np.asarray(image)
    if image.mode == "F":  # 0.0 is black, 1.0 white
        return Image.fromarray(np.clip(np.rint(np.nan_to_num(a) * 255.0), 0, 255).astype(np.uint8))
    if image.mode != "I":  # I;16, I;16L, I;16B, I;16N
        return Image.fromarray(_LUT16[a])
    hi = int(a.max(initial=0))
    if hi <= 255:  # 8-bit values in a 32-bit picture
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if hi <= 65535:  # 16-bit values (a 16-bit TIFF or PGM Pillow reads as I)
        return Image.fromarray(_LUT16[np.clip(a, 0, 65535)])
    return Image.fromarray(np.rint(np.clip(a, 0, None) * (255.0 / hi)).astype(np.uint8))  # 32-bit: 0..max


def to_rgb(image: Image.Image, background: tuple[int, int, int] | None = WHITE) -> Image.Image:
    """Any picture Pillow reads as 8-bit RGB: the one conversion every image path uses (the Edit,
    Upscale and Animate uploads, the Personalize reference, the command line).

    16-bit grey (I;16, I;16L, I;16B, I;16N) is scaled by its range (v / 257). 32-bit integer grey
    (I) is taken as 16-bit when a value exceeds 255 (how Pillow reads some 16-bit TIFFs and PGMs),
    as it is when every value is within 0..255, and stretched from 0..max when a value exceeds
    65535 (true 32-bit data has no fixed white); negative values are black. Float grey (F) maps
    0.0..1.0 to 0..255, clipped. A transparency key on these grey modes is ignored. Every other
    mode (1, L, P, CMYK, YCbCr, LAB, HSV, RGBX...) is Pillow's convert. Transparency (an alpha
    channel, a palette's or a colour key's) is composited over `background`; with None the result
    is RGBA instead (the reference picks its own fill), RGB when the picture has no transparency.
    Raises ValueError for a mode Pillow cannot convert."""
    mode = image.mode
    if mode == "F" or mode.startswith("I"):
        return _grey8(image).convert("RGB")
    if mode not in _ALPHA_MODES and "transparency" not in image.info:
        return image.convert("RGB")
    rgba = (image.convert("LA") if mode == "La" else image).convert("RGBA")  # Pillow has no La -> RGBA
    if background is None:
        return rgba
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba).convert("RGB")


@dataclass(frozen=True)
class NormalizedClip:
    frames: np.ndarray  # (T, H, W, 3) uint8 at `fps` (size x size from normalize_video)
    fps: float
    info: dict  # the original: name, width, height (as displayed), fps, duration, frames, rotation, has_audio, format
    summary: str  # e.g. "1920x1080 30 fps 7.0 s -> centre square, 64x64, 8 fps, 56 frames"
    digest: str  # sha256 of the file's bytes, first 16 hex digits (content, not name)


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


def content_digest(path: str | os.PathLike) -> str:
    """First 16 hex digits of the sha256 of a file's bytes, read in chunks (uploads reach 200 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:16]


def _num(x: float) -> str:
    """A figure for a message: at most two decimals, none when whole (0.14, 2, 200.5)."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _reason(e: Exception, path: Path) -> str:
    """Why a decoder gave up, for the user: FFmpeg's words without its error number and the
    server's path to the upload (Pillow's with the file's name only)."""
    if isinstance(e, av.error.FFmpegError) and e.strerror:
        return e.strerror
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        return e.strerror  # "Permission denied", without the errno and the path
    return " ".join(str(e).replace(str(path), path.name).split())


def _check_file(path: Path, limits: VideoLimits) -> int:
    """The file's size in bytes, once it is known to exist, hold something and fit the limit."""
    if path.is_dir():
        raise VideoInputError(f"{path.name} is a folder, not a file. Accepted: {ACCEPTED}.")
    if not path.is_file():
        raise VideoInputError(
            f"{path.name} does not exist (no such file; it may have been moved or deleted). Accepted: {ACCEPTED}."
        )
    size = path.stat().st_size
    if size == 0:
        raise VideoInputError(f"{path.name} is empty (0 bytes). Accepted: {ACCEPTED}.")
    if size > limits.max_bytes:
        raise VideoInputError(
            f"{path.name} is {_num(size / 2**20)} MB; the limit is {_num(limits.max_bytes / 2**20)} MB."
        )
    return size


def probe(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> dict:
    """Header facts checked against limits; decodes nothing.

    frames, fps, width, height (as stored), duration (the video's, else the container's: None if
    neither says), video_duration (None unless the video stream's header gives it), has_audio,
    format (FFmpeg's demuxer name)."""
    path = Path(path)
    _check_file(path, limits)
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                if c.streams.audio:
                    raise VideoInputError(f"{path.name} is audio only (no picture). Accepted: {ACCEPTED}.")
                raise VideoInputError(
                    f"{path.name} has no video stream: it is damaged, cut short or not a video. Accepted: {ACCEPTED}."
                )
            s = c.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 0) or 8.0
            video_duration = None  # the video stream's own length, when its header gives it
            if s.duration is not None and s.time_base is not None:
                video_duration = float(s.duration * s.time_base)
            duration = video_duration
            if duration is None and c.duration is not None:
                duration = c.duration / av.time_base  # the container's: its longest stream
            frames = s.frames or (round(duration * fps) if duration else 0)
            width, height = s.codec_context.width, s.codec_context.height
            has_audio, fmt = bool(c.streams.audio), c.format.name
    except VideoInputError:
        raise
    except av.error.EOFError:
        raise VideoInputError(f"{path.name} has no frames. Accepted: {ACCEPTED}.") from None
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise VideoInputError(
            f"{path.name} is not a readable video ({_reason(e, path)}). Accepted: {ACCEPTED}."
        ) from None
    if duration is not None and duration > limits.max_seconds:
        raise VideoInputError(
            f"{path.name} lasts {_num(duration)} s; the limit is {_num(limits.max_seconds)} s. Trim it first."
        )
    if frames > limits.max_frames:
        raise VideoInputError(f"{path.name} has {frames} frames; the limit is {limits.max_frames}.")
    if max(width, height) > limits.max_side:
        raise VideoInputError(f"{path.name} is {width}x{height}; the limit is {limits.max_side} px a side.")
    return {
        "frames": frames,
        "fps": fps,
        "width": width,
        "height": height,
        "duration": duration,
        "video_duration": video_duration,
        "has_audio": has_audio,
        "format": fmt,
    }


class _DecodedFrames:
    """A file's video frames one at a time as (seconds since the first frame, RGB frame), turned
    upright unless `turn_upright` is False (the caller then turns a smaller copy by `rotation`).

    Limits are enforced as frames arrive, since a header can lie or say nothing about length.
    A file cut short keeps what decoded (as players do) and records why it stopped in `error`.
    After iteration, `count`, `rotation`, `width`/`height` (as displayed) and `end` (seconds from
    the first frame to the end of the last one) describe what was decoded.
    """

    def __init__(
        self, path: Path, limits: VideoLimits, fps: float, turn_upright: bool = True, lazy: bool = False
    ) -> None:
        """With `lazy`, frames come as _Picture (RGB made when asked) instead of arrays."""
        self.path, self.limits, self.fps, self.turn_upright, self.lazy = path, limits, fps, turn_upright, lazy
        self.count, self.rotation, self.width, self.height = 0, 0, 0, 0
        self.end = 0.0
        self.error: str | None = None

    def __iter__(self) -> Iterator[tuple[float, np.ndarray | _Picture]]:
        name, limits = self.path.name, self.limits
        t0: float | None = None
        try:
            with av.open(str(self.path)) as c:
                s = c.streams.video[0]
                s.thread_type = "AUTO"
                for frame in c.decode(s):
                    if self.count >= limits.max_frames:
                        raise VideoInputError(f"{name} has more than {limits.max_frames} frames; that is the limit.")
                    if max(frame.width, frame.height) > limits.max_side:
                        raise VideoInputError(
                            f"{name} has {frame.width}x{frame.height} frames; the limit is {limits.max_side} px a side."
                        )
                    t = float(frame.time) if frame.time is not None else self.count / self.fps
                    t0 = t if t0 is None else t0
                    t -= t0
                    if t > limits.max_seconds:
                        raise VideoInputError(
                            f"{name} lasts over {limits.max_seconds:.0f} s; that is the limit. Trim it first."
                        )
                    self.rotation = _rotation(s, frame)
                    picture = _Picture(frame, self.rotation if self.turn_upright else 0)
                    swap = self.rotation in (90, 270)
                    self.width, self.height = (frame.height, frame.width) if swap else (frame.width, frame.height)
                    step = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
                    self.end = t + (step or 1 / self.fps)
                    self.count += 1
                    yield t, (picture if self.lazy else picture.rgb())
        except VideoInputError:
            raise
        except (av.error.FFmpegError, ValueError) as e:
            if not self.count:
                raise VideoInputError(
                    f"{name} could not be decoded ({_reason(e, self.path)}). Accepted: {ACCEPTED}."
                ) from None
            self.error = _reason(e, self.path)
        if not self.count:
            raise VideoInputError(f"{name} has no frames. Accepted: {ACCEPTED}.")


class _Picture:
    """A decoded frame whose RGB pixels are made only when asked: resampling a clip to a lower
    rate skips most frames, and converting a 4K frame costs as much as decoding it."""

    def __init__(self, frame: av.VideoFrame, turn: int) -> None:
        self.frame, self.turn = frame, turn

    def rgb(self) -> np.ndarray:
        rgb = self.frame.to_ndarray(format="rgb24")
        return np.ascontiguousarray(np.rot90(rgb, k=self.turn // 90)) if self.turn else rgb


def _centre_square(image: Image.Image, size: int, turn: int = 0) -> np.ndarray:
    """The centred square of `image`, area-averaged to size x size, then turned `turn` degrees
    counter-clockwise. The crop is centred exactly (fractional edges are area-weighted), so
    cropping before the turn equals cropping after it and only the small result is turned."""
    w, h = image.size
    s = min(w, h)
    box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
    small = np.asarray(image.resize((size, size), Image.Resampling.BOX, box=box))
    return np.ascontiguousarray(np.rot90(small, k=turn // 90)) if turn else small


def _output_frames(seconds: float, fps: float) -> int:
    """floor(duration * fps), at least 1; the epsilon keeps 7.0 s * 8 fps at 56, not 55."""
    return max(1, math.floor(seconds * fps + 1e-6))


def is_still_image(path: Path) -> bool:
    """A PNG, JPEG or WebP, by its first bytes (a GIF goes through PyAV, as a video)."""
    with open(path, "rb") as f:
        head = f.read(12)
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def normalize_video(
    path: str | os.PathLike, size: int = 64, fps: float = 8.0, limits: VideoLimits = VideoLimits()
) -> NormalizedClip:
    """An upload as the models take it: upright, centre square, size x size, at `fps`, streamed.

    Frames are normalised as they are decoded, so memory stays at one full-resolution frame plus
    the small result. Output frame k shows the last source frame whose time (from the first
    frame) is <= k / fps, which resamples variable frame rate by what was on screen; there are
    floor(duration * fps) output frames, at least one. Still images give a one-frame clip.
    """
    if size < 1 or fps <= 0:
        raise ValueError(f"size must be >= 1 and fps > 0, got {size} and {fps}")

    def square(image: Image.Image, turn: int) -> tuple[np.ndarray, str]:
        return _centre_square(image, size, turn), f"centre square, {size}x{size}"

    return _normalize(Path(path), square, fps, limits)


def fit_clip(
    path: str | os.PathLike, max_side: int, fps: float | None = None, limits: VideoLimits = VideoLimits()
) -> NormalizedClip:
    """An upload at its own shape (the upscaler's input): upright, the whole frame, area-reduced
    only when its long side exceeds `max_side` (aspect kept), at `fps` (None: the source's own
    average rate; variable frame rate is resampled to it), streamed like normalize_video."""
    if max_side < 1 or (fps is not None and fps <= 0):
        raise ValueError(f"max_side must be >= 1 and fps > 0, got {max_side} and {fps}")

    def fit(image: Image.Image, turn: int) -> tuple[np.ndarray, str]:
        w, h = image.size
        k = min(1.0, max_side / max(w, h))
        size = (max(1, round(w * k)), max(1, round(h * k)))
        small = np.asarray(image.resize(size, Image.Resampling.BOX) if k < 1 else image.convert("RGB"))
        small = np.ascontiguousarray(np.rot90(small, k=turn // 90)) if turn else small
        return small, ("kept as it is" if k == 1 else f"reduced to {small.shape[1]}x{small.shape[0]}")

    return _normalize(Path(path), fit, fps, limits)


def fit_size(
    path: str | os.PathLike,
    size: tuple[int, int] | Callable[[int, int], tuple[int, int]],
    fps: float = 8.0,
    limits: VideoLimits = VideoLimits(),
    start: float = 0.0,
    end: float | None = None,
) -> NormalizedClip:
    """A clip as a training bucket takes it: upright, resized to cover `size` (height, width) and
    centre-cropped to it, at `fps`, from `start` to `end` seconds (None: the end), streamed like
    normalize_video. `size` may be a function of the upright source's (height, width), called once
    on the first frame: a dataset picks each clip's bucket from it without a second pass.

    Frames before `start` are still decoded (no seek: a seek lands on a keyframe, and the stream
    resampling needs every frame's time), but each is reduced as it arrives, so what is held is
    the small clip, never a full-resolution one."""
    if fps <= 0 or start < 0 or (end is not None and end <= start):
        raise ValueError(f"fps must be > 0 and 0 <= start < end, got {fps}, {start} and {end}")
    chosen: list[tuple[int, int]] = []  # the target, fixed by the first frame (every frame has its size)

    def cover(image: Image.Image, turn: int) -> tuple[np.ndarray, str]:
        w, h = image.size  # as stored; turned by `turn` it shows as (h, w) when turn is 90 or 270
        swap = turn in (90, 270)
        if not chosen:
            chosen.append(size(*((w, h) if swap else (h, w))) if callable(size) else size)
        th, tw = chosen[0]
        if th < 1 or tw < 1:
            raise ValueError(f"size must be >= 1 a side, got {th}x{tw}")
        sh, sw = (tw, th) if swap else (th, tw)  # the target as stored: crop before the turn, turn the small result
        k = max(sw / w, sh / h)  # cover: the shorter fit fills its side, the other is cropped
        cw, ch = sw / k, sh / k
        box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)  # centred exactly (fractional edges weighted)
        filt = Image.Resampling.BOX if k <= 1 else Image.Resampling.BICUBIC  # area-average down, smooth up
        small = np.asarray(image.convert("RGB").resize((sw, sh), filt, box=box))
        small = np.ascontiguousarray(np.rot90(small, k=turn // 90)) if turn else small
        return small, f"covering {tw}x{th}, centre-cropped"

    clip = _normalize(Path(path), cover, fps, limits)
    if start == 0 and end is None:
        return clip
    n = len(clip.frames)
    first = math.ceil(start * fps - 1e-6)  # output frame k shows time k / fps
    last = n if end is None else min(n, math.floor(end * fps + 1e-6))
    if first >= last:
        raise VideoInputError(
            f"{Path(path).name} lasts {_num(n / fps)} s; nothing is left from {_num(start)} s"
            + (f" to {_num(end)} s." if end is not None else ".")
        )
    span = f", from {_num(first / fps)} s to {_num(last / fps)} s ({last - first} frames)"
    frames = clip.frames[first:last].copy()  # a copy, so the rest of the decoded clip is freed
    return NormalizedClip(frames, clip.fps, clip.info, clip.summary + span, clip.digest)


Transform = Callable[[Image.Image, int], tuple[np.ndarray, str]]  # (frame, turn) -> (pixels, what was done)


def _normalize(path: Path, transform: Transform, fps: float | None, limits: VideoLimits) -> NormalizedClip:
    """Decode `path` as a stream, transforming each frame as it arrives (see normalize_video)."""
    _check_file(path, limits)
    if is_still_image(path):
        return _normalize_image(path, transform, fps or 8.0, limits)
    head = probe(path, limits)  # every header limit, before any decoding work
    fps = fps or head["fps"]
    digest = content_digest(path)
    stream = _DecodedFrames(path, limits, head["fps"], turn_upright=False, lazy=True)
    seconds = head["video_duration"] or head["duration"]  # a hint for the result's length, not trusted
    out = _Frames(path.name, min(_output_frames(seconds, fps), limits.max_frames) if seconds else 64)
    pending: _Picture | None = None  # the latest decoded frame: on screen until the next one's time
    for t, picture in stream:
        if pending is not None and len(out) / fps < t - 1e-6:  # ticks before t show it: only now is it made
            shown, done = transform(Image.fromarray(pending.rgb()), stream.rotation)
            while len(out) / fps < t - 1e-6:
                out.append(shown)
        pending = picture
    assert pending is not None  # _DecodedFrames raises when nothing decoded
    shown, done = transform(Image.fromarray(pending.rgb()), stream.rotation)  # the last frame, to the end
    # The video stream's header length is what a player shows; without one (Matroska often, or a
    # container whose audio runs longer) the decoded frames say how long the video is.
    duration = head["video_duration"]
    cut_short = stream.error is not None or (duration is not None and stream.end < duration - 2 / head["fps"])
    if duration is None or cut_short:
        duration = stream.end
    n = _output_frames(duration, fps)
    while len(out) < n:  # the last frame stays on screen to the end
        out.append(shown)
    info = {
        "name": path.name,
        "width": stream.width,
        "height": stream.height,
        "fps": head["fps"],
        "duration": duration,
        "frames": stream.count,
        "rotation": stream.rotation,
        "has_audio": head["has_audio"],
        "format": head["format"],
    }
    upright = f" (turned {stream.rotation} deg)" if stream.rotation else ""
    summary = (
        f"{stream.width}x{stream.height}{upright} {head['fps']:.4g} fps {duration:.1f} s -> {done}, "
        f"{fps:.4g} fps, {n} frames"
    )
    if cut_short:
        summary += f" (the file is cut short: only its first {stream.end:.1f} s could be decoded)"
    return NormalizedClip(out.array(n), fps, info, summary, digest)


class _Frames:
    """Frames of one shape appended into one array, sized from the header's length (doubled when
    the header said less), so a long clip is held once: a list then np.stack held it twice, 800 MB
    for two minutes of 256x144 at 30 fps."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name, self.capacity, self.n = name, max(1, capacity), 0
        self.data: np.ndarray | None = None

    def __len__(self) -> int:
        return self.n

    def append(self, frame: np.ndarray) -> None:
        if self.data is None:
            self.data = np.empty((self.capacity, *frame.shape), frame.dtype)  # pages are taken as filled
        elif frame.shape != self.data.shape[1:]:
            w, h = self.data.shape[2], self.data.shape[1]
            raise VideoInputError(
                f"{self.name} changes its frame size mid-stream ({w}x{h}, then {frame.shape[1]}x{frame.shape[0]}); "
                "re-encode it at one size."
            )
        elif self.n == len(self.data):
            grown = np.empty((2 * len(self.data), *self.data.shape[1:]), self.data.dtype)
            grown[: self.n] = self.data
            self.data = grown
        self.data[self.n] = frame
        self.n += 1

    def array(self, n: int) -> np.ndarray:
        """The first n frames (n <= len(self)), without a copy unless most of the room went unused."""
        assert self.data is not None and n <= self.n
        return self.data[:n] if 2 * n >= len(self.data) else self.data[:n].copy()


def _open_image(path: Path, limits: VideoLimits) -> tuple[Image.Image, int, str]:
    """An RGB still image (through to_rgb: transparency over white) turned upright by its EXIF
    orientation, that rotation (counter-clockwise degrees), and its format; the side limit is
    checked before the pixels are decoded."""
    try:
        with Image.open(path) as img:
            if max(img.size) > limits.max_side:
                raise VideoInputError(
                    f"{path.name} is {img.width}x{img.height}; the limit is {limits.max_side} px a side."
                )
            turn = {3: 180, 6: 270, 8: 90}.get(img.getexif().get(0x0112, 1), 0)
            fmt = (img.format or "image").lower()
            return to_rgb(ImageOps.exif_transpose(img)), turn, fmt
    except VideoInputError:
        raise
    except Image.DecompressionBombError:  # Pillow refuses it from the header, before the side check
        raise VideoInputError(
            f"{path.name} has too many pixels to be read safely (over {2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} "
            f"megapixels); the limit is {limits.max_side} px a side."
        ) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise VideoInputError(f"{path.name} could not be decoded ({_reason(e, path)}). Accepted: {ACCEPTED}.") from None


def _normalize_image(path: Path, transform: Transform, fps: float, limits: VideoLimits) -> NormalizedClip:
    img, turn, fmt = _open_image(path, limits)
    info = {
        "name": path.name,
        "width": img.width,
        "height": img.height,
        "fps": None,
        "duration": 0.0,
        "frames": 1,
        "rotation": turn,
        "has_audio": False,
        "format": fmt,
    }
    frame, done = transform(img, 0)  # already upright (EXIF)
    summary = f"{img.width}x{img.height} image -> {done}, 1 frame"
    return NormalizedClip(frame[None], fps, info, summary, content_digest(path))


def read_video(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> tuple[np.ndarray, float]:
    """All frames (T, H, W, 3) uint8 RGB, upright, at the stream's average rate, and that fps.

    Holds the whole clip at full resolution: for short clips and tests. Uploads go through
    `normalize_video`, which streams. Variable frame rate streams are resampled to their average
    rate by timestamp, so motion keeps its real speed; odd sizes are kept as they are.
    """
    info = probe(path, limits)
    frames: list[np.ndarray] = []
    times: list[float] = []
    for t, rgb in _DecodedFrames(Path(path), limits, info["fps"]):
        frames.append(rgb)
        times.append(t)
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


class _AudioCarry:
    """A source file's first audio track, carried into an MP4 being written, from the source's
    first video frame (the output's time 0) to `duration`.

    MP4-friendly codecs are copied packet for packet (no generation loss; the cut falls on a
    packet edge, a few tens of milliseconds); others are decoded and encoded to AAC, cut to the
    sample. Packets are handed out in time order so `mux_until` can interleave them with video.
    """

    def __init__(self, src: av.container.InputContainer, out: av.container.OutputContainer, duration: float) -> None:
        self.src, self.out, self.duration = src, out, duration
        self.a = src.streams.audio[0]
        video = src.streams.video[0] if src.streams.video else None
        # Sync follows the source: audio keeps its offset from the first video frame.
        self.t0 = float(video.start_time * video.time_base) if video is not None and video.start_time else 0.0
        # The codec's own name: decoders have others (MP3 decodes with 'mp3float').
        self.copy = self.a.codec_context.codec.canonical_name in MP4_AUDIO_COPY
        if self.copy:
            self.stream = out.add_stream_from_template(self.a)
            self.packets = self._copied()
        else:
            rate = self.a.rate if self.a.rate in AAC_RATES else 48000
            self.stream = out.add_stream("aac", rate=rate)
            self.stream.layout = "mono" if self.a.channels == 1 else "stereo"
            self.packets = self._transcoded(rate)
        self.pending: av.Packet | None = None

    @classmethod
    def open(
        cls, src: av.container.InputContainer | None, out: av.container.OutputContainer, duration: float
    ) -> _AudioCarry | None:
        """The carrier for `src`'s audio, or None when there is no source or it has no audio."""
        return cls(src, out, duration) if src is not None and src.streams.audio else None

    def mux_until(self, t: float) -> None:
        """Write every carried packet that starts before `t` seconds."""
        while True:
            if self.pending is None:
                self.pending = next(self.packets, None)
                if self.pending is None:
                    return
            if self.pending.pts is not None and float(self.pending.pts * self.pending.time_base) >= t:
                return
            self.out.mux(self.pending)
            self.pending = None

    def _copied(self) -> Iterator[av.Packet]:
        shift = round(self.t0 / self.a.time_base)
        try:
            for p in self.src.demux(self.a):
                if p.dts is None or p.pts is None:
                    continue  # the demuxer's empty end-of-stream packet
                if (p.pts - shift) * p.time_base >= self.duration:
                    break
                p.pts, p.dts = p.pts - shift, p.dts - shift
                p.stream = self.stream
                yield p
        except av.error.FFmpegError:
            return  # damaged audio ends the track there; the video is still worth having

    def _transcoded(self, rate: int) -> Iterator[av.Packet]:
        layout = self.stream.layout.name
        resample = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        end = round(self.duration * rate)
        at: int | None = None  # output sample index of the next resampled sample
        try:
            for frame in itertools.chain(self.src.decode(self.a), [None]):  # None flushes
                if at is None and frame is not None and frame.time is not None:
                    at = round((float(frame.time) - self.t0) * rate)
                for r in resample.resample(frame):
                    x = r.to_ndarray()  # (channels, samples) float32
                    start = at or 0
                    at = start + x.shape[1]
                    lo, hi = max(0, -start), min(x.shape[1], end - start)
                    if hi > lo:
                        yield from self.stream.encode(self._frame(x[:, lo:hi], start + lo, layout, rate))
                if at is not None and at >= end:
                    break
        except av.error.FFmpegError:
            pass  # damaged audio ends the track there
        yield from self.stream.encode(None)

    @staticmethod
    def _frame(x: np.ndarray, pts: int, layout: str, rate: int) -> av.AudioFrame:
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(x), format="fltp", layout=layout)
        f.sample_rate, f.pts, f.time_base = rate, pts, Fraction(1, rate)
        return f


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float = 8.0,
    metadata: dict | None = None,
    audio_from: str | os.PathLike | None = None,
    count: int | None = None,
) -> Path:
    """H.264 yuv420p MP4 with faststart (plays in every browser); metadata goes in the comment tag.

    `frames` is the clip (T, H, W, 3) uint8, or its parts in order (each (n, H, W, 3)), encoded as
    they come so a long clip need never be whole in memory; `count` then gives its length in
    frames (for the audio). Sizes are padded to even numbers (yuv420p needs them) by repeating the
    edge. With `audio_from`, that file's audio track (if it has one) is carried over, cut to the
    video's length: copied when MP4 and browsers take its codec (AAC, MP3, Opus), else encoded to AAC.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(frames, np.ndarray):
        frames, count = [frames], len(frames)
    parts = iter(frames)
    first = next(parts, None)
    first = None if first is None else np.asarray(first, dtype=np.uint8)
    if first is None or first.ndim != 4 or first.shape[-1] != 3 or len(first) == 0:
        raise ValueError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got {getattr(first, 'shape', None)}")
    if count is None:
        raise ValueError("count (the clip's length in frames) is needed when frames come in parts")
    _, h, w, _ = first.shape
    src = av.open(str(audio_from)) if audio_from is not None else None
    try:
        with (
            atomic_path(path) as tmp,
            av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as c,
        ):
            if metadata:
                c.metadata["comment"] = json.dumps(metadata, sort_keys=True)
            s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            s.width, s.height = w + w % 2, h + h % 2
            s.pix_fmt = "yuv420p"
            # Near-lossless: the world's flat colours show every compression artefact.
            s.options = {"crf": "12", "preset": "medium"}
            audio = _AudioCarry.open(src, c, count / fps)

            def mux(packets: list[av.Packet]) -> None:
                for packet in packets:
                    if audio is not None and packet.dts is not None:
                        # Audio up to this video packet's time first: the file plays as it downloads.
                        audio.mux_until(float(packet.dts * packet.time_base))
                    c.mux(packet)

            part = first
            while part is not None:
                part = np.asarray(part, dtype=np.uint8)
                if part.shape[1:] != first.shape[1:]:
                    raise ValueError(f"every part must be (n, {h}, {w}, 3), got {part.shape}")
                if h % 2 or w % 2:
                    part = np.pad(part, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                for f in part:
                    mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
                part = next(parts, None)
            mux(s.encode())
            if audio is not None:
                audio.mux_until(math.inf)
    finally:
        if src is not None:
            src.close()
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The request stored in a file written by write_video (empty if none)."""
    with av.open(str(path)) as c:
        raw = c.metadata.get("comment")
    return json.loads(raw) if raw else {}


def write_png(path: str | os.PathLike, image: np.ndarray, metadata: dict | None = None) -> Path:
    """An 8-bit RGB PNG, with metadata as a tEXt chunk (what the outputs sweep reads back); atomic,
    as videos: never a half-written PNG."""
    info = PngInfo()
    if metadata:
        info.add_text("request", json.dumps(metadata, sort_keys=True).encode("latin-1", "replace").decode("latin-1"))
    buf = io.BytesIO()
    # Level 6, not 9: with PNG's filters, 9 is ten times slower (every result writes a thumbnail)
    # for files within a few percent of the size.
    Image.fromarray(np.ascontiguousarray(np.asarray(image, dtype=np.uint8))).save(
        buf, format="PNG", pnginfo=info, compress_level=6
    )
    return write_atomic(path, buf.getvalue())


def read_image(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> np.ndarray:
    """One RGB image (H, W, 3) uint8, upright: PNG/JPEG/WebP through Pillow (which honours EXIF
    orientation), anything else as the first frame of a video."""
    path = Path(path)
    _check_file(path, limits)
    if is_still_image(path):
        return np.asarray(_open_image(path, limits)[0])
    video, _ = read_video(path, limits)
    return video[0]
