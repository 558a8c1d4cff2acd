"""LoRA style adapters: trained on the DiT alone (engine/train/lora.py), saved as the adapter
alone, merged into a copy of the base on load, and named by a T2V request through the Engine."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.checkpoint import file_digest
from engine.engine import Engine
from engine.loras import LORA_FILES
from engine.models.generator import Generator
from engine.models.transformer import DiT
from engine.precision import keep_in_bf16
from engine.requests import Error, RequestError, Result
from engine.tasks import T2VRequest
from engine.train.lora import LoraConfig, LoraError, add_lora, base_digest, load_lora, save_lora
from engine.train.recipe import PRESETS

CFG = LoraConfig(rank=4, alpha=4.0)


def tiny_generator(seed: int = 0, **dit) -> Generator:
    """An untrained tiny generator with its blocks opened (an untrained block's gates are zero, so
    its self-attention and feed-forward would not reach the output) and a non-zero output layer."""
    torch.manual_seed(seed)
    cfg = PRESETS["tiny"].generator
    if dit:
        cfg = type(cfg)(dit=type(cfg.dit)(**{**cfg.dit.__dict__, **dit}), text=cfg.text)
    g = Generator(cfg).eval()
    with torch.no_grad():
        g.dit.out.weight.normal_(std=0.02)
        for block in g.dit.blocks:
            block.mod_table.normal_(std=0.1)
    return g.requires_grad_(False)


def styled(base: Generator, cfg: LoraConfig = CFG, seed: int = 1) -> Generator:
    """A copy of the base with an adapter whose weights are set (a fresh one is zero: no effect)."""
    g = add_lora(copy.deepcopy(base), cfg)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.3)
    return g


def velocity(g: Generator) -> torch.Tensor:
    torch.manual_seed(5)
    x, t = torch.randn(1, 4, 2, 8, 8), torch.tensor([0.4])
    with torch.no_grad():
        return g(x, t, **g.encode_prompts(["a red circle moving left on a blue background"]))


def test_add_lora_trains_only_the_adapter():
    base = tiny_generator()
    before = velocity(base)
    g = add_lora(copy.deepcopy(base), CFG)
    assert torch.equal(velocity(g), before)  # a fresh adapter's update is exactly zero
    trainable = {n for n, p in g.named_parameters() if p.requires_grad}
    # Both matrices of the 9 attention and feed-forward layers of each of the 2 blocks, nothing else.
    assert len(trainable) == 2 * 9 * 2 and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert all(n.startswith("dit.blocks.") for n in trainable)  # not the text encoders, not the time MLPs
    frozen = {n: p.detach().clone() for n, p in g.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in g.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in g.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(2)
    x, t, target = torch.randn(2, 4, 2, 8, 8), torch.rand(2), torch.randn(2, 4, 2, 8, 8)
    ctx = g.encode_prompts(["a red circle", "a blue star"])
    losses = []
    for _ in range(5):
        loss = (g(x, t, **ctx) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in g.named_parameters() if n in frozen)
    changed = [n for n, p in g.named_parameters() if n in adapters and not torch.equal(p, adapters[n])]
    assert any("lora_B" in n for n in changed) and any("lora_A" in n for n in changed)


def test_an_adapter_changes_the_output_and_scale_zero_is_the_base(tmp_path):
    base = tiny_generator()
    plain = velocity(base)
    folder = save_lora(styled(base), tmp_path / "neon", CFG, {"steps": 5})
    merged = load_lora(base, folder)
    assert (velocity(merged) - plain).abs().max() > 1e-3
    assert torch.equal(velocity(load_lora(base, folder, scale=0.0)), plain)
    # The merged weight is W + scale x (alpha / rank) x B A, with B A as saved.
    state = load_file(str(folder / "adapter.safetensors"))
    delta = state["blocks.1.ffn.w2.lora_B.weight"] @ state["blocks.1.ffn.w2.lora_A.weight"]
    half = load_lora(base, folder, scale=0.5)
    w, w_half = base.dit.blocks[1].ffn.w2.weight, half.dit.blocks[1].ffn.w2.weight
    assert torch.allclose(w_half - w, 0.5 * (CFG.alpha / CFG.rank) * delta, atol=1e-6)
    assert torch.allclose(merged.dit.blocks[1].ffn.w2.weight - w, delta, atol=1e-6)
    # The base is left as it was: no adapter layers in it, the same output, the text encoders shared.
    assert torch.equal(velocity(base), plain)
    assert type(base.dit.blocks[0].attn.q) is torch.nn.Linear and type(merged.dit.blocks[0].attn.q) is torch.nn.Linear
    assert merged.text is base.text and merged.dit is not base.dit
    assert not any(p.requires_grad for p in merged.parameters())


def test_save_then_load_gives_the_trained_output(tmp_path):
    base = tiny_generator()
    trained = styled(base)
    folder = save_lora(trained, tmp_path / "neon", CFG, {"steps": 5})
    a, b = load_lora(base, folder), load_lora(base, folder)
    assert torch.equal(velocity(a), velocity(b))
    # Merged into the weights: the adapter's output as it was trained, up to fp32 rounding.
    assert torch.allclose(velocity(a), velocity(trained), atol=1e-5)


def test_the_saved_file_holds_the_adapter_alone(tmp_path):
    base = tiny_generator()
    folder = save_lora(styled(base), tmp_path / "neon", CFG, {"steps": 5, "prompts": 12})
    assert sorted(p.name for p in folder.iterdir()) == ["adapter.safetensors", "config.json"]
    state = load_file(str(folder / "adapter.safetensors"))
    assert len(state) == 2 * 9 * 2 and all(".lora_A." in k or ".lora_B." in k for k in state)
    assert state["blocks.0.attn.kv.lora_A.weight"].shape == (4, 32)
    assert state["blocks.0.attn.kv.lora_B.weight"].shape == (64, 4)
    record = json.loads((folder / "config.json").read_text())
    assert record["kind"] == "lora" and record["config"]["rank"] == 4 and record["config"]["targets"][0] == "attn.q"
    assert record["base"] == base_digest(base) and record["steps"] == 5 and record["prompts"] == 12


def test_an_adapter_for_the_shipped_model_is_a_few_mb(tmp_path):
    class Holder(torch.nn.Module):  # add_lora needs only `.dit`
        def __init__(self):
            super().__init__()
            self.dit = DiT(PRESETS["shapes-v2"].generator.dit)

    model = add_lora(Holder(), LoraConfig())
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n == 8 * 65024  # rank 8 over 9 layers of a 320-wide, 896-ffn block, 8 blocks
    folder = save_lora(model, tmp_path / "style", LoraConfig())
    assert 1.5e6 < (folder / "adapter.safetensors").stat().st_size < 3e6


def test_an_adapter_that_does_not_fit_is_refused_with_the_reason(tmp_path):
    base = tiny_generator()
    wider = save_lora(styled(tiny_generator(width=48, heads=2)), tmp_path / "wider", CFG)
    with pytest.raises(LoraError, match=r"does not fit this base model.*wrong shape.*blocks\.0\.attn\.kv"):
        load_lora(base, wider)
    deeper = save_lora(styled(tiny_generator(depth=3)), tmp_path / "deeper", CFG)
    with pytest.raises(LoraError, match=r"layers this base lacks, e\.g\. blocks\.2\."):
        load_lora(base, deeper)
    with pytest.raises(LoraError, match="No layer of this generator's transformer matches"):
        add_lora(copy.deepcopy(base), LoraConfig(targets=("attn.nope",)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoraError, match="not a LoRA adapter folder"):
        load_lora(base, tmp_path / "empty")
    with pytest.raises(LoraError, match="holds no adapter"):
        save_lora(base, tmp_path / "none", CFG)
    assert type(base.dit.blocks[0].attn.q) is torch.nn.Linear  # a failed load leaves the base alone


def test_bf16_weights_sample_close_to_fp32():
    """What the engine does on a GPU that runs bf16 natively, checked on the CPU's autocast."""
    base = tiny_generator()
    x, t = torch.randn(1, 4, 2, 8, 8), torch.tensor([0.4])
    ctx = base.encode_prompts(["a red circle"])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = base(x, t, **ctx).float()
        half = keep_in_bf16(copy.deepcopy(base))
        got = half(x, t, **ctx).float()
    assert next(half.dit.parameters()).dtype == torch.bfloat16 and next(half.text.parameters()).dtype == torch.float32
    assert (got - want).abs().max() < 0.05 * want.abs().max()


