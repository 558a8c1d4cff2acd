"""Instruction editing: edit pairs, the edit model's growth from T2V, guidance terms, windows,
and the engine path end to end on the tiny model."""

import dataclasses

import av
import numpy as np
import pytest
import torch
from test_video_io_stream import encode

from engine.engine import Engine
from engine.models.generator import Generator
from engine.requests import Error, Preview, Progress, Result
from engine.sampling import sdedit_times, two_scale_velocity, windowed
from engine.tasks import EditRequest, SDEditRequest
from engine.tasks.edit import TASK_STRENGTH
from engine.train.edit_stage import grow_for_editing
from engine.train.recipe import PRESETS, edit_generator_config
from engine.video_io import read_metadata, write_video
from engine.world.edits import EDIT_TASKS, TASKS, apply_edit, free_instruction, sample_pair
from engine.world.render import render, shape_mask
from engine.world.scene import Scene, ShapeObject, scene_is_held_out


def _object_pixels(scene: Scene, k: int, size: int, frames: int) -> np.ndarray:
    """(T, H, W) True where object k could cover a pixel (its mask, grown by one pixel)."""
    from engine.world.render import clip_times

    ys, xs = (np.mgrid[0:size, 0:size] + 0.5) / size
    out = []
    for s in clip_times(frames):
        obj = scene.objects[k]
        (cx,), (cy,) = obj.centre(np.array([s]))
        m = shape_mask(obj.shape, xs, ys, cx, cy, float(obj.size(np.array([s]))[0]) + 1.5 / size)
        out.append(m)
    return np.stack(out)


@pytest.mark.parametrize("task", EDIT_TASKS)
def test_edit_pairs_change_only_what_the_instruction_names(task):
    rng = np.random.default_rng(EDIT_TASKS.index(task))
    for _ in range(5):
        pair = sample_pair(rng, task=task)
        assert not scene_is_held_out(pair.source) and not scene_is_held_out(pair.target)
        src, tgt = render(pair.source, 32, 6), render(pair.target, 32, 6)
        changed = np.any(src != tgt, -1)  # (T, H, W)
        assert changed.any(), f"{pair.instruction!r} changed nothing"
        e = pair.edit
        if task == "background":
            for k in range(len(pair.source.objects)):  # the objects' insides are untouched
                inside = _object_pixels(pair.source, k, 32, 6)
                core = inside.copy()
                for d, ax in ((3, 1), (-3, 1), (3, 2), (-3, 2)):  # 3 px in from every edge
                    core &= np.roll(inside, d, ax)
                assert not (changed & core).any()
            continue
        allowed = np.zeros_like(changed)
        if task == "add":
            allowed |= _object_pixels(pair.target, len(pair.target.objects) - 1, 32, 6)
        else:
            allowed |= _object_pixels(pair.source, e.target, 32, 6)
            if task != "remove":
                allowed |= _object_pixels(pair.target, e.target, 32, 6)
        assert not (changed & ~allowed).any(), f"{pair.instruction!r} changed pixels it does not name"


def test_edit_targets_and_instructions():
    s = Scene("blue", (ShapeObject("red", "circle", "left", 0.3, 0.4), ShapeObject("green", "star", "still", 0.6, 0.6)))
    from engine.world.edits import Edit, canonical_instruction

    moved = apply_edit(s, Edit("motion", 0, "still"))
    assert moved.objects[0].motion == "still" and (moved.objects[0].x, moved.objects[0].y) == (0.5, 0.4)
    assert moved.objects[1] == s.objects[1]
    assert canonical_instruction(s, Edit("recolor", 1, "yellow")) == "make the green star yellow"
    assert canonical_instruction(s, Edit("reshape", 0, "square")) == "turn the red circle into a square"
    assert canonical_instruction(s, Edit("remove", 1)) == "remove the green star"
    assert canonical_instruction(s, Edit("motion", 1, "up")) == "make the green star move up"
    assert apply_edit(s, Edit("remove", 0)).objects == (s.objects[1],)
    rng = np.random.default_rng(0)
    texts = {free_instruction(rng, sample_pair(rng, task="recolor")) for _ in range(30)}
    assert len(texts) == 30  # phrasings vary


