"""Studio handlers against a real engine on a tiny config, and the history folder."""

import json
import shutil
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from engine.engine import Engine
from engine.tasks import EditRequest, SDEditRequest, T2VRequest, UpscaleRequest
from engine.video_io import read_image, read_video, write_png, write_video
from engine.world.characters import Character
from engine.world.palette import COLORS
from engine.world.render import render
from engine.world.scene import Scene, ShapeObject
from studio import build_ui
from studio.characters import CharacterNameError, CharacterStore
from studio.compare import compare_html
from studio.edit_tab import EditHandlers, difference
from studio.edit_tab import settings_values as edit_settings_values
from studio.handler import preview_strip
from studio.history import History
from studio.personalize_tab import PersonalizeHandlers
from studio.personalize_tab import settings_values as pt_settings_values
from studio.t2v_tab import T2VHandlers, settings_values
from studio.upscale_tab import UpscaleHandlers

SETTINGS = dict(
    prompt="a red circle moving left on a blue background",
    negative_prompt="",
    seed=3,
    steps=3,
    guidance=4.0,
    frames=8,
    width=64,
    height=64,
    schedule="linear-quadratic",
)
# The T2V tab's controls: SETTINGS's, then rewrite, through-an-image, then-upscale, the style (LoRA)
# and its strength.
T2V_N = len(SETTINGS) + 5


@pytest.fixture()
def engine(tiny_model_dir, tmp_path):
    return Engine(tiny_model_dir, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "out")


def run(h, session="a", batch=1, **kw):
    return list(h.run(**(SETTINGS | kw), batch=batch, session=session))


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
    gen = h.run(**(SETTINGS | {"steps": 30}), batch=1, session="alice")
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
    assert values["prompt"] == SETTINGS["prompt"] and values["seed"] == 1 and values["frames"] == 8
    html = compare_html(entries)
    assert html.count("<video") == 1 and html.count("<img") == 1 and "cmp-scrub" in html
    assert hist.delete(entries[1].id) and not any(f.exists() for f in [__import__("pathlib").Path(first)])
    assert not hist.delete("../etc") and [e.seed for e in hist.entries()] == [2]
    assert second


def test_preview_strip():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    assert preview_strip(frames, scale=2).shape == (16, (3 * 8 + 2 * 2) * 2, 3)


