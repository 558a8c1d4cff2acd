import json

import av
import numpy as np
import pytest
import torch

from engine.engine import Engine
from engine.precision import bf16_is_fast
from engine.requests import CancelToken, Error, Preview, Progress, Result
from engine.tasks import T2VRequest
from engine.video_io import read_metadata


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
    assert bf16_is_fast(torch.device("cuda")) and not bf16_is_fast(torch.device("meta"))