def test_grown_edit_model_starts_as_the_t2v_model():
    torch.manual_seed(0)
    gcfg = PRESETS["tiny"].generator
    t2v = Generator(gcfg).eval()
    with torch.no_grad():
        t2v.dit.out.weight.normal_(std=0.1)
        for block in t2v.dit.blocks:  # open the blocks (their gates start at zero)
            block.mod_table.normal_(std=0.1)
    ed = grow_for_editing(t2v, edit_generator_config(gcfg)).eval()
    x, t = torch.randn(2, 4, 2, 8, 8), torch.tensor([0.3, 0.7])
    ctx = t2v.encode_prompts(["a red circle", ""])
    src = torch.randn(2, 4, 2, 8, 8)
    task = torch.tensor([TASKS.index("recolor"), 0])
    drop = torch.zeros(2, dtype=torch.bool)
    with torch.no_grad():
        plain = t2v(x, t, **ctx)
        masked = ed(x, t, source=src, source_keep=drop, **ctx)  # the source masked out, no task
        absent = ed(x, t, **ctx)
        c = ed(x, t, source=src, task=task, **ctx)
        d = ed(x, t, source=torch.randn_like(src), task=task, **ctx)
        e = ed(x, t, source=src, **ctx)  # no task given: "generate"
        f = ed(x, t, source=src, task=torch.zeros(2, dtype=torch.long), **ctx)
    # Without its source it is the grown model given nothing (the T2V model but for the task's
    # context tokens); with one, the source acts from the start: nothing has to grow from zero.
    assert torch.allclose(masked, absent, atol=1e-6)
    assert (plain - absent).abs().max() > 0  # the task tokens (their projection has a bias)
    assert (c - d).abs().mean() > 1e-4 and torch.allclose(e, f)
    # Every T2V weight is carried over; the task embedding starts at zero.
    own = ed.state_dict()
    for k, v in t2v.state_dict().items():
        assert torch.equal(own[k], v), k
    assert not ed.dit.task_embed.weight.any() and not hasattr(ed.dit, "cond_embed")
    assert ed.dit.markers.shape[0] == 2 and ed.cfg.dit.tasks == len(TASKS)


def test_grown_channel_edit_model_starts_as_the_t2v_model():
    """The design before (Movie Gen Edit's channels, older checkpoints): zero-initialised source
    channels, so the source has no effect until training gives it one."""
    torch.manual_seed(0)
    gcfg = PRESETS["tiny"].generator
    t2v = Generator(gcfg).eval()
    with torch.no_grad():
        t2v.dit.out.weight.normal_(std=0.1)
    ed = grow_for_editing(t2v, edit_generator_config(gcfg, "channels")).eval()
    x, t = torch.randn(2, 4, 2, 8, 8), torch.tensor([0.3, 0.7])
    ctx = t2v.encode_prompts(["a red circle", ""])
    src = torch.randn(2, 4, 2, 8, 8)
    with torch.no_grad():
        c = ed(x, t, cond=src, **ctx)
        d = ed(x, t, cond=torch.randn_like(src), **ctx)
    assert torch.allclose(c, d, atol=1e-6)
    assert not ed.dit.cond_embed.weight.any() and ed.dit.cond_embed.weight.shape[1] == 4


def test_two_scale_guidance_terms():
    # A model whose velocity says which term it was given: cond adds 1, the instruction adds 10.
    def model(x, t, context, cond):
        return x * 0 + cond.mean((1, 2, 3, 4), keepdim=True) + 10 * context.mean((1, 2), keepdim=True)[..., None, None]

    one = lambda v: torch.full((1, 1, 1), float(v))  # noqa: E731
    full = {"context": one(1), "cond": torch.ones(1, 2, 1, 1, 1)}
    source = {"context": one(0), "cond": torch.ones(1, 2, 1, 1, 1)}
    none = {"context": one(0), "cond": torch.zeros(1, 2, 1, 1, 1)}
    v = two_scale_velocity(model, full, source, none, text_guidance=7.5, source_guidance=1.5)(
        torch.zeros(1, 2, 1, 1, 1), torch.zeros(1)
    )
    # v(none) = 0, v(source) = 1, v(full) = 11: 0 + 1.5 * 1 + 7.5 * 10 = 76.5
    assert torch.allclose(v, torch.full_like(v, 76.5))