def test_a_model_of_other_footage_is_not_introduced_as_the_shapes_world(tiny_model_dir, rewriting_model, tmp_path):
    def intro(model):
        eng = Engine(model, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out")
        demo = build_ui(eng)
        return next(b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "t2v-knows")

    assert "shapes world" in intro(rewriting_model)  # the world's model: its rewriter reads world prompts
    own = intro(tiny_model_dir)  # no rewriter: trained on footage of its own
    assert "trained on footage of its own" in own and tiny_model_dir.name in own and "shapes world" not in own


def test_build_ui_has_the_tabs(engine):
    demo = build_ui(engine)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"tab-t2v", "tab-history", "tab-compare", "t2v-generate", "t2v-stop", "compare-board"} <= ids
    assert {"tab-edit", "edit-source", "edit-instruction", "edit-generate", "edit-stop", "edit-board"} <= ids
    assert {
        "tab-upscale",
        "upscale-source",
        "upscale-scale",
        "upscale-generate",
        "upscale-stop",
        "upscale-board",
    } <= ids
    assert {
        "upscale-seed",
        "upscale-dice",
        "upscale-steps",
        "t2v-upscale4",
        "t2v-then-upscale",
        "edit-then-upscale",
    } <= ids
    assert {
        "tab-personalize",
        "pt-reference",
        "pt-prepared",
        "pt-pick",
        "pt-save-name",
        "pt-save",
        "pt-delete",
        "pt-clip",
        "pt-frame-k",
        "pt-use-frame",
        "pt-prompt",
        "pt-seed",
        "pt-dice",
        "pt-guidance",
        "pt-look",
        "pt-generate",
        "pt-stop",
        "pt-board",
        "pt-upscale4",
        "pt-then-upscale",
    } <= ids
    tabs = [b.id for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs.index("edit") + 1 == tabs.index("personalize") == tabs.index("animate") - 1
    assert tabs.index("animate") + 1 == tabs.index("upscale")
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
    assert meta["rewrite"] is None and settings_values(meta["request"])["rewrite"] is False


# -- the Edit tab --------------------------------------------------------------------------------
PT_N = 10  # the Personalize tab's controls (reference, its name, prompt and 7 settings)
AN_N = 1 + 11 + 10 + 10  # the Animate tab's reopen outputs: its part, each part's controls and board
EDIT = dict(
    mode="instruction",
    instruction="make the circle yellow",
    prompt="",
    edit_task="auto",
    seed=2,
    steps=3,
    guidance=5.0,
    source_guidance=1.5,
    strength=0.6,
    schedule="linear-quadratic",
)
EDIT_CONTROLS = ["video", *EDIT, "rewrite", "upscale"]  # the Edit tab's controls, as reopen fills them


@pytest.fixture()
def source_clip(tmp_path):
    """A 128x96 16 fps, 1 s clip of the shapes world: the model sees its centre 96x96 at 64x64, 8 fps."""
    frames = render(Scene("blue", (ShapeObject("red", "circle", "left"),)), size=96, frames=16)
    frames = np.pad(frames, ((0, 0), (0, 0), (16, 16), (0, 0)))  # black bars left and right
    return str(write_video(tmp_path / "upload" / "clip.mp4", frames, 16))


def edit(h, video, session="a", **kw):
    return list(h.run(video=video, **(EDIT | kw), session=session))


def test_edit_source_is_shown_as_the_model_sees_it(engine, source_clip, tmp_path):
    h = EditHandlers(engine, {}, tmp_path / "work")
    src = h.load(source_clip)
    assert src["summary"] == "128x96 16 fps 1.0 s -> centre square, 64x64, 8 fps, 8 frames"
    view, _ = read_video(src["view"])
    assert view.shape == (8, 64, 64, 3)
    kept = np.load(src["frames"])
    assert kept.shape == (8, 64, 64, 3) and np.array_equal(kept, engine.inspect("edit", source_clip).frames)
    # Its top edge is the scene's blue (the upload is H.264: within a few levels); the bars were cropped away.
    assert np.abs(kept[0, 2, 32].astype(int) - COLORS["blue"]).max() <= 4 and kept[0, :, :2].min() > 20
    # A bad upload is a message, nothing else.
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    out = h.load(str(bad))
    assert list(out) == ["error"] and "notes.mp4" in out["error"] and "Accepted" in out["error"]
    assert h.load(None) == {}
    # An image is a one-frame source.
    write_png(tmp_path / "still.png", render(Scene("white", (ShapeObject("green", "star", "still"),)), 80, 1)[0])
    assert h.load(str(tmp_path / "still.png"))["summary"].endswith("64x64, 1 frame")


def test_edit_reads_the_instruction_as_typed(engine, source_clip, tmp_path):
    h = EditHandlers(engine, {}, tmp_path / "work")
    src = h.load(source_clip)
    line = h.reading("instruction", "make the circle yellow", "", "auto", True, src)
    assert "recolor" in line and "yellow" in line and "read from the instruction" in line
    line = h.reading("instruction", "make the MAGENTA thing wobble", "", "auto", True, src)
    assert "unknown: MAGENTA, wobble" in line and "can't tell" in line
    line = h.reading("instruction", "make the circle yellow", "", "reshape", True, src)
    assert "task **reshape** (chosen; the instruction reads as recolor)" in line
    assert h.reading("instruction", "  ", "", "auto", True, src) == ""
    assert h.reading("sdedit", "", "a yellow circle", "auto", True, src) == ""  # no rewriter in the tiny model


def test_edit_errors_then_an_edit_goes_to_history(engine, source_clip, tmp_path):
    h = EditHandlers(engine, {}, tmp_path / "work")
    h.load(source_clip)
    evs = edit(h, source_clip, instruction="  ")
    assert evs[-1]["error"].startswith("The instruction is empty")
    assert edit(h, "")[-1]["error"].startswith("No source video")
    evs = edit(h, source_clip)
    assert [e["progress"] for e in evs if "progress" in e] == [(1, 3), (2, 3), (3, 3)]
    previews = [e["preview"] for e in evs if "preview" in e]
    assert len(previews) == 3 and previews[0].shape[0] == 128
    final = evs[-1]
    assert Path(final["result"]).is_file() and final["result"].endswith(".mp4")
    assert "recolor" in final["status"] and "seed 2" in final["status"]
    # Source | result | what changed, in the synced player; the difference is a real clip.
    board = final["board"]
    assert board.count("<video") == 3 and "cmp-scrub" in board and "64x64, 8 fps, 8 frames" in board
    result, _ = read_video(final["result"])
    source = np.load(h.load(source_clip)["frames"])
    diff, _ = read_video(final["diff"])
    assert result.shape == source.shape == diff.shape == (8, 64, 64, 3)
    expected = difference(result, source)
    assert np.abs(diff.astype(int) - expected.astype(int)).mean() < 3  # H.264, near-lossless
    assert not difference(source, source).any()
    # In History as an edit, with its instruction and settings.
    entry = History(tmp_path / "out").entries()[0]
    assert entry.task == "edit" and entry.media == Path(final["result"])
    assert entry.prompt == "edit: make the circle yellow" and entry.meta["edit_task"] == "recolor"
    assert "keep source 1.5" in entry.settings_text() and "source clip.mp4" in entry.settings_text()
    assert entry.meta["source"]["summary"] == "128x96 16 fps 1.0 s -> centre square, 64x64, 8 fps, 8 frames"
    assert not any(p.suffix == ".json" for p in (tmp_path / "out" / ".studio").glob("*"))


def test_edit_needs_an_edit_model_for_instructions(tiny_model_dir, source_clip, tmp_path):
    bare = tmp_path / "no-edit-model"
    shutil.copytree(tiny_model_dir, bare, ignore=shutil.ignore_patterns("edit"))
    engine = Engine(bare, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out")
    h = EditHandlers(engine, {}, tmp_path / "work")
    assert "no edit model" in h.reading("instruction", "", "", "auto", True, None)
    assert "no edit model" in edit(h, source_clip)[-1]["error"]


def test_edit_describe_mode_runs_sdedit_and_reopens_in_describe_mode(engine, source_clip, tmp_path):
    h = EditHandlers(engine, {}, tmp_path / "out" / ".studio")
    described = "a yellow circle moving left on a blue background"
    # The mode picks the request: an instruction edit, or an SDEdit of the described result.
    assert type(h.request(EDIT | {"video": source_clip})) is EditRequest
    sd = h.request(EDIT | {"mode": "sdedit", "video": source_clip, "prompt": described})
    assert sd == SDEditRequest(video=source_clip, prompt=described, seed=2, steps=3, strength=0.6)
    final = edit(h, source_clip, mode="sdedit", prompt=described)[-1]
    assert "result" in final, final
    assert f"described: “{described}”" in final["status"] and final["board"].count("<video") == 3
    entry = History(tmp_path / "out").entries()[0]
    assert entry.task == "sdedit" and entry.request["strength"] == 0.6 and "instruction" not in entry.request
    assert entry.prompt == f"edit: {described}"
    assert "strength 0.6" in entry.settings_text()
    # The page's Edit button (its controls' values by name) runs an SDEdit in describe mode too.
    demo = build_ui(engine, tmp_path / "out")
    (page_run,) = [f.fn for f in fn_named(demo, "run") if "mode" in f.input_keyword_names]
    given = {"video": source_clip, **EDIT, "mode": "sdedit", "prompt": described, "rewrite": True, "upscale": 0}
    last = list(page_run(**given, request=None, progress=lambda *a, **k: None))[-1]
    assert any(f"described: “{described}”" in str(v) for v in last.values()), last
    # Reopened: the Edit tab, in describe mode, with the prompt and strength it was made with.
    (reopen,) = fn_named(demo, "reopen")
    t2v_n, edit_n = T2V_N, len(EDIT_CONTROLS)

    def reopened(entry_id: str) -> dict:
        out = reopen.fn(entry_id)
        assert out[0].selected == "edit"
        return dict(zip(EDIT_CONTROLS, out[1 + t2v_n : 1 + t2v_n + edit_n], strict=True))

    values = reopened(entry.id)
    assert values["mode"] == "sdedit" and values["prompt"] == described and values["strength"] == 0.6
    assert values["video"] == source_clip and values["instruction"] == "" and values["edit_task"] == "auto"
    # A result of an older studio (an edit request with mode "sdedit") reopens in describe mode too.
    old = tmp_path / "out" / "20200101-000000-edit-5.mp4"
    shutil.copyfile(entry.media, old)
    request = {"task": "edit", "mode": "sdedit", "video": source_clip, "instruction": "", "prompt": described}
    request |= {"edit_task": "auto", "seed": 5, "steps": 3, "guidance": 5.0, "source_guidance": 1.5, "strength": 0.4}
    meta = {"request": request, "created": "2020-01-01T00:00:00+00:00"}
    old.with_suffix(".json").write_text(json.dumps(meta))
    legacy = History(tmp_path / "out").get(old.stem)
    assert legacy.prompt == f"edit: {described}" and "strength 0.4" in legacy.settings_text()
    values = reopened(old.stem)
    assert values["mode"] == "sdedit" and values["prompt"] == described and values["strength"] == 0.4
    assert values["seed"] == 5 and values["video"] == source_clip
    # ... and an instruction edit of an older studio (mode "instruction") in its own mode.
    request |= {"mode": "instruction", "instruction": "make the circle yellow"}
    old.with_suffix(".json").write_text(json.dumps(meta))
    assert History(tmp_path / "out").get(old.stem).prompt == "edit: make the circle yellow"
    assert reopened(old.stem)["mode"] == "instruction"


def test_edit_stop(engine, source_clip, tmp_path):
    tokens = {}
    h = EditHandlers(engine, tokens, tmp_path / "work")
    gen = h.run(video=source_clip, **(EDIT | {"steps": 30}), session="alice")
    next(gen)
    h.stop("alice")
    rest = list(gen)
    assert rest[-1].get("cancelled") and all(e["progress"][0] <= 2 for e in rest if "progress" in e)
    assert "result" in edit(h, source_clip)[-1]  # the next job works


def fn_named(demo, name, n_inputs=None):
    return [
        f
        for f in demo.fns.values()
        if getattr(f.fn, "__name__", "") == name and (n_inputs is None or len(f.inputs) == n_inputs)
    ]


def test_reopen_an_edit_and_send_results_to_edit(engine, source_clip, tmp_path):
    h = EditHandlers(engine, {}, tmp_path / "out" / ".studio")
    final = edit(h, source_clip, seed=7, steps=2, source_guidance=2.0)[-1]
    entry = History(tmp_path / "out").entries()[0]
    values = edit_settings_values(entry.request, h.source_for(entry.meta))
    expected = {"video": source_clip, **EDIT, "seed": 7, "steps": 2, "source_guidance": 2.0, "rewrite": True}
    expected["upscale"] = 0
    assert list(expected) == EDIT_CONTROLS and {k: values[k] for k in expected} == expected
    # The studio's own reopen: the Edit tab's fields filled, the T2V tab's left alone.
    demo = build_ui(engine, tmp_path / "out")
    (reopen,) = fn_named(demo, "reopen")
    out = reopen.fn(entry.id)
    assert out[0].selected == "edit"
    t2v_n = T2V_N
    assert out[1 : 1 + t2v_n] == [gr.skip()] * t2v_n
    edit_n = len(EDIT_CONTROLS)
    assert out[1 + t2v_n : 1 + t2v_n + edit_n] == list(expected.values())
    # The Upscale tab's 5 controls and its board, the Personalize tab's controls and its board, the Animate tab's.
    assert out[1 + t2v_n + edit_n :] == [gr.skip()] * (6 + PT_N + 1 + AN_N)
    # A T2V result still reopens in its own tab, the Edit tab left alone.
    run(T2VHandlers(engine, {}), steps=1, frames=1)
    out = reopen.fn(History(tmp_path / "out").entries()[0].id)
    assert out[0].selected == "t2v" and out[1] == SETTINGS["prompt"]
    assert out[1 + t2v_n :] == [gr.skip()] * (edit_n + 6 + PT_N + 1 + AN_N)
    # With the upload gone, the source the model saw (kept by the tab) stands in for it.
    h.load(source_clip)
    Path(source_clip).unlink()
    kept = h.source_for(entry.meta)
    assert kept and np.array_equal(engine.inspect("edit", kept).frames.shape, (8, 64, 64, 3))
    # Send to Edit, from any result view: the tab switches and the result becomes the source.
    sends = fn_named(demo, "send")
    assert len(sends) == 8  # History, Text to video, Edit, Personalize, Animate's three parts, Upscale
    send = sends[0]
    n_targets = len(send.inputs) - 2
    out = send.fn("Edit", final["result"], *[None] * n_targets)
    assert out[0].selected == "edit" and out[1] == final["result"]
    # ... and an edit of an edit works.
    assert "result" in edit(h, out[1], instruction="remove the yellow circle")[-1]


# -- the Upscale tab -----------------------------------------------------------------------------
@pytest.fixture()
def small_clip(tmp_path):
    """A 64x48, 8 fps, 1 s clip: 4x is 256x192, the same 8 frames at 8 fps."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, 48, 64, 3))
    frames = np.clip(base + np.arange(8)[:, None, None, None] * 4, 0, 255).astype(np.uint8)
    return str(write_video(tmp_path / "upload" / "small.mp4", frames, 8))


def upscale(h, video, scale, steps, seed, session="local"):
    return h.run(video=video, scale=scale, steps=steps, seed=seed, session=session)


def upscale_handlers(engine, tmp_path, tokens=None):
    return UpscaleHandlers(engine, {} if tokens is None else tokens, tmp_path / "out" / ".studio")


def test_upscale_says_what_the_model_gets(engine, small_clip, tmp_path):
    h = upscale_handlers(engine, tmp_path)
    src = h.load(small_clip)
    assert src["size"] == [64, 48] and src["frames"] == 8 and not src["image"]
    assert h.input_line(src, 4).startswith("The model gets **64x48, 8 frames at 8 fps -> 256x192** (4x).")
    assert "-> 128x96** (2x)" in h.input_line(src, 2)
    assert read_video(src["view"])[0].shape == (8, 48, 64, 3)
    # Larger than the engine takes: reduced first (aspect kept), and the line says so.
    big = write_png(tmp_path / "big.png", np.zeros((300, 600, 3), np.uint8))
    line = h.input_line(h.load(str(big)), 2)
    assert "a 256x128 image -> 512x256 PNG** (2x)" in line and "600x300 image -> reduced to 256x128" in line
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    out = h.load(str(bad))
    assert list(out) == ["error"] and "notes.mp4" in h.input_line(out)
    assert h.load(None) == {} and h.input_line(None) == ""


def test_upscale_streams_progress_previews_and_plays_beside_bicubic(engine, small_clip, tmp_path):
    h = upscale_handlers(engine, tmp_path)
    evs = list(upscale(h, small_clip, 4, 3, 5))
    assert [e["progress"] for e in evs if "progress" in e] == [(1, 3), (2, 3), (3, 3)]
    assert "ETA" in evs[0]["status"]
    previews = [e["preview"] for e in evs if "preview" in e]
    assert len(previews) == 3 and previews[0].dtype == np.uint8 and previews[0].shape[0] == 192  # 4x, at 1:1
    final = evs[-1]
    assert final["status"].startswith("done in") and "64x48 -> 256x192 (4x) · seed 5" in final["status"]
    result, fps = read_video(final["result"])
    assert result.shape == (8, 192, 256, 3) and fps == pytest.approx(8)
    # The result beside the input enlarged by bicubic, in the synced player with zoom.
    meta = json.loads(Path(final["result"]).with_suffix(".json").read_text())
    bicubic = Path(final["result"]).with_name(meta["files"]["bicubic"])
    assert read_video(bicubic)[0].shape == (8, 192, 256, 3)
    board = final["board"]
    assert board.count("<video") == 2 and board.index(bicubic.name) < board.index(Path(final["result"]).name + '"')
    assert "cmp-zoom" in board and "cmp-frame" in board and "Enlarged 4x by bicubic" in board
    assert "64x48 -&gt; 256x192" in board
    # History lists the result (not its bicubic sidecar nor its thumbnail) and deletes them together.
    hist = History(tmp_path / "out")
    (entry,) = hist.entries()
    assert entry.task == "upscale" and entry.prompt == "upscale 4x: small.mp4" and entry.fps == 8
    assert entry.settings_text() == "seed 5 · 3 steps · 4x · 64x48 -> 256x192 · from small.mp4"
    assert hist.delete(entry.id) and not bicubic.exists() and hist.entries() == []
    assert not any(f.suffix in (".mp4", ".png", ".json") for f in (tmp_path / "out").glob("*"))


def test_upscale_an_image_gives_a_png_beside_its_bicubic(engine, tmp_path):
    img = write_png(tmp_path / "still.png", render(Scene("white", (ShapeObject("green", "star", "still"),)), 40, 1)[0])
    h = upscale_handlers(engine, tmp_path)
    final = list(upscale(h, str(img), 2, 1, 0))[-1]
    assert final["result"].endswith(".png") and final["board"].count("<img") == 2
    assert "40x40 -> 80x80 (2x)" in final["status"]


def test_upscale_errors_then_the_next_job_works(engine, small_clip, tmp_path):
    h = upscale_handlers(engine, tmp_path)
    assert list(upscale(h, "", 4, 3, 0))[-1]["error"].startswith("No input")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    evs = list(upscale(h, str(bad), 4, 3, 0))
    assert len(evs) == 1 and "broken.mp4" in evs[0]["error"] and not evs[0]["cancelled"]
    assert "steps must be between" in list(upscale(h, small_clip, 4, 0, 0))[-1]["error"]
    assert "result" in list(upscale(h, small_clip, 2, 1, 0))[-1]


def test_upscale_stop_then_the_next_job_works(engine, small_clip, tmp_path):
    tokens = {}
    h = upscale_handlers(engine, tmp_path, tokens)
    gen = upscale(h, small_clip, 4, 30, 0, session="alice")
    next(gen)
    h.stop("bob")
    assert not tokens["alice"].cancelled
    h.stop("alice")
    rest = list(gen)
    assert rest[-1].get("cancelled") and "Cancelled" in rest[-1]["status"]
    assert all(e["progress"][0] <= 2 for e in rest if "progress" in e)
    assert History(tmp_path / "out").entries() == []  # nothing saved
    assert "result" in list(upscale(h, small_clip, 4, 1, 0, session="alice"))[-1]


def test_then_upscale_in_t2v_is_one_job_and_history_lists_both(engine, tmp_path):
    h = T2VHandlers(engine, {})
    evs = run(h, steps=2, upscale=4)
    up_steps = UpscaleRequest(video="").steps
    assert [e["progress"] for e in evs if "progress" in e] == [(k, 2 + up_steps) for k in range(1, 3 + up_steps)]
    previews = [e["preview"] for e in evs if "preview" in e]
    assert previews[0].shape[0] == 128 and previews[-1].shape[0] == 256  # 64 px at 2x, then 256 px at 1x
    final = evs[-1]
    assert "upscaled 4x, 64x64 -> 256x256" in final["status"] and "seed 3" in final["status"]
    assert read_video(final["result"])[0].shape == (8, 256, 256, 3)
    assert final["board"].count("<video") == 2 and "Enlarged 4x by bicubic" in final["board"]
    assert read_video(final["base"])[0].shape == (8, 64, 64, 3)
    entries = History(tmp_path / "out").entries()
    assert sorted(e.task for e in entries) == ["t2v", "upscale"] and len(entries) == 2
    up = next(e for e in entries if e.task == "upscale")
    assert (
        up.prompt == f"upscale 4x: {SETTINGS['prompt']}"
        and up.meta["upscaled_from"]["name"] == Path(final["base"]).name
    )
    base = next(e for e in entries if e.task == "t2v")
    assert settings_values(base.request)["upscale"] == 4  # reopening the clip sets "Then upscale" again
    # Off: an ordinary result, no board.
    assert "board" not in run(h, steps=1)[-1]


def test_then_upscale_in_edit_adds_the_upscaled_clip_to_the_board(engine, source_clip, tmp_path):
    h = EditHandlers(engine, {}, tmp_path / "work")
    h.load(source_clip)
    final = edit(h, source_clip, steps=2, upscale=2)[-1]
    assert "recolor" in final["status"] and "upscaled 2x, 64x64 -> 128x128" in final["status"]
    assert read_video(final["result"])[0].shape == (8, 128, 128, 3)
    board = final["board"]
    assert board.count("<video") == 4 and "Upscaled 2x" in board and "cmp-zoom" in board
    assert read_video(final["diff"])[0].shape == (8, 64, 64, 3)  # what the edit changed, at its own size
    assert sorted(e.task for e in History(tmp_path / "out").entries()) == ["edit", "upscale"]


def test_reopen_an_upscale_and_upscale_4x_from_a_result(engine, small_clip, tmp_path):
    demo = build_ui(engine, tmp_path / "out")
    (reopen,) = fn_named(demo, "reopen")
    h = upscale_handlers(engine, tmp_path)
    h.load(small_clip)
    list(upscale(h, small_clip, 2, 2, 9))
    entry = History(tmp_path / "out").entries()[0]
    out = reopen.fn(entry.id)
    assert out[0].selected == "upscale"
    t2v_n, edit_n = T2V_N, len(EDIT) + 3
    assert out[1 : 1 + t2v_n + edit_n] == [gr.skip()] * (t2v_n + edit_n)
    assert out[1 + t2v_n + edit_n :][:5] == [small_clip, 2, 2, 9, "linear"]
    board = out[1 + t2v_n + edit_n + 5]
    assert board.count("<video") == 2 and entry.id in board
    assert out[1 + t2v_n + edit_n + 6 :] == [gr.skip()] * (PT_N + 1 + AN_N)  # Personalize and Animate left alone
    # The upload gone: the input as the model got it (kept by the tab) stands in for it.
    Path(small_clip).unlink()
    kept = h.source_for(entry.meta, entry.media.parent)
    assert kept and Path(kept).parent == tmp_path / "out" / ".studio" and read_video(kept)[0].shape == (8, 48, 64, 3)
    # An upscale made in the same job as its clip reopens with that clip (in the outputs folder) as input.
    final = run(T2VHandlers(engine, {}), steps=1, upscale=4)[-1]
    up = next(e for e in History(tmp_path / "out").entries() if e.task == "upscale")
    assert up.media == Path(final["result"]) and h.source_for(up.meta, up.media.parent) == final["base"]
    # "Upscale 4x" after a result: to the Upscale tab at 4x (the upscale then runs there).
    to_upscale = fn_named(demo, "to_upscale")[0]  # T2V's and Edit's "Upscale 4x" share it
    tab, path, scale = to_upscale.fn(final["base"])
    assert tab.selected == "upscale" and path == final["base"] and scale == 4
    with pytest.raises(gr.Error):
        to_upscale.fn(None)
    runs = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "run" and len(f.inputs) == 5]
    # Its own button, and "Upscale 4x" in Text to video, Edit and Personalize.
    assert len(runs) == 4 and all(f.concurrency_id == "engine" for f in runs)
    # Results of upscales can be compared (with zoom) and sent on.
    assert "cmp-zoom" in compare_html(History(tmp_path / "out").entries()[:2])
    send = fn_named(demo, "send")[0]
    # Edit, Personalize, Animate's three parts, Upscale, Compare (then the Animate tab's part)
    out = send.fn("Upscale", final["result"], *[None] * (len(send.inputs) - 2))
    assert out[0].selected == "upscale" and out[6] == final["result"] and out[1:6] == [gr.skip()] * 5
    out = send.fn("Edit", final["result"], *[None] * (len(send.inputs) - 2))
    assert out[0].selected == "edit" and out[1] == final["result"]


def test_without_an_upsampler_the_tab_and_the_cascade_say_so(tiny_model_dir, small_clip, tmp_path):
    bare = tmp_path / "no-upsampler"
    shutil.copytree(tiny_model_dir, bare, ignore=shutil.ignore_patterns("upscale", "upscale-decoder"))
    engine = Engine(bare, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out")
    assert engine.models.upsampler is None
    h = upscale_handlers(engine, tmp_path)
    assert "no upsampler" in h.input_line(None) and "no upsampler" in h.input_line(h.load(small_clip))
    assert "no upsampler" in list(upscale(h, small_clip, 4, 2, 0))[-1]["error"]
    assert "no upsampler" in run(T2VHandlers(engine, {}), steps=1, upscale=4)[-1]["error"]
    demo = build_ui(engine, tmp_path / "out")
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    names = (
        "upscale-generate",
        "t2v-upscale4",
        "edit-upscale4",
        "pt-upscale4",
        "t2v-then-upscale",
        "edit-then-upscale",
    )
    for name in names:
        assert blocks[name].interactive is False, name


# -- the Personalize tab -------------------------------------------------------------------------
PT = dict(
    reference_name="",
    prompt="the character moving right on a green background",
    seed=4,
    steps=2,
    guidance=5.0,
    reference_guidance=2.0,
    frames=8,
    schedule="linear-quadratic",
)
STAR = Character("star", "red", "cyan", "hstripes")  # a held-out character


@pytest.fixture()
def star_png(tmp_path):
    """The star's reference as a user might upload it: 256x256 PNG on white."""
    return str(write_png(tmp_path / "upload" / "star.png", STAR.reference("white", 256)))


def pt_handlers(engine, tmp_path, tokens=None):
    out = tmp_path / "out"
    return PersonalizeHandlers(
        engine, {} if tokens is None else tokens, out / ".studio", CharacterStore(out / "characters")
    )


def personalize(h, reference, session="a", **kw):
    return list(h.run(reference=reference, **(PT | kw), session=session))


def test_personalize_shows_the_reference_as_the_model_sees_it(engine, star_png, tmp_path):
    h = pt_handlers(engine, tmp_path)
    ref = h.load(star_png)
    assert ref["summary"].startswith("256x256 PNG: character ") and ref["summary"].endswith("r = 0.3, 64x64")
    view = read_image(ref["view"])
    assert view.shape == (64, 64, 3) and np.array_equal(view, engine.inspect("personalize", star_png).frames[0])
    assert Path(ref["view"]).parent == tmp_path / "out" / ".studio"
    assert h.reference_line(ref).startswith("As the model sees it: 256x256 PNG")
    # What it cannot read is said there, and again when generating; then the next job works.
    noise = write_png(tmp_path / "photo.png", np.random.default_rng(0).integers(0, 256, (80, 120, 3), np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    for bad, words in ((noise, "no plain background"), (broken, "broken.jpg")):
        got = h.load(str(bad))
        assert list(got) == ["error"] and words in got["error"], got
        assert h.reference_line(got) == f"**{got['error']}**"
        evs = personalize(h, str(bad))
        assert evs[-1]["error"] == got["error"] and not evs[-1]["cancelled"]
    assert h.load(None) == {} and "Upload a picture" in h.reference_line({})
    assert personalize(h, "")[-1]["error"].startswith("No reference image")
    assert personalize(h, star_png, prompt=" ")[-1]["error"].startswith("The prompt is empty")
    assert "result" in personalize(h, star_png)[-1]


def test_personalize_goes_to_history_with_its_reference_and_reopens(engine, star_png, tmp_path):
    h = pt_handlers(engine, tmp_path)
    evs = personalize(h, star_png)
    assert [e["progress"] for e in evs if "progress" in e] == [(1, 2), (2, 2)] and "ETA" in evs[0]["status"]
    previews = [e["preview"] for e in evs if "preview" in e]
    assert len(previews) == 2 and previews[0].dtype == np.uint8 and previews[0].shape[0] == 128
    final = evs[-1]
    assert final["status"].startswith("done in") and "star.png: “the character moving right" in final["status"]
    result, _ = read_video(final["result"])
    assert result.shape == (8, 64, 64, 3)
    # The reference (the result's own copy) beside the result, under one play bar.
    media = Path(final["result"])
    side = media.with_name(media.stem + ".reference.png")
    assert np.array_equal(read_image(side), engine.inspect("personalize", star_png).frames[0])
    board = final["board"]
    assert board.count("<img") == 1 and board.count("<video") == 1 and "cmp-play" in board
    assert board.index(side.name) < board.index(media.name + '"') and "look like 2.0" in board
    # History lists it (not its reference, not its thumbnail), as the character doing what was asked.
    hist = History(tmp_path / "out")
    (entry,) = hist.entries()
    assert entry.task == "personalize" and entry.media == media
    assert entry.prompt == "star.png: the character moving right on a green background"
    assert (
        entry.settings_text() == "seed 4 · 2 steps · follow 5.0 · look like 2.0 · 8 frames · 64 px · reference star.png"
    )
    assert entry.meta["reference"]["summary"] == engine.inspect("personalize", star_png).summary
    # Reopen: the Personalize tab gets the settings and the result's own reference, even with the
    # upload gone, and shows the result beside it again.
    Path(star_png).unlink()
    demo = build_ui(engine, tmp_path / "out")
    (reopen,) = fn_named(demo, "reopen")
    out = reopen.fn(entry.id)
    assert out[0].selected == "personalize"
    t2v_n, edit_n = T2V_N, len(EDIT) + 3
    assert out[1 : 1 + t2v_n + edit_n + 6] == [gr.skip()] * (t2v_n + edit_n + 6)  # the other tabs left alone
    pt_at = 1 + t2v_n + edit_n + 6
    values, board = out[pt_at : pt_at + PT_N], out[pt_at + PT_N]
    assert out[pt_at + PT_N + 1 :] == [gr.skip()] * AN_N  # Animate left alone
    settings = [PT[k] for k in ("prompt", "seed", "steps", "guidance", "reference_guidance", "frames", "schedule")]
    assert values == [str(side), None, *settings, 0]  # no saved character: no name
    assert board.count("<img") == 1 and entry.id in board
    # The reopened reference is read as the model read the upload (within a level or two).
    again = h.load(values[0])
    assert np.abs(read_image(again["view"]).astype(int) - read_image(side).astype(int)).mean() < 1
    # Delete removes the reference with the result.
    assert hist.delete(entry.id) and not side.exists() and hist.entries() == []
    assert not any(f.suffix in (".mp4", ".png", ".json") for f in (tmp_path / "out").glob("*"))


def test_a_saved_character_names_its_results_and_deleting_it_keeps_them(engine, star_png, tmp_path):
    h = pt_handlers(engine, tmp_path)
    ref = h.load(star_png)
    message, named = h.save_character("  Stripey ", ref, star_png)
    assert "Saved **Stripey**" in message and named["name"] == "Stripey"
    assert h.reference_line(ref, named).startswith("**Stripey** (saved character) · As the model sees it")
    with pytest.raises(CharacterNameError, match="already saved"):
        h.save_character("stripey", ref, star_png)
    with pytest.raises(CharacterNameError, match="name first"):
        h.save_character("", ref, star_png)
    with pytest.raises(CharacterNameError, match="reference the model can read"):
        h.save_character("Other", {"error": "no"}, star_png)
    # The page keeps the loaded reference without its pixels: saving reads it again, the same.
    page_loaded = {k: v for k, v in ref.items() if k != "image"}
    assert "Saved **Stripey**" in h.save_character("Stripey", page_loaded, star_png, replace=True)[0]
    # After a restart: listed, and picking it gives the same reference (the same content).
    saved = CharacterStore(tmp_path / "out" / "characters").get("Stripey")
    assert saved is not None and h.load(str(saved.image))["digest"] == ref["digest"]
    assert np.array_equal(read_image(saved.reference), read_image(ref["view"]))
    assert h.reference_name(str(saved.image), named) == "Stripey" and h.reference_name(star_png, None) == ""
    final = personalize(h, str(saved.image), reference_name="Stripey")[-1]
    entry = History(tmp_path / "out").entries()[0]
    assert entry.prompt.startswith("Stripey: ") and "Stripey: “the character" in final["status"]
    assert entry.meta["reference"]["name"] == "Stripey" and entry.request["reference_name"] == "Stripey"
    # Deleting the character leaves the result, its reference and its name alone; reopening keeps the name.
    assert h.characters.delete("Stripey") and h.characters.names() == []
    side = Path(final["result"]).with_name(Path(final["result"]).stem + ".reference.png")
    assert side.is_file() and History(tmp_path / "out").entries()[0].id == entry.id
    values = pt_settings_values(entry.request, h.reference_for(entry.media, entry.meta))
    assert values["reference"] == str(side) and values["named"]["name"] == "Stripey"
    assert h.reference_name(values["reference"], values["named"]) == "Stripey"


def test_take_a_frame_from_a_result_sent_to_personalize(engine, tmp_path):
    # A world clip of the character moving right stands in for a result sent here.
    clip = write_video(tmp_path / "out" / "20260101-000000-t2v-0.mp4", render(STAR.scene("right", "green"), 64, 8), 8)
    demo = build_ui(engine, tmp_path / "out")
    send = fn_named(demo, "send")[0]
    out = send.fn("Personalize", str(clip), *[None] * (len(send.inputs) - 2))  # Edit, Personalize, ...
    assert out[0].selected == "personalize" and out[2] == str(clip) and out[1] == gr.skip()
    h = pt_handlers(engine, tmp_path)
    taken = h.take_from(str(clip))
    assert taken["count"] == 8 and "8 frames" in taken["summary"]
    frames = read_video(clip)[0]
    assert np.abs(h.frame(taken, 3).astype(int) - frames[3]).max() == 0
    assert np.array_equal(h.frame(taken, 99), h.frame(taken, 7))  # clamped
    path = h.use_frame(taken, 3)
    assert Path(path).parent.parent == tmp_path / "out" / ".studio" and path.endswith("-frame-3.png")
    assert np.array_equal(read_image(path), frames[3])
    ref = h.load(path)
    assert "view" in ref and ref["summary"].startswith("64x64 PNG: character "), ref
    # A PNG result is one frame; what is not a clip says so; nothing sent, nothing to use.
    still = write_png(tmp_path / "still.png", frames[0])
    assert h.take_from(str(still))["count"] == 1
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    assert "notes.mp4" in h.take_from(str(bad))["error"] and h.take_from(None) == {}
    with pytest.raises(ValueError, match="Send a result here"):
        h.use_frame(None, 0)


def test_personalize_stop_and_then_upscale(engine, star_png, tmp_path):
    tokens = {}
    h = pt_handlers(engine, tmp_path, tokens)
    gen = h.run(reference=star_png, **(PT | {"steps": 30}), session="alice")
    next(gen)
    h.stop("bob")
    assert not tokens["alice"].cancelled
    h.stop("alice")
    rest = list(gen)
    assert rest[-1].get("cancelled") and all(e["progress"][0] <= 2 for e in rest if "progress" in e)
    assert History(tmp_path / "out").entries() == []
    # "Then upscale": one job; the board adds the upscaled clip (with zoom); both in History.
    final = personalize(h, star_png, steps=1, upscale=2, session="alice")[-1]
    assert "upscaled 2x, 64x64 -> 128x128" in final["status"] and read_video(final["result"])[0].shape[1] == 128
    board = final["board"]
    assert board.count("<img") == 1 and board.count("<video") == 2 and "cmp-zoom" in board
    entries = History(tmp_path / "out").entries()
    assert sorted(e.task for e in entries) == ["personalize", "upscale"]
    up = next(e for e in entries if e.task == "upscale")
    assert up.prompt == f"upscale 2x: star.png: {PT['prompt']}"
    # The upscale's reference is the clip's it was made from.
    base = next(e for e in entries if e.task == "personalize")
    assert h.reference_for(up.media, up.meta) == h.reference_for(base.media, base.meta) is not None


def test_without_a_personalization_model_the_tab_says_so(tiny_model_dir, star_png, tmp_path):
    bare = tmp_path / "no-personalizer"
    shutil.copytree(tiny_model_dir, bare, ignore=shutil.ignore_patterns("personalize"))
    engine = Engine(bare, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out")
    assert engine.models.personalizer is None
    h = pt_handlers(engine, tmp_path)
    assert "view" in h.load(star_png)  # the reference is still shown as it would be seen
    assert "no personalization model" in personalize(h, star_png)[-1]["error"]
    demo = build_ui(engine, tmp_path / "out")
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    assert blocks["pt-generate"].interactive is False
    assert "no personalization model" in blocks["pt-status"].value


def test_t2v_frame_shape_controls_follow_the_model(engine, tmp_path):
    demo = build_ui(engine, tmp_path / "out")
    by_id = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    limits = engine.limits_for("generator")
    width, height = by_id["t2v-width"], by_id["t2v-height"]
    assert (width.minimum, width.maximum, width.step) == (16, limits.max_width, 16)
    assert (height.minimum, height.maximum, height.value) == (16, limits.max_height, 64)
    assert not by_id["t2v-style"].visible  # the tiny model has no style adapters
    # A wide clip, as the tab's controls ask for it; History names its shape; reopened, the same.
    final = run(T2VHandlers(engine, {}), width=96, height=48, frames=1)[-1]
    entry = History(tmp_path / "out").entries()[0]
    assert entry.media == Path(final["result"]) and "96x48 px" in entry.settings_text()
    values = settings_values(entry.request)
    assert (values["width"], values["height"], values["lora"]) == (96, 48, "")
    # A request saved before width and height existed reopens as its square.
    old = {"task": "t2v", "prompt": "a red circle", "size": 128, "frames": 8}
    assert (settings_values(old)["width"], settings_values(old)["height"]) == (128, 128)
    too_wide = run(T2VHandlers(engine, {}), width=1024)[-1]
    assert too_wide["error"].startswith("width must be a multiple of 16 between 16 and 512, got 1024")


def test_compare_with_previous_after_a_reload_takes_the_last_two_from_history(tmp_path, tiny_model_dir):
    """After a reload the page no longer holds its last two results, but History does: "Compare
    with previous" compares those, and says what to do only when there are fewer than two."""
    eng = Engine(tiny_model_dir, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out")
    demo = build_ui(eng)
    (compare_previous,) = fn_named(demo, "compare_previous")
    with pytest.raises(gr.Error, match="Make two results first"):
        compare_previous.fn(None, None)
    first = eng.generate(T2VRequest(prompt="a red circle moving left", frames=1, steps=1, seed=1))
    second = eng.generate(T2VRequest(prompt="a red circle moving left", frames=1, steps=1, seed=2))
    _, ids, board = compare_previous.fn(None, None)  # what a reloaded page sends
    assert ids == [first.path.stem, second.path.stem] and board.count("<img") == 2


def test_a_message_to_the_user_is_one_log_line_not_a_traceback(caplog):
    from studio.events import user_error

    with caplog.at_level("INFO", logger="studio"):
        err = user_error("Make two results first; then they can be compared.")
    assert isinstance(err, gr.Error) and err.print_exception is False  # Gradio prints no traceback
    assert [r.getMessage() for r in caplog.records] == [
        "told the user: Make two results first; then they can be compared."
    ]
