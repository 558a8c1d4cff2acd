"""Training and evaluation inputs for the 4x video upsampler (docs/system.md section 6, docs/world.md "Upscaling").

Two halves:

* Real footage. The upsampler must also help on footage that is not from our world and never do
  worse than bicubic there, so it needs real photographs to learn from and to be judged on. We use
  only photos that ship inside installed wheels (scikit-image, scikit-learn), read straight from
  their files: no network, no download cache, nothing that can differ between machines. A still
  photo becomes a video by a virtual camera slowly panning and zooming over it (`pan_zoom_clip`).
  `HELD_OUT_PHOTOS` are kept for evaluation and never trained on.

* Degradations (Real-ESRGAN-lite). The model is trained on what it will actually be given: blurred,
  downscaled, noisy, H.264-compressed clips, sometimes degraded twice (`degrade`). Every function is
  pure on uint8 clips (T, H, W, 3); randomness only ever comes from the `np.random.Generator`
  passed in, so a seed reproduces a training example exactly.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

# --------------------------------------------------------------------------------------------
# Real photos
# --------------------------------------------------------------------------------------------

# name -> (package, file inside the package). Chosen for variety of content (faces, fur, foliage,
# architecture, machines, textures, astronomy, microscopy) and for being at least ~300 px on the
# short side. Left out: text/page/logo/horse (binary or drawn, not photographs), chessboards,
# phantom and color (synthetic), clock_motion (already motion-blurred), cell and microaneurysms
# (tiny or nearly featureless), motorcycle_right (a near-duplicate of motorcycle_left).
_PHOTO_FILES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "brick": ("skimage", "data/brick.png"),
    "camera": ("skimage", "data/camera.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "coins": ("skimage", "data/coins.png"),
    "grass": ("skimage", "data/grass.png"),
    "gravel": ("skimage", "data/gravel.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "moon": ("skimage", "data/moon.png"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}

PHOTOS: tuple[str, ...] = tuple(_PHOTO_FILES)

# Evaluation only, never trained on. Varied on purpose: animal fur (chelsea), an indoor still life
# with smooth gradients and specular highlights (coffee), an outdoor scene of architecture and
# foliage with JPEG history (china), and a grayscale stochastic texture where hallucinated detail
# would show (gravel).
HELD_OUT_PHOTOS: tuple[str, ...] = ("chelsea", "coffee", "china", "gravel")
TRAIN_PHOTOS: tuple[str, ...] = tuple(p for p in PHOTOS if p not in HELD_OUT_PHOTOS)


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it: importing skimage/sklearn costs seconds
    # (sklearn pulls in scipy) and skimage.data's loaders may consult a download cache; we only
    # want the files that are inside the wheel.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed; it ships the photos used for upscaler data")
    return Path(next(iter(spec.submodule_search_locations)))


def photo_path(name: str) -> Path:
    """The file inside an installed package that holds photo `name`."""
    if name not in _PHOTO_FILES:
        raise ValueError(f"unknown photo {name!r}; known photos: {', '.join(PHOTOS)}")
    package, rel = _PHOTO_FILES[name]
    return _package_dir(package) / rel


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """Photo `name` as (H, W, 3) uint8 RGB; grayscale and RGBA files are converted to RGB.

    The array is cached and shared between callers, so it is returned read-only: a caller that
    wrote into it would silently change every later clip.
    """
    with Image.open(photo_path(name)) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    arr.flags.writeable = False
    return arr


def pan_zoom_clip(
    photo: np.ndarray,
    rng: np.random.Generator,
    size: int = 256,
    frames: int = 32,
    *,
    crop_fraction: tuple[float, float] = (0.35, 0.9),
    max_zoom: float = 0.15,
    max_speed: float = 2.0,
) -> np.ndarray:
    """A virtual camera panning and zooming slowly over `photo`: (frames, size, size, 3) uint8.

    A square window, whose side is a random `crop_fraction` of the photo's short side, moves in a
    straight line from one place to another while its side changes linearly by up to `max_zoom`
    (zoom in or out). The window always stays inside the photo. The pan moves at most `max_speed`
    output pixels per frame, so motion is slow and smooth like a real camera move.

    The window is never smaller than `size` photo pixels (when the photo allows), so frames are
    rendered by downscaling, never by upsampling: the clip is a sharp high-resolution truth, not a
    blurry interpolation the upsampler would learn to imitate. Each frame is rendered with Pillow's
    antialiased BICUBIC resize from a sub-pixel box: the filter widens with the reduction factor
    (area-like, no aliasing), and the fractional box gives smooth sub-pixel motion.
    """
    if photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"photo must be (H, W, 3), got {photo.shape}")
    if size < 1 or frames < 1:
        raise ValueError(f"size and frames must be positive, got size={size} frames={frames}")
    ph, pw = photo.shape[:2]
    short = min(ph, pw)
    min_side = min(float(size), float(short))

    def clamp_side(s: float) -> float:
        return float(np.clip(s, min_side, short))

    side0 = clamp_side(rng.uniform(*crop_fraction) * short)
    side1 = clamp_side(side0 * (1.0 + rng.uniform(-max_zoom, max_zoom)))

    # Start anywhere the first window fits.
    cx0 = rng.uniform(side0 / 2, pw - side0 / 2)
    cy0 = rng.uniform(side0 / 2, ph - side0 / 2)

    # Pan: a random direction and a distance of 30-100% of the speed limit, converted from output
    # pixels to photo pixels at the window's mean scale.
    photo_px_per_out_px = (side0 + side1) / 2 / size
    dist = rng.uniform(0.3, 1.0) * max_speed * max(frames - 1, 0) * photo_px_per_out_px
    angle = rng.uniform(0.0, 2 * math.pi)
    dx, dy = dist * math.cos(angle), dist * math.sin(angle)

    def end(c0: float, d: float, extent: int) -> float:
        lo, hi = side1 / 2, extent - side1 / 2
        # Bounce off the border rather than clip, so a window that starts in a corner still moves.
        c = c0 + d if lo <= c0 + d <= hi else c0 - d
        return float(np.clip(c, lo, hi))

    cx1, cy1 = end(cx0, dx, pw), end(cy0, dy, ph)
    # "window inside the photo" is linear in (centre, side), so holding at both ends holds for
    # every frame in between.

    im = Image.fromarray(np.ascontiguousarray(photo))
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        a = t / (frames - 1) if frames > 1 else 0.0
        side = side0 + a * (side1 - side0)
        cx = cx0 + a * (cx1 - cx0)
        cy = cy0 + a * (cy1 - cy0)
        box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        out[t] = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC, box=box))
    return out


# --------------------------------------------------------------------------------------------
# Degradations
# --------------------------------------------------------------------------------------------


def _check_clip(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected a (T, H, W, 3) uint8 clip, got {frames.shape} {frames.dtype}")


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def downscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Area (box) downscale by an integer factor: each output pixel is the mean of a scale x scale block.

    Sides that are not multiples of `scale` are first cropped at the bottom/right to the largest
    multiple, so the output is floor(H / scale) x floor(W / scale) and output pixel (i, j) covers
    exactly input pixels [i*scale, (i+1)*scale): upscaling the result by `scale` lines up with the
    (cropped) original from the top-left corner. A 256x256 clip gives exactly 64x64 at scale 4.
    """
    _check_clip(frames)
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    t, h, w, c = frames.shape
    oh, ow = h // scale, w // scale
    if oh == 0 or ow == 0:
        raise ValueError(f"a {h}x{w} clip is smaller than one {scale}x{scale} block")
    blocks = frames[:, : oh * scale, : ow * scale].reshape(t, oh, scale, ow, scale, c)
    # float32 mean of at most a few hundred uint8 values is exact enough; rint, not truncation,
    # so a constant clip stays exactly constant and there is no half-level darkening.
    return _to_uint8(blocks.mean(axis=(2, 4), dtype=np.float32))


