"""Experiment (not part of the recipe): peak memory and time of reading an upload.

    PYTHONPATH=. python experiments/upload_memory.py [DIR]

Synthesises a 2-minute and a 7-second 1920x1080 30 fps H.264 clip (into DIR, or a temp folder
removed afterwards), then measures each reader in a fresh Python process, so the peak resident
memory (ru_maxrss) is that reader's alone: `normalize_video` (streams: one full frame at a time)
on both clips, and `read_video` (stacks every full frame) on the short one. The goal is a peak
under 1.5 GB for the whole process on the 2-minute clip.
"""

import json
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engine.video_io import VideoLimits, normalize_video, read_video

W, H, FPS = 1920, 1080, 30
LOOP = 60  # distinct frames; the clip cycles through them (2 s of motion)
# The default max_frames (2400) refuses 2 minutes at 30 fps; the limit that matters here is time.
LIMITS = VideoLimits(max_frames=120 * 60)


def motion_frames(n: int) -> list[av.VideoFrame]:
    """`n` frames of a textured background with a block sliding across, already in yuv420p so
    encoding is all that is left per frame."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([(x * 255 // W), (y * 255 // H), ((x + y) // 8 % 256)], -1).astype(np.uint8)
    base[::4, ::4] = rng.integers(0, 256, (H // 4, W // 4, 3), dtype=np.uint8)  # texture costs bits, as real video
    out = []
    for i in range(n):
        img = base.copy()
        left = i * (W - 240) // n
        img[H // 2 - 120 : H // 2 + 120, left : left + 240] = (230, 40, 40)
        out.append(av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p"))
    return out


def synthesise(path: Path, seconds: float, frames: list[av.VideoFrame]) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(round(seconds * FPS)):
            f = frames[i % len(frames)]
            f.pts, f.time_base = i, Fraction(1, FPS)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def measure(reader: str, path: str) -> None:
    """Run in a fresh process: time one reader and print its peak RSS as JSON."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    if reader == "normalize_video":
        clip = normalize_video(path, limits=LIMITS)
        shape, summary = clip.frames.shape, clip.summary
    else:
        video, fps = read_video(path, LIMITS)
        shape, summary = video.shape, f"{fps:g} fps"
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    report = {"seconds": seconds, "peak_mb": peak / 1024, "after_imports_mb": before / 1024}
    print(json.dumps(report | {"shape": list(shape), "summary": summary}))


def child(*args: str) -> str:
    """Run this script in a fresh process; what it prints. Linux carries ru_maxrss across fork
    and exec, so the parent stays small and the heavy work (synthesis too) happens in children."""
    cmd = [sys.executable, __file__, *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]


def synthesise_both(folder: Path) -> None:
    frames = motion_frames(LOOP)
    t = time.perf_counter()
    long_clip = synthesise(folder / "long_1080p_120s.mp4", 120, frames)
    short_clip = synthesise(folder / "short_1080p_7s.mp4", 7, frames)
    mb = [p.stat().st_size / 2**20 for p in (long_clip, short_clip)]
    print(f"synthesised in {time.perf_counter() - t:.0f} s: {mb[0]:.0f} MB (120 s), {mb[1]:.1f} MB (7 s)")


def main(folder: Path) -> None:
    print(child("--synthesise", str(folder)))
    long_clip, short_clip = folder / "long_1080p_120s.mp4", folder / "short_1080p_7s.mp4"
    for reader, clip in [("normalize_video", long_clip), ("normalize_video", short_clip), ("read_video", short_clip)]:
        r = json.loads(child("--measure", reader, str(clip)))
        print(
            f"{reader:16s} {clip.name:22s} {r['seconds']:6.1f} s  peak RSS {r['peak_mb']:7.0f} MB "
            f"(after imports {r['after_imports_mb']:.0f} MB)  -> {r['shape']} {r['summary']}"
        )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--measure":
        measure(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "--synthesise":
        synthesise_both(Path(sys.argv[2]))
    elif len(sys.argv) > 1:
        Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as d:
            main(Path(d))
