"""The one training command: every stage on the tiny preset, then the engine runs what it saved."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from engine.engine import Engine
from engine.tasks import T2VRequest
from engine.train.recipe import train

ROOT = Path(__file__).resolve().parent.parent


def test_recipe_builds_a_model_the_engine_runs(tmp_path):
    out = train("tiny", tmp_path / "model", device="cpu")
    for part in ("tae", "t2v", "rewrite", "edit", "upscale", "personalize"):
        assert (out / part / "model.safetensors").is_file()
        assert json.loads((out / part / "config.json").read_text())["config"]
    assert json.loads((out / "t2v" / "config.json").read_text())["refined"]  # the refine stage ran
    from safetensors import safe_open

    with safe_open(str(out / "t2v" / "model.safetensors"), "pt") as f:  # the preset stores bf16
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.bfloat16
    tae_cfg = json.loads((out / "tae" / "config.json").read_text())["config"]
    assert len(tae_cfg["latent_std"]) == tae_cfg["latent_channels"]  # normalisation fitted
    engine = Engine(out, device="cpu", cache_dir=None, outputs_dir=tmp_path / "o")
    assert engine.models.tae.preview_weight.abs().sum() > 0  # preview map fitted
    res = engine.generate(T2VRequest(prompt="a red circle moving left on a blue background", steps=2, frames=8))
    assert res.frames.shape == (8, 64, 64, 3) and res.path.is_file()
    assert engine.models.rewriter is not None and res.metadata["rewrite"]["text"]  # the rewrite stage ran
    assert engine.models.personalizer is not None and engine.models.personalizer.cfg.reference is not None  # chartae + pt2v ran


def test_same_seed_same_weights(tmp_path):
    a = train("tiny", tmp_path / "a", device="cpu", stages=("tae",))
    b = train("tiny", tmp_path / "b", device="cpu", stages=("tae",))
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "tae" / "model.safetensors")), load_file(str(b / "tae" / "model.safetensors"))
    # Trained weights are bit-identical; the least-squares preview map agrees to rounding.
    assert all(torch.equal(wa[k], wb[k]) for k in wa if not k.startswith("preview_"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa if k.startswith("preview_"))


def test_recipe_runs_under_torchrun_on_two_ranks(tmp_path):
    """The same command under torchrun (two CPU ranks, Gloo), as on several GPUs. The recipe fails
    if the ranks end a stage holding different weights or latent statistics, and the refine stage
    must read the generator rank 0 saved only after it is written."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "engine", "train", "--preset", "tiny", "--device", "cpu", "--stages", "tae,t2v,refine"]
    r = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "[recipe] refine ready" in r.stdout and r.stdout.count("[recipe] done") == 1  # rank 0 logs alone
    assert json.loads((out / "t2v" / "config.json").read_text())["refined"]
    engine = Engine(out, device="cpu", cache_dir=None, outputs_dir=tmp_path / "o")
    res = engine.generate(T2VRequest(prompt="a red circle moving left on a blue background", steps=2, frames=8))
    assert res.frames.shape == (8, 64, 64, 3) and res.path.is_file()


def test_character_tae_stage_goes_on_from_the_tae_and_keeps_its_latent_statistics(tmp_path):
    """The optional 'chartae' stage: the TAE trained further with characters in its data. The
    latent normalisation (what every generator was trained with) stays as it was; weights move."""
    from safetensors.torch import load_file

    out = train("tiny", tmp_path / "m", device="cpu", stages=("tae",))
    before = json.loads((out / "tae" / "config.json").read_text())["config"]
    w0 = load_file(str(out / "tae" / "model.safetensors"))
    train("tiny", out, device="cpu", stages=("chartae",))
    after = json.loads((out / "tae" / "config.json").read_text())
    assert after["config"]["latent_mean"] == before["latent_mean"] and after["character_steps"] == 3
    w1 = load_file(str(out / "tae" / "model.safetensors"))
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)
    assert (out / "chartae-run" / "resume" / "state.safetensors").is_file()  # resumable


def test_a_stretched_run_follows_its_first_schedule_then_the_longer_one():
    """A run planned for 2000 steps and resumed to 4000 (the shipped PT2V model): its rate is the
    2000-step cosine up to step 2000 (down to the floor), then the 4000-step one from there, so one
    command with the same seed retraces it; unplanned, one cosine over all the steps."""
    from engine.train.common import cosine_lr
    from engine.train.flow_loop import FlowLoop, stretched_lr

    loop = FlowLoop("pt2v", 4000, 3e-4, 50, 0.995, 13, 100, planned=2000)
    assert stretched_lr(1999, loop) == cosine_lr(1999, 2000, 3e-4, 50) < 0.06 * 3e-4
    assert stretched_lr(2000, loop) == cosine_lr(2000, 4000, 3e-4, 50) > 0.4 * 3e-4
    plain = FlowLoop("pt2v", 4000, 3e-4, 50, 0.995, 13, 100)
    assert [stretched_lr(s, plain) for s in (0, 1999, 3999)] == [cosine_lr(s, 4000, 3e-4, 50) for s in (0, 1999, 3999)]
