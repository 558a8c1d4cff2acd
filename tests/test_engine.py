import json
import shutil
from dataclasses import replace

import av
import numpy as np
import pytest
import torch

from engine.checkpoint import config_from_dict, read_config, save_component
from engine.engine import Engine
from engine.models.generator import Generator, GeneratorConfig
from engine.precision import bf16_is_fast
from engine.requests import CancelToken, Error, ModelLimits, Preview, Progress, Result
from engine.tasks import T2VRequest
from engine.video_io import read_metadata, read_video


@pytest.fixture()
def engine(tiny_model_dir, tmp_path):
    return Engine(tiny_model_dir, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "out")


def req(**kw):
    return T2VRequest(**({"prompt": "a red circle moving left on a blue background", "steps": 4, "frames": 8} | kw))


def test_events_stream_then_playable_result(engine):
    events = list(engine.run(req()))
    progress = [e for e in events if isinstance(e, Progress)]
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in progress] == [1, 2, 3, 4] and progress[-1].eta == 0
    assert len(previews) == 4 and previews[0].frames.shape == (2, 64, 64, 3)
    assert previews[0].frames.std() > 0  # the linear latent->RGB map shows something
    res = events[-1]
    assert isinstance(res, Result) and res.path.suffix == ".mp4" and res.frames.shape == (8, 64, 64, 3)
    with av.open(str(res.path)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.video[0].frames == 8
    meta = read_metadata(res.path)
    assert meta["request"]["prompt"] == req().prompt and meta["model"] == engine.models.ids["generator"]
    assert json.loads(res.path.with_suffix(".json").read_text())["request"]["seed"] == 0


def test_same_seed_same_clip_and_cache_skips_transformer(engine):
    calls = []
    engine.models.generator.dit.register_forward_hook(lambda *a: calls.append(1))
    a = engine.generate(req(seed=7))
    n = len(calls)
    assert n == 4 and not a.cached
    b = engine.generate(req(seed=7))
    assert b.cached and len(calls) == n and np.array_equal(a.frames, b.frames)
    c = engine.generate(req(seed=8))
    assert not c.cached and not np.array_equal(a.frames, c.frames)


def test_damaged_cache_entry_is_recomputed(engine):
    a = engine.generate(req(seed=3))
    for key in list(engine.cache.store):
        raw = bytearray(engine.cache.store[key])
        raw[-1] ^= 1
        engine.cache.store[key] = bytes(raw)
    b = engine.generate(req(seed=3))
    assert not b.cached and np.array_equal(a.frames, b.frames)


def test_cancel_stops_within_a_step(engine, tmp_path):
    token = CancelToken()
    seen = []
    for ev in engine.run(req(steps=20), cancel=token):
        seen.append(ev)
        if isinstance(ev, Progress) and ev.step == 2:
            token.cancel()
    assert isinstance(seen[-1], Error) and seen[-1].cancelled
    assert max(e.step for e in seen if isinstance(e, Progress)) == 2  # no step after the cancel
    assert not list((tmp_path / "out").glob("*.mp4"))
    assert isinstance(list(engine.run(req()))[-1], Result)  # the next job works


def test_a_stopped_job_saves_nothing_even_from_the_cache(engine, tmp_path):
    """A repeat of a cached request, stopped before its result is written, leaves no result: the
    token is checked before every write, the cache-hit path included."""
    engine.generate(req(seed=5))  # now in the cache
    before = set((tmp_path / "out").glob("*"))
    token = CancelToken()
    token.cancel()
    events = list(engine.run(req(seed=5), cancel=token))
    assert isinstance(events[-1], Error) and events[-1].cancelled and "nothing was saved" in events[-1].message
    assert set((tmp_path / "out").glob("*")) == before
    assert engine.generate(req(seed=5)).cached  # and the next one is served from it


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"frames": 0}, "frames must be"),
        ({"size": 50}, "multiple of 16"),
        ({"steps": 0}, "steps must be"),
        ({"schedule": "cosine"}, "schedule must be one of"),
    ],
)
def test_bad_requests_get_clear_errors(engine, bad, message):
    events = list(engine.run(req(**bad)))
    assert len(events) == 1 and isinstance(events[0], Error) and message in events[0].message


def test_image_as_png(engine, tmp_path):
    out = tmp_path / "img.png"
    res = engine.generate(req(frames=1), out=out)
    assert res.path == out and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and res.frames.shape == (1, 64, 64, 3)
    # A name the engine cannot honour is refused before the transformer runs, and nothing is written.
    events = list(engine.run(req(frames=8), out=tmp_path / "clip.png"))
    assert len(events) == 1 and isinstance(events[0], Error) and "--frames 1" in events[0].message
    events = list(engine.run(req(frames=8), out=tmp_path / "clip.gif"))
    assert len(events) == 1 and isinstance(events[0], Error) and ".mp4" in events[0].message
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["img.json", "img.png", "img.thumb.png"]


