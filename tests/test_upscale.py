"""The upscale task end to end on the tiny model: shapes, sizes, images, the cascade, bad input."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch

from engine.engine import Engine
from engine.eval.edit import psnr
from engine.models.upsampler import SkipDecoder, encode_tiled
from engine.requests import Error, Progress, RequestError, Result
from engine.tasks import T2VRequest, UpscaleRequest
from engine.tiling import blend_nd, tile_boxes
from engine.train.recipe import PRESETS
from engine.upscale_data import upscale_bicubic
from engine.video_io import read_video, write_png, write_video
from engine.world.data import to_frames


@pytest.fixture()
def engine(tiny_model_dir, tmp_path) -> Engine:
    return Engine(tiny_model_dir, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "outputs")


def _clip(frames: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (1, h, w, 3))
    return np.clip(base + np.arange(frames)[:, None, None, None] * 3, 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_a_64px_clip_becomes_256px_with_the_same_frames_and_rate(engine, tmp_path):
    src = write_video(tmp_path / "in.mp4", _clip(32, 64, 64), 8.0, {})
    res = engine.generate(UpscaleRequest(video=str(src), steps=2), out=tmp_path / "up.mp4")
    video, fps = read_video(res.path)
    assert video.shape == (32, 256, 256, 3) and fps == pytest.approx(8.0)
    assert res.metadata["size"] == [256, 256] and res.metadata["input_size"] == [64, 64]
    # The bicubic enlargement is written beside it, for the side-by-side view.
    bicubic = res.path.with_name(res.metadata["files"]["bicubic"])
    assert read_video(bicubic)[0].shape == (32, 256, 256, 3)
    assert json.loads(res.path.with_suffix(".json").read_text())["source"]["sha256"]


def test_odd_non_square_input_keeps_its_aspect_and_an_image_gives_a_png(engine, tmp_path):
    img = tmp_path / "odd.png"
    write_png(img, _clip(1, 37, 53)[0])
    res = engine.generate(UpscaleRequest(video=str(img), steps=1))
    assert res.path.suffix == ".png" and res.frames.shape == (1, 148, 212, 3)
    res2 = engine.generate(UpscaleRequest(video=str(img), scale=2, steps=1))
    assert res2.frames.shape == (1, 74, 106, 3)


def test_the_upsampler_starts_from_bicubic(tmp_path):
    """The skip decoder's correction starts at zero: an untrained one returns the enlarged input."""
    p = PRESETS["tiny"]
    dec = SkipDecoder(p.tae).eval()
    z = torch.randn(1, p.tae.latent_channels, 2, 4, 4)
    x_up = torch.rand(1, 3, 7, 32, 32) * 2 - 1
    assert torch.equal(dec(z, x_up), x_up)
    frames = torch.randint(0, 256, (7, 32, 32, 3), dtype=torch.uint8)
    out = np.concatenate(
        list(dec.iter_frames(z, frames, (32, 32), tile=(1, 2, 2), overlap=(0, 1, 1)))
    )  # tiled in time and space
    assert np.array_equal(out, frames.numpy())


def _whole_clip_blend(dec: SkipDecoder, z, enlarged, tile, overlap) -> torch.Tensor:
    """The reference: every tile decoded, then blended over the whole clip at once in float
    (1, 3, T, H, W), as the upscaler decoded before it streamed."""
    k, s = dec.cfg.temporal_down, dec.cfg.spatial_down
    total, px = tuple(z.shape[2:]), lambda v: (v[0] * k, v[1] * s, v[2] * s)  # noqa: E731
    pieces = []
    for t0, h0, w0 in tile_boxes(total, tile, overlap):
        zt = z[:, :, t0 : t0 + tile[0], h0 : h0 + tile[1], w0 : w0 + tile[2]]
        n = zt.shape[2] * k
        xt = enlarged[t0 * k : t0 * k + n, h0 * s : (h0 + zt.shape[3]) * s, w0 * s : (w0 + zt.shape[4]) * s]
        y = dec(zt, xt.permute(3, 0, 1, 2)[None].float() / 127.5 - 1)
        y = torch.nn.functional.pad(y, (0, 0, 0, 0, 0, n - y.shape[2]), mode="replicate") if y.shape[2] < n else y
        pieces.append((px((t0, h0, w0)), y))
    return blend_nd(pieces, px(total))[:, :, : enlarged.shape[0]].clamp_(-1, 1)