def test_windowed_model_blends_overlaps_and_cuts_the_source():
    seen = []

    def model(x, t, cond=None):
        seen.append(x.shape[2])
        return x + cond  # pointwise in time: windows must give the same as one pass

    x, cond = torch.randn(1, 2, 14, 2, 2), torch.randn(1, 2, 14, 2, 2)
    out = windowed(model, 8, 2)(x, torch.zeros(1), cond=cond)
    assert seen == [8, 8] and torch.allclose(out, x + cond, atol=1e-6)

    def position(x, t, cond=None):  # each window sees only its own frames: its output is its start
        return torch.full_like(x, float(cond[0, 0, 0, 0, 0]))

    idx = torch.arange(14.0).view(1, 1, 14, 1, 1).expand(1, 2, 14, 2, 2)
    out = windowed(position, 8, 2)(x, torch.zeros(1), cond=idx)[0, 0, :, 0, 0]
    # frames 0-5 from the first window (start 0), 8-13 from the second (start 6), 6-7 blended.
    assert torch.allclose(out[:6], torch.zeros(6)) and torch.allclose(out[8:], torch.full((6,), 6.0))
    assert 0 < out[6] < out[7] < 6


def test_sdedit_times():
    t = sdedit_times(torch.linspace(0, 1, 5), 0.6)
    assert torch.allclose(t, torch.tensor([0.4, 0.55, 0.7, 0.85, 1.0]))


@pytest.fixture()
def engine(tiny_model_dir, tmp_path):
    return Engine(tiny_model_dir, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "out")


@pytest.fixture()
def source(tmp_path):
    # A square: after H.264's chroma subsampling the analyser reads a small red circle as a square.
    scene = Scene("blue", (ShapeObject("red", "square", "left", 0.5, 0.5),))
    return write_video(tmp_path / "source.mp4", render(scene, 64, 32), 8.0, {})


def test_edit_end_to_end_keeps_frames_rate_and_records_the_source(engine, source):
    req = EditRequest(video=str(source), instruction="make the red one yellow", steps=3)
    events = list(engine.run(req))
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2, 3]
    assert any(isinstance(e, Preview) and e.frames.shape[1:] == (64, 64, 3) for e in events)
    res = events[-1]
    assert isinstance(res, Result), res
    assert res.frames.shape == (32, 64, 64, 3) and res.path.suffix == ".mp4"
    meta = read_metadata(res.path)
    assert meta["request"]["instruction"] == "make the red one yellow" and meta["edit_task"] == "recolor"
    assert meta["source"]["name"] == "source.mp4" and len(meta["source"]["sha256"]) == 16
    assert meta["given"] == "make the red square yellow"  # read against what the clip shows
    # Same content under another name: same cache entry (content, not name).
    other = source.with_name("renamed.mp4")
    other.write_bytes(source.read_bytes())
    again = engine.generate(dataclasses.replace(req, video=str(other)))
    assert again.cached and np.array_equal(again.frames, res.frames)


def test_edit_source_changes_the_result_and_sdedit_runs(engine, source, tmp_path):
    a = engine.generate(EditRequest(video=str(source), instruction="make the circle yellow", steps=2))
    scene = Scene("white", (ShapeObject("green", "square", "up", 0.5, 0.5),))
    other = write_video(tmp_path / "other.mp4", render(scene, 64, 32), 8.0, {})
    b = engine.generate(EditRequest(video=str(other), instruction="make the circle yellow", steps=2))
    assert not np.array_equal(a.frames, b.frames)
    sd = engine.generate(SDEditRequest(video=str(source), prompt="a blue star", steps=2, strength=0.3))
    assert sd.frames.shape == (32, 64, 64, 3) and sd.metadata["request"]["task"] == "sdedit"


def test_edit_strength_starts_from_the_source(engine, source):
    """At a small strength the edit starts near the source's latents, so it returns the source's
    reconstruction (what SDEdit returns at that strength) rather than the tiny model's drawing."""
    req = EditRequest(video=str(source), instruction="make the red one yellow", steps=2)
    kept = engine.generate(SDEditRequest(video=str(source), prompt="a red square", steps=2, strength=0.02))
    kept = kept.frames.astype(np.float32)
    near = engine.generate(dataclasses.replace(req, strength=0.02)).frames.astype(np.float32)
    anew = engine.generate(req)
    assert anew.metadata["strength"] == TASK_STRENGTH["recolor"] == 1.0  # the task's own by default
    anew = anew.frames.astype(np.float32)
    assert np.abs(near - kept).mean() < 0.1 * np.abs(anew - kept).mean()
    reshape = engine.generate(dataclasses.replace(req, instruction="turn the square into a star"))
    assert reshape.metadata["edit_task"] == "reshape" and reshape.metadata["strength"] == TASK_STRENGTH["reshape"] < 1
    assert engine.generate(dataclasses.replace(req, strength=0.02)).cached


