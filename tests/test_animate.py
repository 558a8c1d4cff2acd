"""Animate a picture, continue a clip, fill in frames (docs/conditioning.md, given frames): the
tiny animation model end to end, the given frames' places for each use, window chaining, frame
counts and rates of each command, and a tiny model trained on one clip returning its given frame."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.__main__ import main
from engine.denoise import Prepared, denoise
from engine.engine import Engine
from engine.models.generator import Generator
from engine.requests import Error, Progress, Result
from engine.sampling import interpolate, sample_times, target_velocity
from engine.tasks import TASKS, AnimateRequest, ExtendRequest, InterpolateRequest
from engine.tasks.extend import plan_windows
from engine.tasks.given import pictures, prepare_given
from engine.tasks.interpolate import window_starts
from engine.train.animate_stage import animate_generator_config, grow_for_animation
from engine.train.recipe import PRESETS
from engine.video_io import write_png, write_video
from engine.world.render import render
from engine.world.scene import Scene, ShapeObject

SCENE = Scene("blue", (ShapeObject("red", "square", "right", 0.5, 0.5),))


@pytest.fixture()
def engine(tiny_model_dir, tmp_path):
    return Engine(tiny_model_dir, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "out")


@pytest.fixture()
def clip():
    return render(SCENE, 64, 32)


def _first_prepared(engine, req) -> Prepared:
    return TASKS[req.task].job(engine, req).prepare()


def test_animate_gives_the_pictures_at_their_frames(engine, clip, tmp_path):
    first, last = write_png(tmp_path / "first.png", clip[0]), write_png(tmp_path / "last.png", clip[-1])
    req = AnimateRequest(image=str(first), prompt="a red square moving right on a blue background", steps=2)
    prep = _first_prepared(engine, req)
    assert prep.cond["frame_at"].tolist() == [[0]] and prep.cond["frame_phase"].tolist() == [[0]]
    assert prep.cond["frames_keep"].all() and not prep.uncond["frames_keep"].any()  # v(none) drops them
    both = _first_prepared(engine, dataclasses.replace(req, last=str(last), frames=30))
    assert both.cond["frame_at"].tolist() == [[0, 7]] and both.cond["frame_phase"].tolist() == [[0, 1]]  # frame 29
    events = list(engine.run(dataclasses.replace(req, last=str(last))))
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2]
    res = events[-1]
    assert isinstance(res, Result), res
    assert res.frames.shape == (32, 64, 64, 3) and res.metadata["image"]["name"] == "first.png"
    assert len(res.metadata["last"]["sha256"]) == 16
    # Another picture, another clip; the same again comes from the cache.
    other = write_png(tmp_path / "other.png", render(Scene("white", (ShapeObject("green", "star", "up"),)), 64, 1)[0])
    assert not np.array_equal(engine.generate(dataclasses.replace(req, image=str(other))).frames, res.frames)
    assert engine.generate(dataclasses.replace(req, last=str(last))).cached


def test_animate_refusals(engine, tmp_path):
    def error(**kw):
        events = list(engine.run(AnimateRequest(**({"prompt": "a red circle", "steps": 1} | kw))))
        assert len(events) == 1 and isinstance(events[0], Error)
        return events[0].message

    assert "No picture" in error(image=" ")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    assert "PNG" in error(image=str(junk))
    pic = write_png(tmp_path / "p.png", np.zeros((64, 64, 3), np.uint8))
    assert "frames must be between 2 and 32" in error(image=str(pic), frames=40)
    assert "prompt is empty" in error(image=str(pic), prompt="")


def test_extend_keeps_the_source_and_chains_windows_on_what_was_made(engine, clip, tmp_path):
    src = write_video(tmp_path / "src.mp4", clip[:12], 8.0, {})
    req = ExtendRequest(video=str(src), prompt="a red square moving left on a blue background", frames=40, steps=2)
    assert plan_windows(8, 40) == 2 and plan_windows(8, 24) == 1 and plan_windows(8, 480) == 20
    prep = _first_prepared(engine, req)
    assert prep.cond["frame_at"].tolist() == [[0, 1]] and prep.cond["frame_phase"].tolist() == [[4, 4]]  # whole
    made = torch.randn(prep.shape)
    second = prep.then([made])
    assert torch.equal(second.cond["frames"], made[:, :, -2:])  # the clip so far, exactly as it was made
    assert second.then([made, torch.randn(prep.shape)]) is None  # 24 + 24 >= 40 new frames
    assert prep.join([made, made + 1]).shape[2] == 8 + 6
    events = list(engine.run(req))
    steps = [e for e in events if isinstance(e, Progress)]
    assert [e.step for e in steps] == [1, 2, 3, 4] and steps[-1].total == 4  # one bar over both windows
    res = events[-1]
    assert isinstance(res, Result) and res.frames.shape == (52, 64, 64, 3) and res.metadata["windows"] == 2
    source = engine.load_source(str(src), 64, 8.0).frames
    assert np.array_equal(res.frames[:12], source)  # the source as it was, then the new frames
    assert TASKS["extend"].job(engine, dataclasses.replace(req, seconds=6.0)).frames == 12 + 48


def test_extend_of_a_picture_and_refusals(engine, clip, tmp_path):
    pic = write_png(tmp_path / "p.png", clip[0])
    prep = _first_prepared(engine, ExtendRequest(video=str(pic), prompt="a red square", frames=8, steps=1))
    assert prep.cond["frame_at"].tolist() == [[0]] and prep.cond["frame_phase"].tolist() == [[0]]  # a picture
    events = list(engine.run(ExtendRequest(video=str(pic), prompt="a red square", seconds=61.0)))
    assert isinstance(events[0], Error) and "seconds must be between 0 and 60" in events[0].message


def test_interpolate_places_the_source_frames_and_keeps_them(engine, clip, tmp_path):
    src = write_video(tmp_path / "src.mp4", render(SCENE, 64, 33)[::4], 8.0, {})  # 9 frames
    assert window_starts(33) == [0, 28] and window_starts(32) == [0] and window_starts(125) == [0, 28, 56, 84, 112]
    req = InterpolateRequest(video=str(src), factor=4, steps=2)
    prep = _first_prepared(engine, req)
    assert prep.cond["frame_at"].tolist() == [list(range(8))] and prep.cond["frame_phase"].tolist() == [[0] * 8]
    assert prep.uncond is None  # no guidance by default: one term a step
    second = prep.then([torch.zeros(prep.shape)])
    assert second.cond["frame_at"].tolist() == [[0, 1]]  # source frames 7 and 8 (output 28, 32) in window 2
    two = _first_prepared(engine, dataclasses.replace(req, factor=2))
    assert two.cond["frame_at"].tolist() == [[0, 0, 1, 1, 2, 2, 3, 3, 4]]
    assert two.cond["frame_phase"].tolist() == [[0, 2, 0, 2, 0, 2, 0, 2, 0]]
    res = engine.generate(req)
    assert res.frames.shape == (33, 64, 64, 3) and res.metadata["windows"] == 2
    source = engine.load_source(str(src), 64, 8.0).frames
    assert np.array_equal(res.frames[::4], source)  # the source's own frames, kept


def test_commands_frame_counts_and_rates(tiny_model_dir, clip, tmp_path):
    from engine.video_io import probe

    pic = write_png(tmp_path / "p.png", clip[0])
    src = write_video(tmp_path / "src.mp4", clip[:16], 8.0, {})
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "--cache-dir", "", "--steps", "1", "--quiet"]
    prompt = ["--prompt", "a red square moving right on a blue background"]
    runs = {
        "a.mp4": ["animate", "--image", str(pic), *prompt, "--frames", "16"],
        "e.mp4": ["extend", "--video", str(src), *prompt, "--frames", "8"],
        "i.mp4": ["interpolate", "--video", str(src), "--factor", "2"],
    }
    for name, argv in runs.items():
        assert main([*argv, *common, "--out", str(tmp_path / name)]) == 0
    got = {n: probe(tmp_path / n) for n in runs}
    assert got["a.mp4"]["frames"] == 16 and got["a.mp4"]["fps"] == 8
    assert got["e.mp4"]["frames"] == 24 and got["e.mp4"]["fps"] == 8
    assert got["i.mp4"]["frames"] == 31 and got["i.mp4"]["fps"] == 16


def test_a_tiny_model_trained_on_one_clip_returns_its_given_frame(tiny_model_dir):
    """Trained a few steps to animate one clip from its first frame, the model given that frame
    makes a clip whose first latent frame is the clip's: closer than before training."""
    from engine.model_set import ModelSet

    models = ModelSet.load(tiny_model_dir, torch.device("cpu"))
    tae = models.tae
    torch.manual_seed(0)
    p = PRESETS["tiny"]
    model = grow_for_animation(Generator(p.generator), animate_generator_config(p.generator, 4)).train()
    frames = render(SCENE, 64, 32)
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    z = tae.encode(x)  # (1, Cz, 8, h, w)
    given = pictures(tae, frames[:1], [0], torch.device("cpu"))
    with torch.no_grad():
        text = model.encode_prompts(["a red square moving right on a blue background"])

    def first_frame_error() -> float:
        settings = AnimateRequest(image="x", prompt="x", guidance=1.0, frames_guidance=1.0, steps=8, schedule="linear")
        prep = prepare_given(given, (dict(text), dict(text)), tuple(z.shape), settings, seed=1, frames=32)
        with torch.no_grad():
            out = denoise(model.eval(), prep, torch.device("cpu"), autocast=False)
        model.train()
        return F.mse_loss(out[:, :, 0], z[:, :, 0]).item()

    before = first_frame_error()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    kw = given.kwargs(True)
    for _ in range(60):
        x0 = torch.randn(z.expand(4, -1, -1, -1, -1).shape, generator=g)
        t = sample_times(4, g)
        x1 = z.expand(4, -1, -1, -1, -1)
        batch = {k: v.expand(4, *v.shape[1:]) for k, v in kw.items()} | {
            k: v.expand(4, *v.shape[1:]) for k, v in text.items()
        }
        loss = F.mse_loss(model(interpolate(x0, x1, t), t, **batch), target_velocity(x0, x1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = first_frame_error()
    assert after < 0.5 * before, (before, after)


def test_blend_baseline_and_evals_measure(engine):
    from engine.eval.animate import _blend, evaluate_animate, evaluate_extend, evaluate_interpolate

    a, b = np.zeros((1, 2, 2, 3), np.uint8), np.full((1, 2, 2, 3), 200, np.uint8)
    mid = _blend(np.concatenate([a, b]), 4)
    assert mid.shape[0] == 5 and mid[2].max() == 100 and mid[1].max() == 50 and np.array_equal(mid[4], b[0])
    got = evaluate_animate(engine, 2, AnimateRequest(image="", prompt="x", steps=1))["animate"]
    assert got["first"]["n"] == 1 and got["first_last"]["n"] == 1 and 0 < got["first_last"]["psnr_last"] < 99
    got = evaluate_extend(engine, 1, ExtendRequest(video="", prompt="x", steps=1))["extend"]
    assert got["extend"]["n"] == got["t2v"]["n"] == 1 and got["extend"]["followed"] in (0.0, 1.0)
    got = evaluate_interpolate(engine, 1, InterpolateRequest(video="", steps=1), factors=(2,))["interpolate"]["x2"]
    assert got["model"]["n"] == 1 and got["blend"]["psnr"] > got["repeat"]["psnr"]  # moving objects: blending wins


def test_factorised_t2v_makes_an_image_then_animates_it(engine):
    from engine.tasks import T2VRequest

    req = T2VRequest(prompt="a red square moving right on a blue background", steps=2, factorised=True)
    prep = _first_prepared(engine, req)
    assert prep.shape[2] == 1 and prep.model == "generator"  # the image first, by the T2V generator
    image = torch.randn(prep.shape)
    clip = prep.then([image])
    assert clip.shape[2] == 8 and clip.model is None  # then the clip, by the job's model: the animator
    assert torch.equal(clip.cond["frames"], image) and clip.cond["frame_at"].tolist() == [[0]]
    assert clip.then is None or clip.then([image, torch.randn(clip.shape)]) is None
    events = list(engine.run(req))
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2, 3, 4]
    res = events[-1]
    assert isinstance(res, Result) and res.frames.shape == (32, 64, 64, 3)
    direct = engine.generate(dataclasses.replace(req, factorised=False))
    assert not np.array_equal(direct.frames, res.frames)


def test_an_attention_trained_animator_stores_only_what_trained(tmp_path):
    from safetensors.torch import load_file

    from engine.checkpoint import load_weights, save_component
    from engine.train.animate_stage import animate_frozen, attention_trains

    p = PRESETS["tiny"]
    torch.manual_seed(0)
    t2v = Generator(p.generator)
    cfg = animate_generator_config(p.generator, 4)
    animator = grow_for_animation(t2v, cfg)
    with torch.no_grad():  # what training would change: self-attention and the new parts
        for name, w in animator.named_parameters():
            if attention_trains(name):
                w.add_(0.1)
    frozen = animate_frozen(cfg)
    names = [n for n, _ in animator.named_parameters()]
    assert all(n.startswith(frozen) != attention_trains(n) for n in names)  # the prefixes cover exactly the frozen
    assert any(".attn." in n and attention_trains(n) for n in names) and not attention_trains(
        "text.encoders.0.blocks.0.attn.q.weight"
    )
    save_component(tmp_path / "t2v", "generator", p.generator, t2v)
    save_component(tmp_path / "animate", "generator", cfg, animator, shared=dict.fromkeys(frozen, "t2v"))
    stored = load_file(str(tmp_path / "animate" / "model.safetensors"))
    assert stored and all(attention_trains(k) for k in stored)
    back = load_weights(tmp_path / "animate", Generator(cfg))
    assert all(
        torch.equal(a, b) for a, b in zip(back.state_dict().values(), animator.state_dict().values(), strict=True)
    )