def upscale_bicubic(frames: np.ndarray, scale_or_size: int | tuple[int, int]) -> np.ndarray:
    """Pillow BICUBIC upscale of every frame, by an integer factor or to an exact (h, w).

    This is both the bicubic baseline the upsampler must beat and the upsampler's pixel-space
    input, so any size works: odd, non-square, or not a multiple of anything.
    """
    _check_clip(frames)
    _, h, w, _ = frames.shape
    if isinstance(scale_or_size, (int, np.integer)):
        if scale_or_size < 1:
            raise ValueError(f"scale must be >= 1, got {scale_or_size}")
        oh, ow = h * int(scale_or_size), w * int(scale_or_size)
    else:
        oh, ow = (int(v) for v in scale_or_size)
        if oh < 1 or ow < 1:
            raise ValueError(f"size must be positive, got {scale_or_size}")
    out = np.empty((len(frames), oh, ow, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(f).resize((ow, oh), Image.Resampling.BICUBIC))
    return out


class EnlargedClip:
    """A clip enlarged `scale` times by bicubic (upscale_bicubic) and edge-padded to `size`
    (whole patches for the upsampler), made a span of frames at a time when it is indexed: the
    upsampler reads it span by span (encoding, then decoding beside the latents), so the whole clip
    at the larger size is never held. Indexed like the uint8 tensor (T, H, W, 3) it stands for,
    with a time slice first; the last span made is kept, as readers take its tiles in turn."""

    def __init__(self, frames: np.ndarray, scale: int, size: tuple[int, int] | None = None):
        _check_clip(frames)
        t, h, w, _ = frames.shape
        self.frames, self.scale, self.inner = frames, scale, (h * scale, w * scale)
        size = size or self.inner
        if size[0] < self.inner[0] or size[1] < self.inner[1]:
            raise ValueError(f"pad size {size} is smaller than the enlarged {self.inner}")
        self.shape = (t, size[0], size[1], 3)
        self._span: tuple[int, int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def span(self, t0: int, t1: int) -> torch.Tensor:
        """Frames [t0, t1) enlarged and padded: uint8 (n, H, W, 3)."""
        t0, t1 = max(0, t0), min(self.shape[0], t1)
        if self._span is not None and self._span[:2] == (t0, t1):
            return self._span[2]
        big = upscale_bicubic(self.frames[t0:t1], self.scale)
        (h, w), (ph, pw) = self.inner, self.shape[1:3]
        if (ph, pw) != (h, w):
            big = np.pad(big, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        self._span = (t0, t1, torch.from_numpy(big))
        return self._span[2]

    def __getitem__(self, index) -> torch.Tensor:
        index = index if isinstance(index, tuple) else (index,)
        time = index[0]
        if not isinstance(time, slice) or time.step not in (None, 1):
            raise TypeError("an EnlargedClip is read by a time slice with step 1")
        t0, t1, _ = time.indices(self.shape[0])
        return self.span(t0, t1)[(slice(None), *index[1:])]

    def parts(self, frames: int = 32, crop: bool = True) -> Iterator[np.ndarray]:
        """The clip `frames` at a time as uint8 arrays, cropped back to the enlarged size (not
        padded) unless crop is False."""
        h, w = self.inner if crop else self.shape[1:3]
        for t0 in range(0, self.shape[0], frames):
            yield self.span(t0, t0 + frames)[:, :h, :w].numpy()


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3.0 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _conv_axis(x: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
    # Reflect padding: a camera's blur near the frame edge sees more of the same scene, not black.
    r = len(k) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = np.pad(x, pad, mode="reflect" if x.shape[axis] > r else "edge")
    n = x.shape[axis]
    out = np.zeros_like(x)
    idx = [slice(None)] * x.ndim
    for i, wgt in enumerate(k):
        idx[axis] = slice(i, i + n)
        out += wgt * xp[tuple(idx)]  # a view, no copy
    return out


def gaussian_blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Isotropic Gaussian blur of each frame (standard deviation `sigma` pixels), no blur across time.

    A separable exact Gaussian in numpy rather than Pillow's GaussianBlur, which approximates the
    kernel with repeated box blurs: the degradation should be the blur it says it is.
    """
    _check_clip(frames)
    if sigma <= 0:
        return frames.copy()
    k = _gaussian_kernel(sigma)
    x = frames.astype(np.float32)
    x = _conv_axis(x, k, axis=1)
    x = _conv_axis(x, k, axis=2)
    return _to_uint8(x)


def add_noise(frames: np.ndarray, rng: np.random.Generator, sigma: float, *, gray: bool = False) -> np.ndarray:
    """Additive Gaussian noise with standard deviation `sigma` in 0-255 units, independent per frame.

    `gray=True` adds the same noise to R, G and B (luminance-only, like most sensor noise after a
    camera's processing); otherwise each channel gets its own (colour noise).
    """
    _check_clip(frames)
    if sigma <= 0:
        return frames.copy()
    t, h, w, c = frames.shape
    noise = rng.standard_normal((t, h, w, 1 if gray else c), dtype=np.float32) * np.float32(sigma)
    return _to_uint8(frames.astype(np.float32) + noise)


def h264_roundtrip(frames: np.ndarray, crf: int, fps: float = 8.0, *, preset: str = "veryfast") -> np.ndarray:
    """Encode with libx264 (yuv420p, given CRF) into an in-memory MP4 and decode it back.

    Same frame count and size out as in. yuv420p needs even sides, so odd sizes are padded by
    replicating the last row/column and cropped back after decoding. The RGB <-> YUV conversion
    and 4:2:0 chroma subsampling are part of the degradation on purpose: real uploads have them.

    Bit-exact for the same input, so a seed reproduces a training example. Two settings make it so:
    x264 runs single-threaded (also right for data loaders that run many of these in parallel),
    and macroblock-tree rate control is off. With mbtree on, small low-detail clips (e.g. 38x54
    gradients) came out of the same input with different bitstreams in roughly 1 of 5 encodes
    early in a process, even single-threaded; with it off, hundreds of encodes were identical.
    The artefacts are the same kind either way (blocking, ringing, smeared texture).
    """
    _check_clip(frames)
    t, h, w, _ = frames.shape
    src = frames
    if h % 2 or w % 2:
        src = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as c:
        rate = Fraction(fps).limit_denominator(1000)
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height = src.shape[2], src.shape[1]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": str(int(crf)), "preset": preset, "threads": "1", "x264-params": "mbtree=0"}
        for i, f in enumerate(src):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    buf.seek(0)
    out = np.empty_like(frames)
    n = 0
    with av.open(buf, mode="r") as c:
        for frame in c.decode(video=0):
            if n < t:
                out[n] = frame.to_ndarray(format="rgb24")[:h, :w]
            n += 1
    if n != t:
        raise RuntimeError(f"H.264 round trip returned {n} frames for {t}")
    return out


@dataclass(frozen=True)
class DegradeConfig:
    """How likely each degradation is and how strong. Sigmas are in pixels (blur) and 0-255 (noise).

    The first round's blur acts at high resolution, before the downscale, like a lens or focus
    blur; its noise and H.264 act at low resolution, like a sensor and an upload. The optional
    second round repeats blur -> noise -> H.264 at low resolution, milder, like footage that was
    re-shared or re-encoded (Real-ESRGAN's "second-order" degradation).
    """

    blur_prob: float = 0.6
    blur_sigma: tuple[float, float] = (0.2, 2.0)  # at high resolution
    noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 10.0)
    gray_noise_prob: float = 0.4
    h264_prob: float = 0.7
    crf: tuple[int, int] = (18, 35)  # inclusive
    second_prob: float = 0.3
    second_blur_prob: float = 0.4
    second_blur_sigma: tuple[float, float] = (0.2, 0.8)  # at low resolution
    second_noise_prob: float = 0.4
    second_noise_sigma: tuple[float, float] = (1.0, 5.0)
    second_h264_prob: float = 0.6
    second_crf: tuple[int, int] = (18, 28)
    fps: float = 8.0


def _plan(rng: np.random.Generator, cfg: DegradeConfig, *, second: bool) -> dict:
    # Every coin and every parameter is drawn whether or not it is used, in a fixed order: the
    # random stream consumed per example does not depend on the outcomes, so changing one
    # probability in the config does not reshuffle every other choice for the same seed.
    p = "second_" if second else ""
    blur_on = rng.random() < getattr(cfg, p + "blur_prob")
    blur_sigma = float(rng.uniform(*getattr(cfg, p + "blur_sigma")))
    noise_on = rng.random() < getattr(cfg, p + "noise_prob")
    noise_sigma = float(rng.uniform(*getattr(cfg, p + "noise_sigma")))
    gray = bool(rng.random() < cfg.gray_noise_prob)
    noise_seed = int(rng.integers(2**63))
    h264_on = rng.random() < getattr(cfg, p + "h264_prob")
    lo, hi = getattr(cfg, p + "crf")
    crf = int(rng.integers(lo, hi + 1))
    return {
        "blur_sigma": round(blur_sigma, 3) if blur_on else None,
        "noise_sigma": round(noise_sigma, 3) if noise_on else None,
        "noise_gray": gray if noise_on else None,
        "noise_seed": noise_seed,
        "crf": crf if h264_on else None,
    }


def _apply_noise_h264(x: np.ndarray, plan: dict, fps: float) -> np.ndarray:
    if plan["noise_sigma"] is not None:
        x = add_noise(x, np.random.default_rng(plan["noise_seed"]), plan["noise_sigma"], gray=plan["noise_gray"])
    if plan["crf"] is not None:
        x = h264_roundtrip(x, plan["crf"], fps)
    return x


def degrade(
    hr: np.ndarray, scale: int, rng: np.random.Generator, cfg: DegradeConfig = DegradeConfig()
) -> tuple[np.ndarray, dict]:
    """The low-resolution input (T, H//scale, W//scale, 3) uint8 for high-resolution truth `hr`.

    Order: blur (high res) -> downscale -> noise -> H.264, then with probability `second_prob` a
    milder blur -> noise -> H.264 at low resolution. Returns the clip and a JSON-friendly dict of
    what was applied (None for a step that was skipped), for logging. Deterministic for a given
    `rng` state.
    """
    _check_clip(hr)
    first = _plan(rng, cfg, second=False)
    second_on = rng.random() < cfg.second_prob
    second = _plan(rng, cfg, second=True)  # drawn regardless, see _plan

    x = hr
    if first["blur_sigma"] is not None:
        x = gaussian_blur(x, first["blur_sigma"])
    x = downscale(x, scale)
    x = _apply_noise_h264(x, first, cfg.fps)
    if second_on:
        if second["blur_sigma"] is not None:
            x = gaussian_blur(x, second["blur_sigma"])
        x = _apply_noise_h264(x, second, cfg.fps)

    def public(plan: dict) -> dict:
        return {k: v for k, v in plan.items() if k != "noise_seed"}

    info = {"scale": scale, **public(first), "second": public(second) if second_on else None}
    return x, info
