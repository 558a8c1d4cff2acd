"""Experiment (not part of the recipe): peak memory and time of what each studio tab does with a
large upload.

    PYTHONPATH=. python experiments/studio_upload_memory.py [DIR] [--seconds 120]

Synthesises a 2-minute 3840x2160 (4K) 30 fps H.264 clip (a few distinct frames over and over,
x264 ultrafast, so it is quick to make and within the studio's limits: 200 MB, 120 s, 7200 frames,
4096 px a side) and a 4K PNG and JPEG of a character on a plain background (into DIR, kept, or a
temp folder removed afterwards). Then each case runs in a fresh Python process, so its peak
resident memory (ru_maxrss) is that case's alone: the shipped engine (assets/models/shapes-v2 on
the CPU, a temp cache and outputs folder, the studio's limits) is loaded as app.py loads it, and
the tab's handler is given the upload as the studio gives it:

- engine: the baseline, the engine loaded and nothing else (the studio's modules imported too);
- edit: EditHandlers.load (the source as the model sees it: 64x64, 8 fps, and its view written);
- upscale: UpscaleHandlers.load (the input as the upsampler gets it: at most 256 px, its own rate);
- upscale-image: the same with the 4K PNG;
- take: PersonalizeHandlers.take_from (the clip's frames to pick a reference from);
- reference-png, reference-jpeg: PersonalizeHandlers.load (the reference as the model sees it).

The jobs themselves are not run (a 2-minute clip is minutes of model work on our CPU). The goal is
a peak under 1.5 GB for the whole process in every case.
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

W, H, FPS = 3840, 2160, 30
LOOP = 16  # distinct frames; the clip cycles through them
CLIP, PNG, JPEG = "clip_4k.mp4", "still_4k.png", "still_4k.jpg"
CASES = ["engine", "edit", "upscale", "upscale-image", "take", "reference-png", "reference-jpeg"]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def synthesise(folder: Path, seconds: float) -> None:
    """The 4K clip and stills. Runs in a child: its frames must not count against the cases."""
    import av
    import numpy as np
    from PIL import Image

    from engine.world.characters import Character

    t = time.perf_counter()
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([(x * 255 // W), (y * 255 // H), ((x + y) // 16 % 256)], -1).astype(np.uint8)
    rng = np.random.default_rng(0)
    base[::8, ::8] = rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)  # some texture, as real video
    frames = []
    for i in range(LOOP):
        img = base.copy()
        left = i * (W - 480) // LOOP
        img[H // 2 - 240 : H // 2 + 240, left : left + 480] = (230, 40, 40)
        frames.append(av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p"))
    del base, y, x
    with av.open(str(folder / CLIP), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "28"}
        s.thread_type = "AUTO"
        for i in range(round(seconds * FPS)):
            f = frames[i % LOOP]
            f.pts, f.time_base = i, Fraction(1, FPS)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    # A character alone on a plain white background, centred in a 4K frame.
    still = np.full((H, W, 3), 255, np.uint8)
    still[:, (W - H) // 2 : (W + H) // 2] = Character("star", "red", "cyan", "hstripes").reference("white", H)
    Image.fromarray(still).save(folder / PNG)
    Image.fromarray(still).save(folder / JPEG, quality=92)
    sizes = {p: round((folder / p).stat().st_size / 2**20, 1) for p in (CLIP, PNG, JPEG)}
    print(json.dumps({"synthesised_s": round(time.perf_counter() - t, 1), "mb": sizes}))


def measure(case: str, folder: Path) -> None:
    """One case in this (fresh) process; prints one JSON line."""
    t0 = time.perf_counter()
    from engine.engine import DEFAULT_MODEL, Engine
    from engine.video_io import VideoLimits
    from studio.characters import CharacterStore
    from studio.edit_tab import EditHandlers
    from studio.personalize_tab import PersonalizeHandlers
    from studio.upscale_tab import UpscaleHandlers

    imported_mb = _peak_mb()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        engine = Engine(
            DEFAULT_MODEL,
            device="cpu",
            cache_dir=tmp / "cache",
            outputs_dir=tmp / "outputs",
            limits=VideoLimits(max_bytes=200 * 1024 * 1024),  # as app.py sets it (--max-upload-mb 200)
        )
        engine_mb, engine_s = _peak_mb(), time.perf_counter() - t0
        workdir = tmp / "outputs" / ".studio"
        t = time.perf_counter()
        if case == "engine":
            got = {}
        elif case == "edit":
            got = EditHandlers(engine, {}, workdir).load(str(folder / CLIP))
        elif case in ("upscale", "upscale-image"):
            extra = [engine.outputs_dir] if len(inspect.signature(UpscaleHandlers).parameters) > 3 else []
            h = UpscaleHandlers(engine, {}, workdir, *extra)
            got = h.load(str(folder / (CLIP if case == "upscale" else PNG)))
        else:
            h = PersonalizeHandlers(engine, {}, workdir, CharacterStore(tmp / "outputs" / "characters"))
            if case == "take":
                got = h.take_from(str(folder / CLIP))
            else:
                got = h.load(str(folder / (PNG if case == "reference-png" else JPEG)))
        seconds = time.perf_counter() - t
        peak = _peak_mb()
    said = got.get("error") or got.get("summary", "")
    shape = {k: got[k] for k in ("size", "frames", "count") if isinstance(got.get(k), int | list)}
    report = {"case": case, "peak_mb": round(peak, 1), "seconds": round(seconds, 1), "engine_mb": round(engine_mb, 1)}
    report |= {"engine_s": round(engine_s, 1), "imports_mb": round(imported_mb, 1), "said": said} | shape
    print(json.dumps(report))


def child(*args: str) -> str:
    """This script in a fresh process; its last line. Linux carries ru_maxrss across fork and exec,
    so the parent stays small and all the work (synthesis too) happens in children."""
    cmd = [sys.executable, __file__, *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return r.stdout.strip().splitlines()[-1]


def main(folder: Path, seconds: float, cases: list[str]) -> None:
    if not all((folder / p).is_file() for p in (CLIP, PNG, JPEG)):
        print(child("--synthesise", str(folder), "--seconds", str(seconds)), flush=True)
    rows = []
    for case in cases:
        r = json.loads(child("--measure", case, str(folder)))
        rows.append(r)
        print(json.dumps(r), flush=True)
    print(f"\n{'case':15s} {'peak MB':>8s} {'seconds':>8s}  what the tab says")
    for r in rows:
        print(f"{r['case']:15s} {r['peak_mb']:8.0f} {r['seconds']:8.1f}  {r['said'][:110]}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", help="where the clip and stills go (kept; reused when there)")
    ap.add_argument("--seconds", type=float, default=120.0, help="length of the synthesised clip")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--synthesise", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.synthesise:
        synthesise(Path(a.folder), a.seconds)
    elif a.measure:
        measure(a.measure, Path(a.folder))
    elif a.folder:
        Path(a.folder).mkdir(parents=True, exist_ok=True)
        main(Path(a.folder), a.seconds, a.cases.split(","))
    else:
        with tempfile.TemporaryDirectory() as d:
            main(Path(d), a.seconds, a.cases.split(","))
