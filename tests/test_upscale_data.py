"""Upscaler data: bundled photos, pan/zoom clips and the degradations, on real numbers (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.upscale_data import (
    HELD_OUT_PHOTOS,
    PHOTOS,
    TRAIN_PHOTOS,
    DegradeConfig,
    add_noise,
    degrade,
    downscale,
    gaussian_blur,
    h264_roundtrip,
    load_photo,
    pan_zoom_clip,
    upscale_bicubic,
)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def smooth_clip(t: int = 8, h: int = 37, w: int = 53) -> np.ndarray:
    """Slowly drifting soft gradients and a blob: easy for a codec, like a sky or a wall."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for i in range(t):
        blob = 80 * np.exp(-((x - 20 - i) ** 2 + (y - 18) ** 2) / 120)
        frames.append(np.stack([60 + 2 * x + blob, 90 + 2 * y, 150 - x - y + blob], axis=-1))
    return np.clip(np.rint(np.stack(frames)), 0, 255).astype(np.uint8)


def best_shift(a: np.ndarray, b: np.ndarray, r: int = 4) -> tuple[float, int, int]:
    """The integer (dy, dx) within +-r that best aligns a to b, and the mean abs error left."""
    inner = b[2 * r : -2 * r, 2 * r : -2 * r]
    errs = {
        (dy, dx): float(
            np.abs(a[2 * r + dy : a.shape[0] - 2 * r + dy, 2 * r + dx : a.shape[1] - 2 * r + dx] - inner).mean()
        )
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
    }
    (dy, dx), err = min(errs.items(), key=lambda kv: kv[1])
    return err, dy, dx


def highfreq_energy(frames: np.ndarray) -> float:
    f = frames.astype(np.float64)
    return float(np.mean(np.diff(f, axis=1) ** 2) + np.mean(np.diff(f, axis=2) ** 2))


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return pan_zoom_clip(load_photo("astronaut"), np.random.default_rng(0), size=128, frames=12)


def test_photos_load_offline_as_rgb():
    assert len(PHOTOS) >= 12 and len(set(PHOTOS)) == len(PHOTOS)
    for name in PHOTOS:
        p = load_photo(name)
        assert p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3, name
        assert min(p.shape[:2]) >= 256 and max(p.shape[:2]) <= 2048, (name, p.shape)
        assert 5 < p.mean() < 250 and p.std() > 10, name  # a real picture, not blank
    assert load_photo("camera").std(axis=2).max() == 0  # grayscale became R = G = B
    assert load_photo("astronaut") is load_photo("astronaut")  # cached
    assert not load_photo("astronaut").flags.writeable  # the shared cache cannot be corrupted


def test_unknown_photo_lists_names():
    with pytest.raises(ValueError, match="astronaut"):
        load_photo("no-such-photo")


def test_held_out_and_train_split():
    assert set(HELD_OUT_PHOTOS).isdisjoint(TRAIN_PHOTOS)
    assert set(HELD_OUT_PHOTOS) | set(TRAIN_PHOTOS) == set(PHOTOS)
    assert 3 <= len(HELD_OUT_PHOTOS) <= 4 and len(TRAIN_PHOTOS) >= 8


def test_pan_zoom_clip_is_slow_smooth_and_deterministic(clip):
    assert clip.shape == (12, 128, 128, 3) and clip.dtype == np.uint8
    again = pan_zoom_clip(load_photo("astronaut"), np.random.default_rng(0), size=128, frames=12)
    assert np.array_equal(clip, again)
    other = pan_zoom_clip(load_photo("astronaut"), np.random.default_rng(1), size=128, frames=12)
    assert not np.array_equal(clip, other)

    f = clip.astype(np.float64)
    step = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))
    first_last = np.abs(f[-1] - f[0]).mean()
    assert step.min() > 0.05  # it moves every frame
    assert step.max() < 20  # but only a little (a couple of pixels on a detailed photo)
    assert step.max() < 1.6 * step.min()  # linear: the same small step each frame, no jumps
    assert first_last > 2 * step.mean()  # the move adds up over the clip

    # The motion really is a shift of a pixel or two: realigning consecutive frames by the best
    # integer shift within +-4 px removes most of their difference, and that shift is small.
    g = f.mean(axis=3)
    for t in (0, 5, 10):
        err, dy, dx = best_shift(g[t + 1], g[t])
        assert max(abs(dy), abs(dx)) <= 3
        assert err < 0.5 * np.abs(g[t + 1] - g[t])[8:-8, 8:-8].mean()