def test_edit_refusals(engine, source, tmp_path):
    def error(**kw):
        events = list(engine.run(EditRequest(**({"video": str(source), "steps": 2} | kw))))
        assert len(events) == 1 and isinstance(events[0], Error)
        return events[0].message

    assert "instruction is empty" in error(instruction="  ")
    assert "which kind of edit" in error(instruction="do something nice")
    assert "strength must be between 0 (the task's own) and 1" in error(instruction="remove the circle", strength=1.5)
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    assert "MP4" in error(video=str(junk), instruction="make the circle yellow")
    assert "does not exist" in error(video=str(tmp_path / "missing.mp4"), instruction="make the circle yellow")
    assert not list((tmp_path / "out").glob("*.mp4")) if (tmp_path / "out").exists() else True
    # the next job works
    assert (
        engine.generate(EditRequest(video=str(source), instruction="remove the circle", steps=1)).frames.shape[0] == 32
    )


def test_long_source_is_edited_in_windows(engine, tmp_path):
    scene = Scene("blue", (ShapeObject("red", "circle", "left", 0.5, 0.5),))
    long = write_video(tmp_path / "long.mp4", render(scene, 64, 72), 8.0, {})
    res = engine.generate(EditRequest(video=str(long), instruction="make the circle yellow", steps=1))
    assert res.frames.shape == (72, 64, 64, 3)


def test_source_audio_goes_into_the_edit(engine, tmp_path):
    scene = Scene("blue", (ShapeObject("red", "square", "left", 0.5, 0.5),))
    src = encode(tmp_path / "with-audio.mp4", render(scene, 64, 16), rate=8, audio=("aac", 2.0))
    res = engine.generate(EditRequest(video=str(src), instruction="make the square yellow", steps=1))
    with av.open(str(res.path)) as c:
        assert c.streams.video[0].frames == 16 and len(c.streams.audio) == 1
        assert c.streams.audio[0].codec_context.name == "aac"
        assert abs(float(c.streams.audio[0].duration * c.streams.audio[0].time_base) - 2.0) < 0.1


@pytest.mark.slow
def test_edit_eval_measures_the_do_nothing_baseline(engine):
    from engine.eval.edit import evaluate_edit, psnr, untouched

    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255
    assert psnr(a, a) == 99.0 and psnr(a, b) < 30
    keep = untouched(a, b)
    assert not keep[0, 0, 0] and not keep[0, 1, 0] and keep[0, 3, 3] and keep[1].all()
    res = evaluate_edit(engine, n=1, base=EditRequest(video="", steps=1), strengths=(0.5,), t2v_sources=0)
    for task in EDIT_TASKS:
        nothing = res["nothing"][task]
        # The source is not the target (followed 0), and keeps the untouched pixels up to H.264's loss.
        assert nothing["n"] == 1 and nothing["followed"] == 0.0 and nothing["psnr_keep"] > 30
        assert res["edit"][task]["n"] == 1 and res["sdedit"][task]["strength"] == 0.5


def test_shared_weights_are_stored_once_and_loaded_from_the_sibling(tmp_path):
    from safetensors.torch import load_file

    from engine.checkpoint import load_weights, save_component

    torch.manual_seed(0)
    gcfg = PRESETS["tiny"].generator
    t2v = Generator(gcfg)
    save_component(tmp_path / "t2v", "generator", gcfg, t2v)
    ecfg = edit_generator_config(gcfg)
    ed = grow_for_editing(t2v, ecfg)
    save_component(tmp_path / "edit", "generator", ecfg, ed, shared={"text.encoders.0.": "t2v"})
    stored = load_file(str(tmp_path / "edit" / "model.safetensors"))
    assert not any(k.startswith("text.encoders.0.") for k in stored) and "dit.markers" in stored
    back = load_weights(tmp_path / "edit", Generator(ecfg))
    for k, v in ed.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