# -- the Engine ------------------------------------------------------------------------------------


@pytest.fixture()
def lora_model(tiny_model_dir, tmp_path):
    """The tiny model folder with one style adapter, loras/neon, on its T2V generator."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    base = Engine(folder, device="cpu", cache_dir=None, outputs_dir=tmp_path).models.generator
    save_lora(styled(base, seed=3), folder / "loras" / "neon", CFG, {"steps": 5})
    return folder


def req(**kw) -> T2VRequest:
    return T2VRequest(**({"prompt": "a red circle moving left on a blue background", "steps": 3, "frames": 8} | kw))


def test_engine_generates_with_a_named_lora(lora_model, tmp_path):
    engine = Engine(lora_model, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "out")
    assert engine.lora_names() == ["neon"]
    plain = engine.generate(req())
    neon = engine.generate(req(lora="neon"))
    assert not np.array_equal(plain.frames, neon.frames)
    digest = file_digest(lora_model / "loras" / "neon", LORA_FILES)
    assert neon.metadata["lora"] == {"name": "neon", "scale": 1.0, "digest": digest, "base_matches": True}
    assert json.loads(neon.path.with_suffix(".json").read_text())["lora"]["digest"] == digest
    assert neon.metadata["request"]["lora"] == "neon" and "lora" not in plain.metadata
    # Its own cache entry; the base model left as it was; scale 0 is the base's clip.
    again = engine.generate(req(lora="neon"))
    assert again.cached and np.array_equal(again.frames, neon.frames)
    assert np.array_equal(engine.generate(req(seed=0, steps=3, frames=8)).frames, plain.frames)
    assert np.array_equal(engine.generate(req(lora="neon", lora_scale=0.0)).frames, plain.frames)
    assert len(engine.styles._merged) == 2  # (neon, 1.0) and (neon, 0.0)


def test_engine_refuses_an_unknown_lora_with_the_list(lora_model, tiny_model_dir, tmp_path):
    engine = Engine(lora_model, device="cpu", cache_dir=None, outputs_dir=tmp_path)
    events = list(engine.run(req(lora="sepia")))
    assert len(events) == 1 and isinstance(events[0], Error)
    assert events[0].message == "Unknown style (LoRA) 'sepia'; this model has: neon."
    bare = Engine(tiny_model_dir, device="cpu", cache_dir=None, outputs_dir=tmp_path)
    with pytest.raises(RequestError, match="this model has none"):
        bare.generate(req(lora="neon"))
    events = list(engine.run(req(lora="neon", lora_scale=3.0)))
    assert isinstance(events[-1], Error) and "lora scale must be between 0" in events[-1].message


def test_engine_reads_an_extra_lora_folder(lora_model, tiny_model_dir, tmp_path):
    extra = tmp_path / "my-loras"
    shutil.copytree(lora_model / "loras" / "neon", extra / "mine")
    (extra / "notes").mkdir()  # not an adapter: skipped
    engine = Engine(tiny_model_dir, device="cpu", cache_dir=None, outputs_dir=tmp_path, loras=extra)
    assert engine.lora_names() == ["mine"]
    assert isinstance(list(engine.run(req(lora="mine")))[-1], Result)


def test_engine_refuses_an_adapter_for_another_base(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    save_lora(styled(tiny_generator(width=48, heads=2)), folder / "loras" / "wide", CFG)
    engine = Engine(folder, device="cpu", cache_dir=None, outputs_dir=tmp_path)
    events = list(engine.run(req(lora="wide")))
    assert isinstance(events[-1], Error)
    assert events[-1].message.startswith("The style (LoRA) 'wide' cannot be used: The adapter in")
    assert "does not fit this base model" in events[-1].message


def test_the_studio_offers_the_styles_and_history_names_them(lora_model, tmp_path):
    from studio import build_ui
    from studio.history import History
    from studio.t2v_tab import T2VHandlers, settings_values

    engine = Engine(lora_model, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out")
    demo = build_ui(engine, tmp_path / "out")
    by_id = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    assert by_id["t2v-style"].visible and by_id["t2v-lora"].value == ""
    assert [value for _, value in by_id["t2v-lora"].choices] == ["", "neon"]
    values = {"prompt": "a red circle moving left on a blue background", "steps": 2, "frames": 1}
    final = list(T2VHandlers(engine, {}).run(**values, lora="neon", lora_scale=0.5))[-1]
    assert "style neon x0.5" in final["status"]
    (entry,) = History(tmp_path / "out").entries()
    digest = file_digest(lora_model / "loras" / "neon", LORA_FILES)
    assert f"style neon x0.5 ({digest[:8]})" in entry.settings_text()
    assert settings_values(entry.request)["lora"] == "neon" and settings_values(entry.request)["lora_scale"] == 0.5


def test_the_command_line_generates_a_wide_styled_image(lora_model, tmp_path, capsys):
    from engine.__main__ import main
    from engine.video_io import read_image

    out = tmp_path / "wide.png"
    argv = ["generate", "--prompt", "a red circle", "--steps", "1", "--frames", "1", "--width", "64", "--height", "32"]
    common = ["--model", str(lora_model), "--device", "cpu", "--cache-dir", "", "--quiet"]
    assert main([*argv, "--lora", "neon", "--lora-scale", "0.5", "--out", str(out), *common]) == 0
    assert read_image(out).shape == (32, 64, 3)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["lora"]["name"] == "neon" and meta["lora"]["scale"] == 0.5 and meta["request"]["width"] == 64
    assert main([*argv, "--lora", "sepia", "--out", str(out), *common]) == 2
    assert "error: Unknown style (LoRA) 'sepia'; this model has: neon." in capsys.readouterr().err
    # An extra folder of adapters, as the studio's --loras.
    extra = tmp_path / "mine"
    shutil.copytree(lora_model / "loras", extra)
    model = ["--model", str(lora_model.parent / "bare")]
    shutil.copytree(lora_model, lora_model.parent / "bare", ignore=shutil.ignore_patterns("loras"))
    assert main([*argv, "--lora", "neon", "--loras", str(extra), "--out", str(out), *model, *common[2:]]) == 0


def test_through_an_image_the_image_is_made_in_the_style(lora_model, tmp_path):
    engine = Engine(lora_model, device="cpu", cache_dir=None, outputs_dir=tmp_path)
    wide = req(factorised=True, steps=1, width=64, height=32)
    plain, neon = engine.generate(wide), engine.generate(replace(wide, lora="neon"))
    assert plain.frames.shape == neon.frames.shape == (8, 32, 64, 3)
    assert not np.array_equal(plain.frames, neon.frames) and neon.metadata["lora"]["name"] == "neon"
