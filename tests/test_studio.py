"""Studio handlers against a real engine on a tiny config, and the history folder."""

import json
import threading

import numpy as np
import pytest

from engine.engine import Engine
from studio import build_ui
from studio.compare import compare_html
from studio.history import History
from studio.t2v_tab import T2VHandlers, preview_strip, settings_values

SETTINGS = dict(
    prompt="a red circle moving left on a blue background",
    negative="",
    seed=3,
    steps=3,
    guidance=4.0,
    frames=8,
    size=64,
    schedule="linear-quadratic",
)


@pytest.fixture()
def engine(tiny_model_dir, tmp_path):
    return Engine(tiny_model_dir, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "out")


def run(h, session="a", batch=1, **kw):
    return list(h.generate(**(SETTINGS | kw), batch=batch, session=session))


def test_generate_streams_progress_previews_and_result(engine):
    h = T2VHandlers(engine, {})
    evs = run(h)
    assert [e["progress"] for e in evs if "progress" in e] == [(1, 3), (2, 3), (3, 3)]
    assert evs[0] == {"reading": ""}  # the tiny model has no rewriter
    assert "ETA" in evs[1]["status"]
    previews = [e["preview"] for e in evs if "preview" in e]
    assert len(previews) == 3 and previews[0].dtype == np.uint8 and previews[0].shape[0] == 128
    final = evs[-1]
    assert final["result"].endswith(".mp4") and final["results"] == [final["result"]]
    assert "seed 3" in final["status"]


def test_batch_runs_consecutive_seeds(engine):
    evs = run(T2VHandlers(engine, {}), batch=3)
    results = evs[-1]["results"]
    assert len(results) == 3
    seeds = [json.loads(open(p.replace(".mp4", ".json")).read())["request"]["seed"] for p in results]
    assert seeds == [3, 4, 5]


def test_errors_are_messages_and_next_job_works(engine):
    h = T2VHandlers(engine, {})
    evs = run(h, prompt="  ")
    assert evs[-1]["error"].startswith("The prompt is empty")
    assert "result" in run(h)[-1]


def test_stop_only_stops_that_session(engine):
    tokens = {}
    h = T2VHandlers(engine, tokens)
    gen = h.generate(**(SETTINGS | {"steps": 30}), batch=1, session="alice")
    next(gen)
    other = T2VHandlers(engine, tokens)
    other.stop("bob")  # bob has no job: nothing happens to alice
    assert not tokens["alice"].cancelled
    h.stop("alice")
    rest = list(gen)
    assert rest[-1].get("cancelled") and "Cancelled" in rest[-1]["status"]
    assert all(e["progress"][0] <= 2 for e in rest if "progress" in e)  # no step after the stop


def test_history_lists_reopens_and_deletes(engine, tmp_path):
    h = T2VHandlers(engine, {})
    first = run(h, seed=1)[-1]["result"]
    second = run(h, seed=2, frames=1)[-1]["result"]
    (tmp_path / "out" / "broken.json").write_text("{not json")
    (tmp_path / "out" / "broken.mp4").write_bytes(b"")
    hist = History(tmp_path / "out")
    entries = hist.entries()
    assert [e.seed for e in entries] == [2, 1] and entries[0].media.suffix == ".png" and entries[1].is_video
    assert entries[0].thumb is not None and entries[0].thumb.is_file()
    values = settings_values(entries[1].request)
    assert values[0] == SETTINGS["prompt"] and values[2] == 1 and values[5] == 8
    html = compare_html(entries)
    assert html.count("<video") == 1 and html.count("<img") == 1 and "cmp-scrub" in html
    assert hist.delete(entries[1].id) and not any(f.exists() for f in [__import__("pathlib").Path(first)])
    assert not hist.delete("../etc") and [e.seed for e in hist.entries()] == [2]
    assert second


def test_preview_strip():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    assert preview_strip(frames, scale=2).shape == (16, (3 * 8 + 2 * 2) * 2, 3)


def test_build_ui_has_the_tabs(engine):
    demo = build_ui(engine)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"tab-t2v", "tab-history", "tab-compare", "t2v-generate", "t2v-stop", "compare-board"} <= ids
    # Every engine event shares one queue of one.
    fns = [f for f in demo.fns.values() if getattr(f, "concurrency_id", None) == "engine"]
    assert fns and all(f.concurrency_limit == 1 for f in fns)


def test_two_sessions_do_not_share_results(engine):
    h = T2VHandlers(engine, {})
    out = {}

    def user(name, seed):
        out[name] = run(h, session=name, seed=seed)[-1]["result"]

    threads = [threading.Thread(target=user, args=(n, s)) for n, s in (("u1", 11), ("u2", 12))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out["u1"] != out["u2"] and "-11." in out["u1"] and "-12." in out["u2"]


def test_the_tab_shows_how_the_prompt_is_read(rewriting_model, tmp_path):
    engine = Engine(rewriting_model, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out")
    h = T2VHandlers(engine, {})
    assert h.reading("a MAGENTA star").startswith("Read as “") and "ignored: magenta" in h.reading("a MAGENTA star")
    assert h.reading("a red star", rewrite=False) == "" and h.reading("   ") == ""
    evs = run(h, prompt="red ball travelling from right to left, blue bg")
    assert evs[0]["reading"] == h.reading("red ball travelling from right to left, blue bg", frames=8)
    meta = json.loads(open(evs[-1]["result"].replace(".mp4", ".json")).read())
    assert meta["rewrite"]["text"] in evs[0]["reading"]
    off = run(h, rewrite=False)
    assert off[0]["reading"] == ""
    meta = json.loads(open(off[-1]["result"].replace(".mp4", ".json")).read())
    assert meta["rewrite"] is None and settings_values(meta["request"])[8] is False
