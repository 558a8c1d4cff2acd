"""The one training command: every stage on the tiny preset, then the engine runs what it saved."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.engine import Engine
from engine.tasks import T2VRequest
from engine.train.recipe import train

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_recipe_builds_a_model_the_engine_runs(tmp_path):
    out = train("tiny", tmp_path / "model", device="cpu")
    for part in ("tae", "t2v", "rewrite", "edit", "upscale", "personalize", "animate"):
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
    # The edit and pt2v stages ran, each with its condition in the sequence (docs/conditioning.md).
    personalizer, editor = engine.models.personalizer, engine.models.editor
    assert personalizer is not None and personalizer.cfg.dit.context_kinds and personalizer.cfg.reference is None
    assert editor is not None and editor.cfg.dit.context_kinds and not editor.cfg.dit.extra_channels
    assert engine.models.animator is not None and engine.models.animator.cfg.dit.frame_stride == 4


@pytest.mark.slow
def test_same_seed_same_weights(tmp_path):
    a = train("tiny", tmp_path / "a", device="cpu", stages=("tae",))
    b = train("tiny", tmp_path / "b", device="cpu", stages=("tae",))
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "tae" / "model.safetensors")), load_file(str(b / "tae" / "model.safetensors"))
    # Trained weights are bit-identical; the least-squares preview map agrees to rounding.
    assert all(torch.equal(wa[k], wb[k]) for k in wa if not k.startswith("preview_"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa if k.startswith("preview_"))


@pytest.mark.slow
def test_recipe_runs_under_torchrun_on_two_ranks(tmp_path):
    """The same command under torchrun (two CPU ranks, Gloo), as on several GPUs: the generator
    stages through torch's DDP, the TAE's by averaging after backward. The recipe fails if the ranks
    end a stage holding different weights or latent statistics (so a gradient DDP did not reduce
    fails it), and each later stage must read what rank 0 saved only after it is written."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    stages = "tae,t2v,refine,edit,animate"  # the grown models too (parts unused in some batches)
    cmd += ["-m", "engine", "train", "--preset", "tiny", "--device", "cpu", "--stages", stages]
    r = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "[recipe] refine ready" in r.stdout and r.stdout.count("[recipe] done") == 1  # rank 0 logs alone
    assert "[recipe] animation model ready" in r.stdout
    assert json.loads((out / "t2v" / "config.json").read_text())["refined"]
    engine = Engine(out, device="cpu", cache_dir=None, outputs_dir=tmp_path / "o")
    res = engine.generate(T2VRequest(prompt="a red circle moving left on a blue background", steps=2, frames=8))
    assert res.frames.shape == (8, 64, 64, 3) and res.path.is_file()


@pytest.mark.slow
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
    from engine.train.common import LoopConfig, cosine_lr, stretched_lr

    loop = LoopConfig("pt2v", 4000, 3e-4, 50, 0.995, 13, 100, planned=2000)
    assert stretched_lr(1999, loop) == cosine_lr(1999, 2000, 3e-4, 50) < 0.06 * 3e-4
    assert stretched_lr(2000, loop) == cosine_lr(2000, 4000, 3e-4, 50) > 0.4 * 3e-4
    plain = LoopConfig("pt2v", 4000, 3e-4, 50, 0.995, 13, 100)
    assert [stretched_lr(s, plain) for s in (0, 1999, 3999)] == [cosine_lr(s, 4000, 3e-4, 50) for s in (0, 1999, 3999)]


class _Killed(BaseException):
    """What a kill does to a run: it stops wherever it is (not an Exception: nothing catches it)."""


@pytest.mark.slow
def test_a_killed_t2v_stage_goes_on_from_its_last_state_to_the_unbroken_runs_weights(tmp_path, monkeypatch, capsys):
    """The T2V stage is killed inside its 4th step (the tiny preset saves its state every 2 steps)
    and the same command is given again: it goes on from step 2, on the data it cached, without
    training the word encoder again, and ends at the weights of a run never stopped (same seed)."""
    from safetensors.torch import load_file

    import engine.train.common as common

    base = train("tiny", tmp_path / "base", device="cpu", stages=("tae",))
    unbroken, broken = shutil.copytree(base, tmp_path / "unbroken"), shutil.copytree(base, tmp_path / "broken")
    train("tiny", unbroken, device="cpu", stages=("t2v",))

    real, updates = common.optimizer_step, []

    def killed_in_the_4th_step(*args, **kwargs):
        updates.append(1)
        if len(updates) == 4:
            raise _Killed
        real(*args, **kwargs)

    monkeypatch.setattr(common, "optimizer_step", killed_in_the_4th_step)
    with pytest.raises(_Killed):
        train("tiny", broken, device="cpu", stages=("t2v",))
    monkeypatch.undo()
    state = broken / "t2v-run" / "resume"
    assert json.loads((state / "state.json").read_text())["step"] == 2 and not (broken / "t2v").exists()
    capsys.readouterr()

    train("tiny", broken, device="cpu", stages=("t2v",))
    log = capsys.readouterr().out
    assert "[t2v] resumed at step 2" in log and "[text]" not in log  # the word encoder is in the state
    assert "[t2v] step 6/6" in log and "step 2/6" not in log  # the steps after 2, not those before
    a, b = load_file(str(unbroken / "t2v" / "model.safetensors")), load_file(str(broken / "t2v" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = [json.loads((d / "t2v" / "config.json").read_text()) for d in (unbroken, broken)]
    assert meta[0]["text_parse_accuracy"] == meta[1]["text_parse_accuracy"]
    # The resume state too (weights, EMA, optimiser moments), not only the saved EMA.
    sa, sb = (load_file(str(d / "t2v-run" / "resume" / "state.safetensors")) for d in (unbroken, broken))
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_stages_are_one_table_selected_by_name():
    """--stages picks rows of recipe.STAGES by name; they run in the table's order, a preset without
    a stage skips it, and a name not in the table is refused with the names that are."""
    from engine.train.recipe import DEFAULT_STAGES, PRESETS, STAGE_NAMES, STAGES

    assert STAGE_NAMES == (
        "tae", "t2v", "refine", "decoder", "rewrite", "edit", "updecoder", "upscale", "chartae", "pt2v", "animate"
    )  # fmt: skip
    assert DEFAULT_STAGES == tuple(n for n in STAGE_NAMES if n != "chartae")
    assert all(s.has(PRESETS["tiny"]) and s.has(PRESETS["shapes-v2"]) for s in STAGES)
    v1 = [s.name for s in STAGES if s.has(PRESETS["shapes-v1"])]
    assert v1 == ["tae", "t2v", "decoder"]  # the CPU preset: T2V only
    with pytest.raises(ValueError, match="choose from tae, t2v, refine"):
        train("tiny", "unused", device="cpu", stages=("t2v", "polish"))
    r = subprocess.run([sys.executable, "-m", "engine", "train", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "--stages" in r.stdout
