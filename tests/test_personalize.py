"""Personalized generation (PT2V) on the tiny model: the reference reaches the cross-attention,
the engine runs it end to end, records the reference, refuses what it cannot read; the training
stage's pairs and the evaluation's measures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.engine import Engine
from engine.models.generator import Generator
from engine.models.tae import TAE
from engine.requests import RequestError
from engine.tasks import PersonalizeRequest
from engine.train.personalize_stage import (
    NEW_PARTS,
    PersonalizeData,
    cross_reference,
    grow_for_personalization,
    make_batch,
    personalize_generator_config,
)
from engine.train.recipe import PRESETS
from engine.world.characters import REFERENCE_R, Character

STAR = Character("star", "red", "cyan", "hstripes")  # a held-out character


@pytest.fixture()
def engine(tiny_model_dir, tmp_path):
    return Engine(tiny_model_dir, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "out")


def _save(img: np.ndarray, path, fmt: str = "PNG"):
    Image.fromarray(img).save(path, fmt)
    return str(path)


def _image(ch: Character) -> torch.Tensor:
    return torch.from_numpy(ch.reference("white", 64)).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_grown_model_holds_the_t2v_weights_and_reads_the_reference():
    """The reference in the sequence (docs/conditioning.md): its TAE latents, a place and a marker
    of their own; dropped, the model is the T2V model exactly."""
    torch.manual_seed(0)
    p = PRESETS["tiny"]
    t2v = Generator(p.generator)
    with torch.no_grad():
        t2v.dit.out.weight.normal_(std=0.02)
        for block in t2v.dit.blocks:  # open the blocks (their gates start at zero)
            block.mod_table.normal_(std=0.1)
    model = grow_for_personalization(t2v, personalize_generator_config(p.generator, p.reference)).eval()
    t2v_sd = t2v.state_dict()
    for k, v in model.state_dict().items():
        assert k.startswith(NEW_PARTS) or torch.equal(v, t2v_sd[k]), k
    assert model.cfg.reference is None and model.cfg.dit.context_kinds == 2
    tae = TAE(p.tae).eval()
    x, t = torch.randn(1, 4, 2, 8, 8), torch.tensor([0.5])
    ctx = model.encode_prompts(["the character moving right on a green background"])
    with torch.no_grad():
        za, zb = (
            tae.encode(_image(STAR)[:, :, None]),
            tae.encode(_image(Character("circle", "blue", "yellow", "dots"))[:, :, None]),
        )
        plain = t2v(x, t, **ctx)
        va, vb = model(x, t, reference=za, **ctx), model(x, t, reference=zb, **ctx)
        dropped = model(x, t, reference=za, reference_keep=torch.tensor([False]), **ctx)
    assert za.shape == (1, 4, 1, 8, 8)
    assert not torch.allclose(va, vb)  # another reference, another output: its tokens are read
    assert torch.allclose(dropped, plain, atol=1e-5)  # a dropped reference is no reference


def test_vision_encoder_model_reads_the_reference():
    """The design before (Movie Gen PT2V, older checkpoints): a vision encoder's tokens join the
    prompt's."""
    torch.manual_seed(0)
    p = PRESETS["tiny"]
    t2v = Generator(p.generator)
    with torch.no_grad():
        t2v.dit.out.weight.normal_(std=0.02)
    model = grow_for_personalization(t2v, personalize_generator_config(p.generator, p.reference, "encoder")).eval()
    x, t = torch.randn(1, 4, 2, 8, 8), torch.tensor([0.5])
    ctx = model.encode_prompts(["the character moving right on a green background"])
    a, b = _image(STAR), _image(Character("circle", "blue", "yellow", "dots"))
    with torch.no_grad():
        plain = model(x, t, **ctx)
        va, vb = model(x, t, **model.with_reference(ctx, a)), model(x, t, **model.with_reference(ctx, b))
        dropped = model(x, t, **model.with_reference(ctx, a, keep=torch.tensor([False])))
    n_ref = model.reference.tokens
    assert model.with_reference(ctx, a)["context"].shape[1] == ctx["context"].shape[1] + n_ref
    assert not torch.allclose(va, vb)
    assert torch.allclose(dropped, plain, atol=1e-5)
    assert model.with_reference(ctx, None) is ctx


def test_engine_personalizes_end_to_end_and_records_the_reference(engine, tmp_path):
    ref = _save(STAR.reference("white", 200), tmp_path / "stripey.png")
    req = PersonalizeRequest(
        reference=ref, prompt="the character moving right on a green background", reference_name="Stripey", steps=2
    )
    res = engine.generate(req, out=tmp_path / "r.mp4")
    assert res.frames.shape == (32, 64, 64, 3)
    meta = json.loads((tmp_path / "r.json").read_text())
    assert meta["reference"]["name"] == "Stripey" and len(meta["reference"]["sha256"]) == 64
    side = tmp_path / meta["files"]["reference"]
    shown = np.asarray(Image.open(side).convert("RGB"))
    assert shown.shape == (64, 64, 3)
    # What the model saw: the character centred at r = 0.3 on its white background.
    ys, xs = np.nonzero(np.abs(shown.astype(int) - 240).sum(-1) > 60)
    assert abs((xs.min() + xs.max() + 1) / 2 - 32) <= 1.5 and abs((ys.min() + ys.max() + 1) / 2 - 32) <= 2
    assert abs(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / 2 - REFERENCE_R * 64) <= 2
    # The same character on another canvas, as a JPEG: the content decides, so another cache key;
    # another reference changes the result.
    other = _save(Character("circle", "blue", "yellow", "dots").reference("black", 90), tmp_path / "o.jpg", "JPEG")
    res2 = engine.generate(PersonalizeRequest(reference=other, prompt=req.prompt, steps=2), out=tmp_path / "r2.mp4")
    assert not np.array_equal(res.frames, res2.frames)
    img = engine.generate(PersonalizeRequest(reference=ref, prompt="it on a blue background", frames=1, steps=2))
    assert img.frames.shape == (1, 64, 64, 3) and img.path.suffix == ".png"


