"""The studio's Animate tab against the tiny model: a picture animated, a clip continued, frames
filled in, bad uploads said in the engine's words, results in History, reopened and sent on.
Driven through the tab's handlers (and the page's own event functions), without a browser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from engine.engine import Engine
from engine.video_io import read_image, read_video, write_png, write_video
from engine.world.render import render
from engine.world.scene import Scene, ShapeObject
from studio import build_ui
from studio.animate_tab import AnimateHandlers, settings_values
from studio.history import History

SCENE = Scene("blue", (ShapeObject("red", "square", "right", 0.5, 0.5),))
PROMPT = "a red square moving right on a blue background"
PICTURE = dict(part="animate", prompt=PROMPT, seed=3, steps=1, guidance=5.0, frames_guidance=1.5, frames=8)
PICTURE |= dict(schedule="linear-quadratic", rewrite=True)
EXTEND = dict(part="extend", prompt=PROMPT, seconds=1.0, seed=2, steps=1, guidance=5.0, frames_guidance=1.5)
FILL = dict(part="interpolate", factor=2, prompt="", seed=0, steps=1, guidance=1.0, frames_guidance=1.0)


@pytest.fixture()
def engine(tiny_model_dir, tmp_path):
    return Engine(tiny_model_dir, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "out")


@pytest.fixture()
def h(engine, tmp_path):
    # The page's own folder for what the tab shows (build_ui uses the same), so reopening finds it.
    return AnimateHandlers(engine, {}, tmp_path / "out" / ".studio")


@pytest.fixture()
def pictures(tmp_path):
    """A first and a last picture as a user might upload them: 96x96 PNGs."""
    frames = render(SCENE, 96, 32)
    return str(write_png(tmp_path / "upload" / "first.png", frames[0])), str(
        write_png(tmp_path / "upload" / "last.png", frames[-1])
    )


@pytest.fixture()
def clip(tmp_path):
    """A 12-frame, 8 fps clip of the shapes world (1.5 s)."""
    return str(write_video(tmp_path / "upload" / "clip.mp4", render(SCENE, 64, 12), 8))


def run(h, **values):
    return list(h.run(session="a", **values))


def by_id(fn, out) -> dict:
    """A page event's outputs by their components' elem_id (the order is the page's business)."""
    return {getattr(c, "elem_id", None): v for c, v in zip(fn.outputs, out, strict=True)}


def fn_named(demo, name):
    return [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name]


def test_a_picture_becomes_a_clip_and_goes_to_history(h, pictures, tmp_path):
    first, last = pictures
    got = h.load_picture(first)
    assert got["summary"].endswith("64x64, 1 frame") and read_image(got["view"]).shape == (64, 64, 3)
    assert Path(got["view"]).parent == tmp_path / "out" / ".studio"
    line = h.picture_line(got, h.load_picture(last), 8)
    assert line.startswith("First picture, as the model sees it: 96x96") and "Last picture (frame 8): 96x96" in line
    evs = run(h, image=first, last=last, **PICTURE)
    assert [e["progress"] for e in evs if "progress" in e] == [(1, 1)] and "ETA" in evs[0]["status"]
    previews = [e["preview"] for e in evs if "preview" in e]
    assert len(previews) == 1 and previews[0].dtype == np.uint8 and previews[0].shape[0] == 128
    final = evs[-1]
    assert final["status"].startswith("done in") and f"“{PROMPT}” · 8 frames · seed 3" in final["status"]
    assert Path(final["result"]).is_file() and read_video(final["result"])[0].shape == (8, 64, 64, 3)
    meta = json.loads(Path(final["result"]).with_suffix(".json").read_text())
    assert meta["request"] | {"image": first, "last": last} == meta["request"]
    assert {k: meta["request"][k] for k in ("task", "prompt", "seed", "steps", "frames")} == {
        "task": "animate",
        "prompt": PROMPT,
        "seed": 3,
        "steps": 1,
        "frames": 8,
    }
    # The pictures as the model saw them, then the clip, under one play bar.
    board = final["board"]
    assert board.count("<img") == 2 and board.count("<video") == 1 and "cmp-play" in board
    assert board.index("First picture") < board.index("Last picture") < board.index(f"Result: {PROMPT}")
    (entry,) = History(tmp_path / "out").entries()
    assert entry.task == "animate" and entry.prompt == f"animate: {PROMPT}" and entry.fps == 8
    assert entry.settings_text() == (
        "seed 3 · 1 steps · follow 5.0 · keep to the pictures 1.5 · 8 frames · from first.png · to last.png"
    )


def test_a_clip_continued_by_one_second_is_eight_frames_longer(h, clip, tmp_path):
    src = h.load_clip(clip)
    assert src["frames"] == 12 and src["fps"] == 8 and read_video(src["view"])[0].shape == (12, 64, 64, 3)
    assert h.extend_plan(src, 1.0, 1) == (
        "Makes **8 new frames in 1 window** (1 step in all): 12 + 8 = **20 frames**, 2.5 s at 8 fps."
    )
    assert "in 2 windows** (48 steps in all): 12 + 32 = **44 frames**" in h.extend_plan(src, 4.0, 24)
    final = run(h, video=clip, **EXTEND)[-1]
    frames, fps = read_video(final["result"])
    assert frames.shape[0] == 12 + 8 and fps == pytest.approx(8)
    assert "+8 frames in 1 window: “" in final["status"]
    # The source beside the result (the source, then the new frames).
    board = final["board"]
    assert board.count("<video") == 2 and board.index("Source, as the model sees it") < board.index("Continued: ")
    (entry,) = History(tmp_path / "out").entries()
    assert entry.prompt == f"continue: {PROMPT}" and entry.meta["new_frames"] == 8
    assert entry.settings_text() == (
        "seed 2 · 1 steps · follow 5.0 · keep to the clip 1.5 · +8 frames (1 s) · 1 window · from clip.mp4"
    )
    # Two windows: one progress bar over both, the status saying which window a step is in.
    evs = run(h, video=clip, **(EXTEND | {"seconds": 4.0, "seed": 5}))
    assert [e["progress"] for e in evs if "progress" in e] == [(1, 2), (2, 2)]
    assert [e["status"][:11] for e in evs if "progress" in e] == ["window 1/2 ", "window 2/2 "]
    assert read_video(evs[-1]["result"])[0].shape[0] == 12 + 32 and len([e for e in evs if "preview" in e]) == 2


def test_fill_in_frames_doubles_the_count_and_the_rate(h, tmp_path):
    nine = str(write_video(tmp_path / "upload" / "nine.mp4", render(SCENE, 64, 33)[::4], 8))
    src = h.load_clip(nine)
    plan = h.fill_plan(src, 2, 1)
    assert plan.startswith("**9 frames at 8 fps -> 17 frames at 16 fps** (2x; 1 window, 1 step in all)")
    assert "the 8 between" in plan and "-> 33 frames at 32 fps** (4x; 2 windows" in h.fill_plan(src, 4, 1)
    final = run(h, video=nine, **FILL)[-1]
    frames, fps = read_video(final["result"])
    assert frames.shape[0] == 17 and fps == pytest.approx(16)
    assert "2x: 17 frames at 16 fps" in final["status"]
    assert 'data-fps="16.0"' in final["board"] and 'data-fps="8.0"' in final["board"]
    (entry,) = History(tmp_path / "out").entries()
    assert entry.prompt == "fill in 2x: nine.mp4" and entry.fps == 16
    assert entry.settings_text() == "seed 0 · 1 steps · 2x, 8 -> 16 fps · 1 window · from nine.mp4"
    # A picture has one frame: the tab says so before, the engine when run.
    still = write_png(tmp_path / "still.png", render(SCENE, 64, 1)[0])
    assert "needs a clip of at least 2" in h.fill_plan(h.load_clip(str(still)), 2, 1)
    assert "at least 2" in run(h, video=str(still), **FILL)[-1]["error"]


def test_bad_uploads_get_the_engines_message_and_the_tab_keeps_working(h, pictures, tmp_path):
    notes = tmp_path / "secret-folder" / "notes.mp4"
    notes.parent.mkdir()
    notes.write_text("not a video")
    junk = tmp_path / "secret-folder" / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    for got, name in ((h.load_clip(str(notes)), "notes.mp4"), (h.load_picture(str(junk)), "junk.png")):
        assert list(got) == ["error"] and name in got["error"] and "secret-folder" not in got["error"], got
        assert "\n" not in got["error"] and "Traceback" not in got["error"]
    assert h.clip_line(h.load_clip(str(notes))) == f"**{h.load_clip(str(notes))['error']}**"
    assert h.picture_line(h.load_picture(str(junk))).startswith("**") and h.extend_plan({"error": "x"}, 1, 1) == ""
    assert h.load_clip(None) == {} and h.load_picture("") == {} and "Upload a picture" in h.picture_line(None)
    # Run anyway: the same one line, as an error (not a stop); then the next job works.
    for part, values in (("extend", {"video": str(notes)}), ("interpolate", {"video": str(notes)})):
        evs = run(h, **(EXTEND if part == "extend" else FILL), **values)
        assert len(evs) == 1 and evs[0]["error"] == h.load_clip(str(notes))["error"] and not evs[0]["cancelled"]
    evs = run(h, image=str(junk), **PICTURE)
    assert evs[-1]["error"] == h.load_picture(str(junk))["error"]
    assert run(h, image="", **PICTURE)[-1]["error"].startswith("No picture")
    assert run(h, image=pictures[0], **(PICTURE | {"prompt": " "}))[-1]["error"].startswith("The prompt is empty")
    assert "result" in run(h, image=pictures[0], **PICTURE)[-1]


def test_results_reopen_in_their_part_with_their_settings(engine, h, pictures, clip, tmp_path):
    first, _ = pictures
    run(h, image=first, **PICTURE)
    run(h, video=clip, **(EXTEND | {"seconds": 1.5}))
    demo = build_ui(engine, tmp_path / "out")
    (reopen,) = fn_named(demo, "reopen")
    animated, continued = sorted(History(tmp_path / "out").entries(), key=lambda e: e.task)
    out = by_id(reopen, reopen.fn(animated.id))
    assert out["tabs"].selected == "animate" and out["an-part"] == "animate"
    assert out["an-image"] == first and out["an-last"] is None and out["an-prompt"] == PROMPT
    assert [out[f"an-{k}"] for k in ("seed", "steps", "guidance", "keep", "frames")] == [3, 1, 5.0, 1.5, 8]
    assert animated.id in out["an-board"] and out["an-board"].count("<img") == 1
    assert out["ex-source"] == gr.skip() and out["t2v-prompt"] == gr.skip()  # the other parts and tabs alone
    out = by_id(reopen, reopen.fn(continued.id))
    assert out["an-part"] == "extend" and out["ex-source"] == clip and out["ex-seconds"] == 1.5
    assert out["ex-prompt"] == PROMPT and out["ex-seed"] == 2 and out["an-image"] == gr.skip()
    assert continued.id in out["ex-board"]
    # The uploads gone: the inputs as the model saw them (kept by the tab) stand in for them.
    Path(first).unlink()
    Path(clip).unlink()
    out = by_id(reopen, reopen.fn(animated.id))
    assert Path(out["an-image"]).parent == tmp_path / "out" / ".studio" and h.load_picture(out["an-image"])["view"]
    kept = by_id(reopen, reopen.fn(continued.id))["ex-source"]
    assert h.load_clip(kept)["frames"] == 12
    # A continuation asked in frames (a script) reopens as seconds.
    values = settings_values({"task": "extend", "frames": 12, "seconds": 0.0}, {"video": None})
    assert values["seconds"] == 1.5 and values["video"] is None


def test_send_to_animate_and_on_from_it(engine, h, clip, tmp_path):
    demo = build_ui(engine, tmp_path / "out")
    sends = fn_named(demo, "send")
    history_send = sends[0]
    nones = [None] * (len(history_send.inputs) - 2)
    for name, part, inbox in (
        ("Animate: continue a clip", "extend", "ex-source"),
        ("Animate: fill in frames", "interpolate", "fi-source"),
        ("Animate: picture to clip", "animate", "an-clip"),  # a clip there: pick the frame
    ):
        out = by_id(history_send, history_send.fn(name, clip, *nones))
        assert out["tabs"].selected == "animate" and out["an-part"] == part and out[inbox] == clip
        others = {"ex-source", "fi-source", "an-clip", "edit-source", "upscale-source"} - {inbox}
        assert all(out[k] == gr.skip() for k in others)
    out = by_id(history_send, history_send.fn("Edit", clip, *nones))
    assert out["edit-source"] == clip and out["an-part"] == gr.skip()
    # Each part's own "Send result to" offers every target (Edit, Upscale, Animate again...).
    choices = {
        c.elem_id: [v for _, v in c.choices]
        for c in demo.blocks.values()
        if getattr(c, "elem_id", "") in ("an-send-choice", "ex-send-choice", "fi-send-choice")
    }
    assert len(choices) == 3 and all(
        {"Edit", "Upscale", "Animate: continue a clip"} <= set(v) for v in choices.values()
    )
    # The clip's frames to pick from: the frame picked becomes the first (or last) picture.
    taken = h.take_from(clip)
    assert taken["count"] == 12 and np.array_equal(h.frame(taken, 99), h.frame(taken, 11))
    picture = h.use_frame(taken, 5)
    assert picture.endswith("-frame-5.png") and np.array_equal(read_image(picture), read_video(clip)[0][5])
    assert h.load_picture(picture)["summary"].startswith("64x64")


def test_the_page_runs_each_part_as_its_own_request(engine, clip, tmp_path):
    demo = build_ui(engine, tmp_path / "out")
    runs = [f for f in fn_named(demo, "run") if "part" in f.input_keyword_names]
    parts = {}
    for f in runs:  # each part's run names its request by a State holding the part
        names = dict(zip(f.input_keyword_names, f.inputs, strict=True))
        parts[names["part"].value] = set(names)
        assert f.concurrency_id == "engine" and f.concurrency_limit == 1
    assert parts["animate"] == {"part", *PICTURE, "image", "last"}
    assert parts["extend"] == {"video", *EXTEND, "schedule", "rewrite"}
    assert parts["interpolate"] == {"video", *FILL, "schedule", "rewrite"}
    (page_run,) = [f.fn for f in runs if "seconds" in f.input_keyword_names]
    given = {"video": clip, **EXTEND, "schedule": "linear", "rewrite": False}
    last = list(page_run(**given, request=None, progress=lambda *a, **k: None))[-1]
    assert any("+8 frames in 1 window" in str(v) for v in last.values()), last
    assert History(tmp_path / "out").entries()[0].task == "extend"


def test_without_an_animation_model_the_tab_says_so(tiny_model_dir, pictures, tmp_path):
    bare = tmp_path / "no-animator"
    shutil.copytree(tiny_model_dir, bare, ignore=shutil.ignore_patterns("animate"))
    engine = Engine(bare, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out")
    h = AnimateHandlers(engine, {}, tmp_path / "out" / ".studio")
    assert "view" in h.load_picture(pictures[0])  # still shown as it would be seen
    assert "no animation model" in run(h, image=pictures[0], **PICTURE)[-1]["error"]
    demo = build_ui(engine, tmp_path / "out")
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    for name in ("an-generate", "ex-generate", "fi-generate"):
        assert blocks[name].interactive is False, name
    assert "no animation model" in blocks["an-status"].value