def test_pan_zoom_clip_antialiases_downscaling():
    # A one-pixel checkerboard "photo": any point sampling would alias it into strong patterns;
    # an area-like renderer at >= 4x reduction sees flat mid-grey.
    board = ((np.indices((600, 600)).sum(axis=0) % 2) * 255).astype(np.uint8)
    photo = np.repeat(board[..., None], 3, axis=2)
    c = pan_zoom_clip(photo, np.random.default_rng(3), size=48, frames=4, crop_fraction=(0.5, 0.9))
    assert abs(c.mean() - 127.5) < 3
    assert c.std() < 6


def test_downscale_area():
    hr = pan_zoom_clip(load_photo("coffee"), np.random.default_rng(0), size=256, frames=2)
    lr = downscale(hr, 4)
    assert lr.shape == (2, 64, 64, 3) and lr.dtype == np.uint8
    # Each pixel is the mean of its 4x4 block.
    assert abs(int(lr[0, 3, 5, 1]) - hr[0, 12:16, 20:24, 1].mean()) <= 0.5
    const = np.full((3, 30, 22, 3), 77, np.uint8)
    assert np.array_equal(downscale(const, 4), np.full((3, 7, 5, 3), 77, np.uint8))  # cropped, not rounded up


def test_upscale_bicubic_any_size():
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, size=(5, 37, 53, 3), dtype=np.uint8)
    assert upscale_bicubic(lr, 4).shape == (5, 148, 212, 3)
    assert upscale_bicubic(lr, (100, 61)).shape == (5, 100, 61, 3)
    # Down then up is close to the original on smooth content: the bicubic baseline is sane.
    s = smooth_clip()
    back = upscale_bicubic(downscale(s[:, :36, :52], 4), (36, 52))
    assert psnr(back, s[:, :36, :52]) > 30


def test_h264_roundtrip_quality_and_odd_sizes():
    s = smooth_clip()  # 37 x 53: odd on both sides
    hi = h264_roundtrip(s, crf=18)
    lo = h264_roundtrip(s, crf=35)
    assert hi.shape == s.shape and lo.shape == s.shape and hi.dtype == np.uint8
    assert psnr(hi, s) > 35
    assert psnr(lo, s) < psnr(hi, s) - 2
    # Bit-exact every time (x264's mbtree once made small clips like this one vary between runs).
    first = h264_roundtrip(s, crf=30)
    assert all(np.array_equal(first, h264_roundtrip(s, crf=30)) for _ in range(10))


def test_gaussian_blur_reduces_high_frequencies(clip):
    b = gaussian_blur(clip[:3], 1.5)
    assert b.shape == clip[:3].shape and b.dtype == np.uint8
    assert highfreq_energy(b) < 0.3 * highfreq_energy(clip[:3])
    assert abs(b.astype(np.float64).mean() - clip[:3].mean()) < 1  # blur keeps brightness
    const = np.full((2, 9, 9, 3), 200, np.uint8)
    assert np.array_equal(gaussian_blur(const, 2.0), const)


def test_add_noise_strength_and_gray():
    base = np.full((2, 64, 64, 3), 128, np.uint8)
    n = add_noise(base, np.random.default_rng(0), 8.0)
    assert 7.0 < (n.astype(np.float64) - 128).std() < 9.0
    g = add_noise(base, np.random.default_rng(0), 8.0, gray=True)
    assert g.std(axis=3).max() == 0 and g.std() > 7.0


def test_degrade_shape_determinism_and_variety(clip):
    hr = clip[:6]
    lr, info = degrade(hr, 4, np.random.default_rng(5))
    assert lr.shape == (6, 32, 32, 3) and lr.dtype == np.uint8
    assert info["scale"] == 4 and {"blur_sigma", "noise_sigma", "crf", "second"} <= set(info)
    lr2, info2 = degrade(hr, 4, np.random.default_rng(5))
    assert np.array_equal(lr, lr2) and info == info2
    lr3, _ = degrade(hr, 4, np.random.default_rng(6))
    assert not np.array_equal(lr, lr3)


def test_degrade_applies_everything_when_certain(clip):
    hr = clip[:4]
    always = DegradeConfig(blur_prob=1, noise_prob=1, h264_prob=1, second_prob=1, second_h264_prob=1)
    lr, info = degrade(hr, 4, np.random.default_rng(0), always)
    assert info["blur_sigma"] and info["noise_sigma"] and 18 <= info["crf"] <= 35
    assert info["second"] is not None and 18 <= info["second"]["crf"] <= 28
    never = DegradeConfig(blur_prob=0, noise_prob=0, h264_prob=0, second_prob=0)
    clean, info = degrade(hr, 4, np.random.default_rng(0), never)
    assert np.array_equal(clean, downscale(hr, 4)) and info["crf"] is None and info["second"] is None
    assert psnr(lr, clean) < 35  # the degradations did something