def test_engine_refuses_what_it_cannot_read(engine, tmp_path):
    photo = tmp_path / "photo.jpg"
    from skimage import data

    Image.fromarray(data.astronaut()).save(photo)
    for reference, prompt, words in (
        (str(photo), "the character moving left", "plain background"),
        (str(tmp_path / "missing.png"), "the character moving left", "missing.png"),
        (_save(STAR.reference("white", 64), tmp_path / "ok.png"), "  ", "prompt is empty"),
        ("", "the character moving left", "No reference image"),
    ):
        with pytest.raises(RequestError, match=words):
            engine.generate(PersonalizeRequest(reference=reference, prompt=prompt, steps=1), out=tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()
    res = engine.generate(PersonalizeRequest(reference=str(tmp_path / "ok.png"), prompt="it", steps=1, frames=4))
    assert res.frames.shape[0] == 4  # the next job is fine


def test_training_pairs_never_use_held_out_characters_and_drop_both_conditions():
    from engine.train.common import setup
    from engine.train.personalize_stage import PersonalizeTrainConfig

    tcfg = PersonalizeTrainConfig(videos=6, images=6, frames=4, video_batch=64, image_batch=64, drop_both=0.2)
    data = PersonalizeData(
        chars=[Character("square", "blue", "red", "checker")] * 6,
        scenes=[Character("square", "blue", "red", "checker").scene("left", "white")] * 6,
        latents=torch.zeros(6, 4, 1, 8, 8),
        same=np.zeros((6, 64, 64, 3), np.uint8),
        cross=np.full((6, 64, 64, 3), 255, np.uint8),
    )
    rng = np.random.default_rng(0)
    x1, ref, keep, texts = make_batch(tcfg, data, rng, 64, 0, False, torch.device("cpu"))
    assert x1.shape[0] == ref.shape[0] == 64 and ref.shape[1:] == (3, 64, 64)
    assert (~keep).any() and keep.any() and "" in texts
    assert any("left" in t for t in texts)
    # Early steps take most references from the same clip (zeros), late ones from another (255s).
    late = make_batch(tcfg, data, np.random.default_rng(1), 64, 10_000, False, torch.device("cpu"))[1]
    assert (ref.mean((1, 2, 3)) < 0).float().mean() > 0.6 and (late.mean((1, 2, 3)) > 0).float().mean() > 0.6
    rt = setup("cpu", 1)
    built = PersonalizeData.build(tcfg, _TinyTAE(), rt, True, None)
    assert not any(ch.held_out for ch in built.chars)
    cross = cross_reference(np.random.default_rng(3), STAR, "green", 64)
    assert cross.shape == (64, 64, 3)


class _TinyTAE(torch.nn.Module):
    """Stands in for the autoencoder's encode() where only the data's bookkeeping is tested: a real
    average-pool encoder (64x64 -> 8x8, 4 channels of mean colour and brightness)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.avg_pool3d(x, (1, 8, 8))  # (B, 3, T, 8, 8)
        return torch.cat([pooled, pooled.mean(1, keepdim=True)], 1)


def test_a_results_own_reference_reproduces_it(engine, tmp_path):
    """Reopening a result gives its prepared reference (NAME.reference.png) back: prepared again it
    is kept exactly, so the same request is the same cache entry and the same clip."""
    from engine.reference_image import prepare_reference

    ref = _save(STAR.reference("green", 150), tmp_path / "star.jpg", "JPEG")
    req = PersonalizeRequest(reference=ref, prompt="it is moving up on a black background", steps=2, frames=8)
    first = engine.generate(req, out=tmp_path / "a.mp4")
    side = tmp_path / first.metadata["files"]["reference"]
    assert np.array_equal(prepare_reference(side).image, np.asarray(Image.open(side).convert("RGB")))
    again = engine.generate(PersonalizeRequest(**{**req.__dict__, "reference": str(side)}), out=tmp_path / "b.mp4")
    assert again.cached and np.array_equal(again.frames, first.frames)


def test_cli_personalize_then_upscale(tiny_model_dir, tmp_path, capsys):
    from engine.__main__ import main

    ref = _save(STAR.reference("white", 64), tmp_path / "c.png")
    argv = ["personalize", "--reference", ref, "--prompt", "the character moving left", "--frames", "4"]
    argv += ["--steps", "1", "--upscale", "4", "--model", str(tiny_model_dir), "--cache-dir", "", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "big.mp4")]) == 0
    assert (tmp_path / "big.mp4").is_file() and (tmp_path / "big.base.mp4").is_file()
    assert (tmp_path / "big.base.reference.png").is_file()
