"""The upsampler, measured against the truth and against bicubic from the same input (issue:
Movie Gen's spatial upsampler at our scale).

- World clips from held-out scenes: the 64 px clip (as an H.264 upload) upscaled to 256 px, PSNR and
  SSIM against the scene rendered at 256, beside bicubic from the same decoded input; and whether
  the analyser reads the 256 px result at least as well as the 64 px input.
- Real footage: slow pans and zooms over the held-out photographs, reduced to 64 px (area), H.264,
  upscaled; PSNR and SSIM against the 256 px pan, beside bicubic.
- Steadiness: the error of the output's frame-to-frame change against the truth's (flicker), for
  the upsampler and for bicubic.
- The T2V model's own outputs: the analyser's verdict on the generated clip at 64 and upscaled.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from skimage.metrics import structural_similarity

from ..tasks import T2VRequest, UpscaleRequest
from ..upscale_data import HELD_OUT_PHOTOS, downscale, load_photo, pan_zoom_clip, upscale_bicubic
from ..video_io import fit_clip, normalize_video, read_image, read_video, write_video
from ..world.analyse import analyse, score
from ..world.captions import canonical_caption
from ..world.render import render
from ..world.scene import sample_scene
from .edit import psnr


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of uint8 clips (T, H, W, 3), frame by frame over the colour channels."""
    return float(
        np.mean([structural_similarity(x, y, channel_axis=-1, data_range=255) for x, y in zip(a, b, strict=True)])
    )


def flicker(clip: np.ndarray, truth: np.ndarray) -> float:
    """RMS error (0-255) of the clip's frame-to-frame change against the truth's: 0 when the clip
    changes over time exactly as the truth does, large when it shimmers."""
    d = np.diff(clip.astype(np.float64), axis=0) - np.diff(truth.astype(np.float64), axis=0)
    return float(np.sqrt((d**2).mean())) if d.size else 0.0


def _row(result: np.ndarray, bicubic: np.ndarray, truth: np.ndarray, shown: np.ndarray) -> dict:
    return {
        "psnr": psnr(result, truth),
        "psnr_bicubic": psnr(bicubic, truth),
        "psnr_bicubic_file": psnr(shown, truth),
        "ssim": ssim(result, truth),
        "ssim_bicubic": ssim(bicubic, truth),
        "flicker": flicker(result, truth),
        "flicker_bicubic": flicker(bicubic, truth),
    }


def _summary(rows: list[dict]) -> dict:
    if not rows:
        return {"n": 0}
    mean = lambda k: round(float(np.mean([r[k] for r in rows])), 3)  # noqa: E731
    gains = [r["psnr"] - r["psnr_bicubic"] for r in rows]
    out = {"n": len(rows)} | {k: mean(k) for k in rows[0] if not isinstance(rows[0][k], bool)}
    out |= {"gain_db": round(float(np.mean(gains)), 3), "worst_gain_db": round(float(min(gains)), 3)}
    for flag in ("read_input", "read_result"):
        if flag in rows[0]:
            out[flag] = round(float(np.mean([r[flag] for r in rows])), 3)
    return out


def _upscale(engine, path: Path, req: UpscaleRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an uploaded file: the upsampler's result as written (it is streamed to its MP4, H.264 at
    CRF 12, and read back), bicubic from the same decoded input (the baseline: never encoded again,
    which favours it slightly), and bicubic as the file written beside the result (what the studio
    shows side by side, through the same encoder as the result)."""
    res = engine.generate(UpscaleRequest(video=str(path), scale=req.scale, steps=req.steps, seed=req.seed))
    side = Path(res.path).with_name(res.metadata["files"]["bicubic"])
    shown = read_image(side)[None] if side.suffix == ".png" else read_video(side)[0]
    return res.frames, upscale_bicubic(fit_clip(path, 4096).frames, req.scale), shown


def evaluate_upscale(
    engine,
    n_world: int = 12,
    n_photo: int = 8,
    n_t2v: int = 8,
    base: UpscaleRequest | None = None,
    frames: int = 32,
    seed: int = 321,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    base = base or UpscaleRequest(video="")
    size, small = 256, 256 // base.scale
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        rng = np.random.default_rng([seed, 0])
        for i in range(n_world):
            scene = sample_scene(rng, held_out=True)
            truth = render(scene, size, frames)
            path = write_video(Path(tmp) / f"world-{i}.mp4", render(scene, small, frames), 8.0, {})
            result, bicubic, shown = _upscale(engine, path, base)
            uploaded = normalize_video(path, small, 8.0).frames
            row = _row(result, bicubic, truth, shown)
            row["read_input"] = bool(score(analyse(uploaded), scene).satisfied)
            row["read_result"] = bool(score(analyse(result), scene).satisfied)
            rows.append(row)
            log(f"world {i}: {row}")
        out["world"] = _summary(rows)
        rows = []
        for i in range(n_photo):
            name = HELD_OUT_PHOTOS[i % len(HELD_OUT_PHOTOS)]
            truth = pan_zoom_clip(load_photo(name), np.random.default_rng([seed, 1, i]), size, frames)
            path = write_video(Path(tmp) / f"photo-{i}.mp4", downscale(truth, base.scale), 8.0, {})
            result, bicubic, shown = _upscale(engine, path, base)
            rows.append(_row(result, bicubic, truth, shown) | {"photo": name})
            log(f"photo {i} ({name}): {rows[-1]}")
        out["photos"] = _summary([{k: v for k, v in r.items() if k != "photo"} for r in rows])
        out["photos"]["per_clip_gain_db"] = {
            f"{r['photo']}-{i}": round(r["psnr"] - r["psnr_bicubic"], 3) for i, r in enumerate(rows)
        }
        verdicts = []
        rng = np.random.default_rng([seed, 2])
        for i in range(n_t2v):
            scene = sample_scene(rng, held_out=True)
            gen = engine.generate(T2VRequest(prompt=canonical_caption(scene), seed=i), out=Path(tmp) / f"t2v-{i}.mp4")
            up = engine.generate(UpscaleRequest(video=str(gen.path), scale=base.scale, steps=base.steps, seed=i))
            verdicts.append(
                (bool(score(analyse(gen.frames), scene).satisfied), bool(score(analyse(up.frames), scene).satisfied))
            )
            log(f"t2v {i}: read at 64 {verdicts[-1][0]}, at 256 {verdicts[-1][1]}")
        if verdicts:
            out["t2v_outputs"] = {
                "n": len(verdicts),
                "satisfied_64": round(float(np.mean([a for a, _ in verdicts])), 3),
                "satisfied_upscaled": round(float(np.mean([b for _, b in verdicts])), 3),
                "changed_verdicts": sum(a != b for a, b in verdicts),
            }
    return out
