"""The one training command: every stage on the tiny preset, then the engine runs what it saved."""

import json

import torch

from engine.engine import Engine
from engine.requests import T2VRequest
from engine.train.recipe import train


def test_recipe_builds_a_model_the_engine_runs(tmp_path):
    out = train("tiny", tmp_path / "model", device="cpu")
    for part in ("tae", "t2v", "rewrite"):
        assert (out / part / "model.safetensors").is_file()
        assert json.loads((out / part / "config.json").read_text())["config"]
    assert json.loads((out / "t2v" / "config.json").read_text())["refined"]  # the refine stage ran
    from safetensors import safe_open

    with safe_open(str(out / "t2v" / "model.safetensors"), "pt") as f:  # the preset stores bf16
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.bfloat16
    tae_cfg = json.loads((out / "tae" / "config.json").read_text())["config"]
    assert len(tae_cfg["latent_std"]) == tae_cfg["latent_channels"]  # normalisation fitted
    engine = Engine(out, device="cpu", cache_dir=None, outputs_dir=tmp_path / "o")
    assert engine.tae.preview_weight.abs().sum() > 0  # preview map fitted
    res = engine.generate(T2VRequest(prompt="a red circle moving left on a blue background", steps=2, frames=8))
    assert res.frames.shape == (8, 64, 64, 3) and res.path.is_file()
    assert engine.rewriter is not None and res.metadata["rewrite"]["text"]  # the rewrite stage ran


def test_same_seed_same_weights(tmp_path):
    a = train("tiny", tmp_path / "a", device="cpu", stages=("tae",))
    b = train("tiny", tmp_path / "b", device="cpu", stages=("tae",))
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "tae" / "model.safetensors")), load_file(str(b / "tae" / "model.safetensors"))
    # Trained weights are bit-identical; the least-squares preview map agrees to rounding.
    assert all(torch.equal(wa[k], wb[k]) for k in wa if not k.startswith("preview_"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa if k.startswith("preview_"))