@pytest.mark.parametrize("frames,h,w,pool", [(13, 48, 80, 1), (13, 48, 80, 2), (5, 16, 24, 1), (3, 32, 32, 4)])
def test_decoding_straight_to_frames_is_the_whole_blend_made_uint8(frames, h, w, pool):
    """iter_frames blends over time as the slabs come and frees what is done; it gives exactly
    the frames of the whole-clip blend, cropped, area-reduced and made uint8, in any tiling."""
    torch.manual_seed(0)
    p = PRESETS["tiny"]
    dec = SkipDecoder(p.tae).eval()
    with torch.no_grad():
        for w_ in dec.parameters():  # a decoder that changes its input, not bicubic's identity
            w_.normal_(std=0.05)
    k, s = p.tae.temporal_down, p.tae.spatial_down
    z = torch.randn(1, p.tae.latent_channels, -(-frames // k), h // s, w // s)
    x = torch.randint(0, 256, (frames, h, w, 3), dtype=torch.uint8)
    for tile, overlap in (((2, 4, 4), (1, 2, 2)), ((8, 32, 32), (4, 8, 8))):
        with torch.no_grad():
            whole = _whole_clip_blend(dec, z, x, tile, overlap)[:, :, :, : h - 8, : w - 8]
        whole = torch.nn.functional.avg_pool3d(whole, (1, pool, pool)) if pool > 1 else whole
        got = np.concatenate(list(dec.iter_frames(z, x, (h - 8, w - 8), pool, tile, overlap)))
        assert got.dtype == np.uint8 and np.array_equal(got, to_frames(whole[0]))


@pytest.mark.slow
def test_a_long_clip_is_upscaled_a_span_at_a_time_and_written_as_it_is_decoded(engine, tmp_path, monkeypatch):
    """Memory flat in length: no step holds the clip at the larger size whole. Every bicubic
    enlargement (encoder, decoder, the baseline beside the result) is of one span, every decoded
    part is handed to the writer before the next is made, the cache keeps only the latents; the
    result still has every frame, and a cache hit decodes the same clip again."""
    import engine.upscale_data as upscale_data
    import engine.video_io as video_io

    frames = 80  # several of the decoder's slabs and the encoder's spans
    src = write_video(tmp_path / "long.mp4", _clip(frames, 16, 24), 8.0, {})
    largest: list[int] = []
    real_bicubic = upscale_data.upscale_bicubic

    def bicubic(clip, scale):
        largest.append(len(clip))
        return real_bicubic(clip, scale)

    monkeypatch.setattr(upscale_data, "upscale_bicubic", bicubic)
    parts: list[int] = []
    real_write = video_io.write_video

    def write(path, clip, *args, **kwargs):
        if isinstance(clip, np.ndarray):
            return real_write(path, clip, *args, **kwargs)

        def counted():
            for part in clip:
                parts.append(len(part))
                yield part

        return real_write(path, counted(), *args, **kwargs)

    monkeypatch.setattr("engine.results.write_video", write)
    res = engine.generate(UpscaleRequest(video=str(src), steps=1), out=tmp_path / "up.mp4")
    assert res.held is None and res.frames.shape == (frames, 64, 96, 3)
    assert max(largest) < frames and max(parts) < frames and sum(parts) == 2 * frames  # result + bicubic
    hit = engine.generate(UpscaleRequest(video=str(src), steps=1), out=tmp_path / "again.mp4")
    # The same frames, read back from a second H.264 encode (libx264 under PyAV is not always bit
    # for bit the same from run to run on a busy machine; the difference is far below visibility).
    assert hit.cached and psnr(hit.frames, res.frames) > 40


def test_stop_while_an_upscale_is_written_ends_the_job_and_leaves_nothing(engine, tmp_path, monkeypatch):
    """The decode of a streamed result happens as it is written, after the steps: Stop pressed
    then still ends the job, and what was written of the result is removed."""
    from engine.requests import CancelToken

    src = write_video(tmp_path / "long.mp4", _clip(80, 16, 24), 8.0, {})
    token = CancelToken()
    real = engine.models.updecoder.iter_frames

    def stop_after_first_part(*args, **kwargs):
        for i, part in enumerate(real(*args, **kwargs)):
            if i == 1:
                token.cancel()
            yield part

    monkeypatch.setattr(engine.models.updecoder, "iter_frames", stop_after_first_part)
    out = tmp_path / "out"
    events = list(engine.run(UpscaleRequest(video=str(src), steps=1), cancel=token, folder=out, previews=False))
    assert isinstance(events[-1], Error) and events[-1].cancelled
    assert not out.exists() or list(out.iterdir()) == []


def test_an_enlarged_clip_read_by_spans_is_the_padded_bicubic_clip():
    from engine.upscale_data import EnlargedClip

    clip = _clip(11, 13, 7)
    whole = np.pad(upscale_bicubic(clip, 4), ((0, 0), (0, 12), (0, 4), (0, 0)), mode="edge")  # to 64x32
    big = EnlargedClip(clip, 4, (64, 32))
    assert big.shape == whole.shape and len(big) == 11
    assert np.array_equal(big[3:9].numpy(), whole[3:9])
    assert np.array_equal(big[0:11, 8:40, 4:20].numpy(), whole[:, 8:40, 4:20])
    assert np.array_equal(np.concatenate(list(big.parts(4))), whole[:, :52, :28])  # cropped back
    with pytest.raises(TypeError):
        big[::2]


def test_tiled_encoding_is_the_whole_frame_when_one_tile_holds_it(tiny_model_dir):
    eng = Engine(tiny_model_dir, device="cpu", cache_dir=None)
    frames = torch.randint(0, 256, (5, 48, 64, 3), dtype=torch.uint8)
    whole = eng.models.tae.encode(frames.permute(3, 0, 1, 2)[None].float() / 127.5 - 1)
    assert torch.equal(encode_tiled(eng.models.tae, frames, tile=64, overlap=16), whole)
    tiled = encode_tiled(eng.models.tae, frames, tile=32, overlap=16)  # 2 x 3 tiles, blended
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()


@pytest.mark.slow
def test_generate_then_upscale_is_one_job_with_one_progress_bar(engine, tmp_path):
    req = T2VRequest(prompt="a red circle moving left on a blue background", frames=8, steps=3, upscale=4)
    events = list(engine.run(req, out=tmp_path / "big.mp4"))
    steps = [(e.step, e.total) for e in events if isinstance(e, Progress)]
    upscale_steps = UpscaleRequest(video="x").steps
    assert [s for s, _ in steps] == list(range(1, 3 + upscale_steps + 1))
    assert {t for _, t in steps} == {3 + upscale_steps}
    res = events[-1]
    assert isinstance(res, Result) and res.frames.shape == (8, 256, 256, 3)
    base = tmp_path / "big.base.mp4"
    assert read_video(base)[0].shape == (8, 64, 64, 3)  # both kept
    assert res.metadata["upscaled_from"]["name"] == base.name


def test_audio_is_carried_through(engine, tmp_path):
    src = tmp_path / "talk.mp4"
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=8)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        a = c.add_stream("aac", rate=16000)
        for f in _clip(16, 32, 32):
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        t = np.arange(32000) / 16000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for p in a.encode(frame):
            c.mux(p)
        for p in a.encode():
            c.mux(p)
    res = engine.generate(UpscaleRequest(video=str(src), steps=1))
    with av.open(str(res.path)) as c:
        assert c.streams.audio and c.streams.video[0].codec_context.width == 128


@pytest.mark.parametrize("content", [b"", b"not a video at all", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64])
def test_bad_input_is_refused_and_nothing_is_written(engine, tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    events = list(engine.run(UpscaleRequest(video=str(bad), steps=1)))
    assert isinstance(events[-1], Error) and "bad.mp4" in events[-1].message
    assert not any((tmp_path / "outputs").glob("*")) if (tmp_path / "outputs").exists() else True
    # The next job works.
    good = write_video(tmp_path / "ok.mp4", _clip(4, 16, 16), 8.0, {})
    assert engine.generate(UpscaleRequest(video=str(good), steps=1)).frames.shape == (4, 64, 64, 3)


def test_bad_settings_are_refused():
    for req, words in (
        (UpscaleRequest(video=""), "No input"),
        (UpscaleRequest(video="a.mp4", scale=3), "scale must be 2 or 4"),
        (UpscaleRequest(video="a.mp4", steps=0), "steps"),
        (T2VRequest(prompt="a red circle", upscale=3), "upscale must be"),
    ):
        with pytest.raises(RequestError, match=words):
            req.validate()


def test_bicubic_baseline_sizes():
    assert upscale_bicubic(np.zeros((2, 37, 53, 3), np.uint8), 4).shape == (2, 148, 212, 3)


def test_command_line_upscale(tiny_model_dir, tmp_path, capsys):
    from engine.__main__ import main

    src = write_video(tmp_path / "in.mp4", _clip(8, 24, 40), 8.0, {})
    out = tmp_path / "big.mp4"
    args = ["--model", str(tiny_model_dir), "--device", "cpu", "--cache-dir", "", "--steps", "1"]
    assert main(["upscale", "--video", str(src), "--out", str(out), "--scale", "2", *args]) == 0
    assert read_video(out)[0].shape == (8, 48, 80, 3)
    assert "-> 80x48" in capsys.readouterr().err
    assert main(["upscale", "--video", str(tmp_path / "missing.mp4"), *args]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_allocator_threshold_is_fixed_where_glibc_allows(tiny_model_dir):
    """An engine fixes glibc's mmap threshold (host_memory.py) so long jobs do not creep; setting it
    is harmless to repeat, and says False where there is no glibc."""
    import sys

    from engine.host_memory import fix_mmap_threshold

    Engine(tiny_model_dir, device="cpu", cache_dir=None)
    assert fix_mmap_threshold() is (sys.platform.startswith("linux") and _has_glibc())


def _has_glibc() -> bool:
    import platform

    return platform.libc_ver()[0] == "glibc"
