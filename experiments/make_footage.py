"""Real footage made from what our machines have: the photographs inside scikit-image and
scikit-learn, filmed by a virtual camera that pans or zooms across them, written as MP4 clips of
several shapes (landscape, portrait, square, wide) with a caption beside each, plus a few stills
with theirs: the folder `python -m engine encode --data DIR` reads (docs/training.md).

    python experiments/make_footage.py DIR [--clips-per-photo 6] [--seconds 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.upscale_data import PHOTOS, load_photo  # noqa: E402
from engine.video_io import write_video  # noqa: E402

# (width, height) of the clips as a camera would record them, larger than the model's buckets so
# the encode pass reduces them as it does an upload.
SHAPES = ((160, 120), (120, 160), (128, 128), (192, 108))
MOVES = {
    "left": (-1, 0, 0),
    "right": (1, 0, 0),
    "up": (0, -1, 0),
    "down": (0, 1, 0),
    "in": (0, 0, -1),  # the window shrinks: zooming in
    "out": (0, 0, 1),
}
NAMES = {
    "brick": "a brick wall",
    "camera": "a man with a camera",
    "chelsea": "a cat",
    "coffee": "a cup of coffee",
    "coins": "old coins",
    "grass": "grass",
    "gravel": "gravel",
    "moon": "the moon's surface",
    "flower": "a flower",
    "hubble_deep_field": "the Hubble deep field",
    "motorcycle_left": "a motorcycle",
    "ihc": "a stained tissue sample",
    "retina": "a retina",
    "china": "a Chinese temple",
}


def describe(photo: str) -> str:
    name = photo.replace("_", " ")
    return NAMES.get(photo, f"{'an' if name[0] in 'aeiou' else 'a'} {name}")


def camera_clip(
    photo: np.ndarray, rng: np.random.Generator, size: tuple[int, int], frames: int, move: str
) -> np.ndarray:
    """(frames, h, w, 3): a window of the clip's aspect moving steadily across the photo."""
    w, h = size
    ph, pw = photo.shape[:2]
    aspect = w / h
    dx, dy, dz = MOVES[move]
    travel = rng.uniform(0.15, 0.3)  # of the window, over the whole clip
    # The window's height in photo pixels: its largest size and its travel stay inside the photo.
    side_h = rng.uniform(0.7, 1.0) * min(ph, pw / aspect) / ((1 + 0.35 * max(dz, 0)) * (1 + 2 * travel))
    h0, h1 = side_h, side_h * (1 + dz * 0.35)
    span_w, span_h = max(h0, h1) * aspect, max(h0, h1)
    cx0 = rng.uniform(span_w / 2 + travel * span_w, pw - span_w / 2 - travel * span_w)
    cy0 = rng.uniform(span_h / 2 + travel * span_h, ph - span_h / 2 - travel * span_h)
    im = Image.fromarray(np.ascontiguousarray(photo))
    out = np.empty((frames, h, w, 3), dtype=np.uint8)
    for t in range(frames):
        a = t / max(frames - 1, 1)
        wh = h0 + a * (h1 - h0)
        cx = cx0 + dx * a * travel * span_w
        cy = cy0 + dy * a * travel * span_h
        box = (cx - wh * aspect / 2, cy - wh / 2, cx + wh * aspect / 2, cy + wh / 2)
        out[t] = np.asarray(im.resize((w, h), Image.Resampling.BICUBIC, box=box))
    return out


def caption(photo: str, move: str) -> str:
    if move in ("in", "out"):
        return f"a photo of {describe(photo)}, the camera zooming {move}"
    return f"a photo of {describe(photo)}, the camera panning {move}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--clips-per-photo", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--fps", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    frames = round(args.seconds * args.fps)
    n = 0
    for photo_name in PHOTOS:
        photo = load_photo(photo_name)
        for k in range(args.clips_per_photo):
            move = list(MOVES)[(k + n) % len(MOVES)]
            size = SHAPES[k % len(SHAPES)]
            clip = camera_clip(photo, rng, size, frames, move)
            stem = args.out / f"{photo_name}-{k:02d}"
            write_video(stem.with_suffix(".mp4"), clip, fps=args.fps)
            stem.with_suffix(".txt").write_text(caption(photo_name, move) + "\n")
            n += 1
        # A still of each photo at a landscape shape: the text-to-image part of joint training.
        still = Image.fromarray(camera_clip(photo, rng, (160, 120), 1, "left")[0])
        still.save(args.out / f"{photo_name}-still.png")
        (args.out / f"{photo_name}-still.txt").write_text(f"a photo of {describe(photo_name)}\n")
    print(f"{n} clips and {len(PHOTOS)} stills in {args.out}")


if __name__ == "__main__":
    main()