def test_negative_prompt_changes_the_result(engine):
    a = engine.generate(req(seed=1, guidance=4.0))
    b = engine.generate(req(seed=1, guidance=4.0, negative_prompt="a green star"))
    assert not np.array_equal(a.frames, b.frames)


def test_abandoned_run_stops_its_worker(engine):
    import threading

    before = threading.active_count()
    gen = engine.run(req(steps=50))
    next(gen)
    gen.close()  # e.g. the browser went away
    assert threading.active_count() == before
    assert isinstance(list(engine.run(req()))[-1], Result)


def test_precision_follows_the_hardware(tiny_model_dir, tmp_path):
    auto = Engine(tiny_model_dir, device="cpu", cache_dir=None, outputs_dir=tmp_path)
    # bf16 on a CPU only where it is native: emulated, it made a default clip 17x slower.
    assert auto.precision == ("bf16" if bf16_is_fast(torch.device("cpu")) else "fp32")
    assert Engine(tiny_model_dir, device="cpu", cache_dir=None, outputs_dir=tmp_path, bf16=False).precision == "fp32"
    assert auto.generate(req()).metadata["precision"] == auto.precision
    # A GPU only where it runs bf16 natively (Ampere and later); none here, none at all.
    native = torch.cuda.is_available() and torch.cuda.get_device_properties(0).major >= 8
    assert bf16_is_fast(torch.device("cuda")) == native and not bf16_is_fast(torch.device("meta"))


def test_a_non_square_clip_goes_through_at_its_shape(engine):
    events = list(engine.run(req(width=64, height=32)))
    previews = [e for e in events if isinstance(e, Preview)]
    assert previews[0].frames.shape == (2, 32, 64, 3)
    res = events[-1]
    assert isinstance(res, Result) and res.frames.shape == (8, 32, 64, 3)
    frames, fps = read_video(res.path)[:2]
    assert frames.shape == (8, 32, 64, 3) and fps == 8
    assert res.metadata["request"]["width"] == 64 and res.metadata["request"]["height"] == 32
    # 0 is `size`: a tall frame at the default width; and the square as before.
    assert engine.generate(req(height=96, frames=1)).frames.shape == (1, 96, 64, 3)
    assert engine.generate(req(frames=1)).frames.shape == (1, 64, 64, 3)


def test_a_non_square_clip_upscaled_in_the_same_job(engine):
    res = engine.generate(req(width=64, height=32, steps=2, frames=4, upscale=2))
    assert res.frames.shape == (4, 64, 128, 3) and res.metadata["size"] == [128, 64]
    assert res.metadata["upscaled_from"]["request"]["height"] == 32


def test_limits_come_from_the_model(engine, tiny_model_dir, tmp_path):
    assert engine.limits_for() == ModelLimits(size_multiple=16, max_frames=64, max_height=512, max_width=512)
    (error,) = list(engine.run(req(width=1024)))
    assert error.message == (
        "width must be a multiple of 16 between 16 and 512, got 1024"
        " (this model makes up to 64 frames of up to 512x512 px, sides multiples of 16)."
    )
    (error,) = list(engine.run(req(frames=65)))
    assert error.message.startswith("frames must be between 1 (an image) and 64, got 65 (this model makes up to 64")
    # A generator with smaller position tables: 4 latent frames of 4, 4 x 8 patches of 2 x 2 latents of 8 px.
    small = tmp_path / "small-model"
    shutil.copytree(tiny_model_dir, small)
    cfg = read_config(small / "t2v")["config"]
    gen_cfg = config_from_dict(GeneratorConfig, cfg)
    gen_cfg = replace(gen_cfg, dit=replace(gen_cfg.dit, max_t=4, max_h=4, max_w=8))
    save_component(small / "t2v", "generator", gen_cfg, Generator(gen_cfg))
    e = Engine(small, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out")
    assert e.limits_for("generator") == ModelLimits(size_multiple=16, max_frames=16, max_height=64, max_width=128)
    assert e.generate(req(width=128, height=64, frames=16, steps=1)).frames.shape == (16, 64, 128, 3)
    (error,) = list(e.run(req(width=128, height=80)))
    assert error.message.startswith("height must be a multiple of 16 between 16 and 64, got 80")
    assert "up to 16 frames of up to 128x64 px" in error.message
    (error,) = list(e.run(req(frames=17)))
    assert "between 1 (an image) and 16, got 17" in error.message
    (error,) = list(e.run(req(size=128)))  # a square must fit the shorter table
    assert error.message.startswith("size must be a multiple of 16 between 16 and 64, got 128")
    (error,) = list(e.run(req(width=-16)))
    assert error.message == "width must be 0 (square, at size) or positive, got -16."
