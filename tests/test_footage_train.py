"""Training the generator on a user's own footage: encode once, then train on the shards with a
fixed global batch, resumably, on one process or under torchrun with DDP and FSDP2."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from engine.checkpoint import load_component, read_config
from engine.data.buckets import BucketConfig
from engine.data.encode import EncodeConfig, encode_footage
from engine.data.footage import read_footage
from engine.engine import Engine
from engine.models.generator import Generator, GeneratorConfig
from engine.models.tae import TAE, TAEConfig
from engine.tasks import T2VRequest
from engine.train.common import Runtime
from engine.train.footage_stage import FootageTrainConfig, StepBatches, train_footage
from engine.train.lora import LoraConfig
from engine.train.parallel import ParallelConfig
from engine.train.run_config import dump_toml
from engine.video_io import write_video

ROOT = Path(__file__).parent.parent
CPU = Runtime(device=torch.device("cpu"))


def _clip(rng: np.random.Generator, h: int, w: int, frames: int) -> np.ndarray:
    """A coloured square sliding over a gradient: something with structure to learn."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, int(rng.integers(0, 255)))], -1)
    out = np.repeat(base[None], frames, 0).astype(np.uint8)
    c, dx = rng.integers(0, 255, 3), int(rng.integers(1, 3))
    for t in range(frames):
        x0 = (4 + t * dx) % (w - 8)
        out[t, h // 3 : h // 3 + 8, x0 : x0 + 8] = c
    return out


@pytest.fixture(scope="module")
def latents(tiny_model_dir, tmp_path_factory) -> Path:
    """Twenty tiny clips, landscape and square, with captions, encoded by the tiny model."""
    rng = np.random.default_rng(0)
    src = tmp_path_factory.mktemp("footage")
    for i in range(20):
        h, w = ((32, 48), (32, 32))[i % 2]
        write_video(src / f"clip{i:02d}.mp4", _clip(rng, h, w, 8), fps=8.0)
        (src / f"clip{i:02d}.txt").write_text(f"a square sliding {'left right'.split()[i % 2]} number {i}\n")
    out = tmp_path_factory.mktemp("latents")
    tae = load_component(tiny_model_dir / "tae", TAE, TAEConfig)
    text = load_component(tiny_model_dir / "t2v", Generator, GeneratorConfig).text
    cfg = EncodeConfig(buckets=BucketConfig(size=32, aspects=(1.0, 1.5), frames=(8,), multiple=16), shard_size=8)
    encode_footage(read_footage(src), tae, text, cfg, out, log=lambda s: None)
    return out


def _cfg(latents: Path, model: Path, **kw) -> FootageTrainConfig:
    base = FootageTrainConfig(
        latents=str(latents), model=str(model), steps=6, global_batch=4, micro_batch=2, lr=2e-3, warmup=1,
        ema=0.9, holdout=4, eval_every=3, checkpoint_every=3, seed=1,
    )  # fmt: skip
    return replace(base, **kw)


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_a_step_trains_on_the_same_samples_however_it_is_split(latents):
    """Four slots of one sample, or two of two: the same four samples a step (the global batch),
    and two ranks of one slot each deal the same samples between them as one rank of two."""
    from engine.data.shards import LatentShards

    data = LatentShards(latents)
    train = list(range(len(data)))

    def steps(cfg, rank, world, n=6):
        it = iter(StepBatches(data.shapes, train, cfg, rank, world, 0))
        acc = 4 // cfg.micro_batch // world
        return [sorted(sum((next(it) for _ in range(acc)), [])) for _ in range(n)]

    one = _cfg(latents, latents, micro_batch=4)
    two = _cfg(latents, latents, micro_batch=2)
    assert steps(one, 0, 1) == steps(two, 0, 1)
    ranks = [steps(two, r, 2) for r in range(2)]
    assert [sorted(a + b) for a, b in zip(*ranks, strict=True)] == steps(two, 0, 1)
    assert all(set(a).isdisjoint(b) for a, b in zip(*ranks, strict=True))
    for step in steps(two, 0, 1):
        assert len({data.shapes[i] for i in step}) == 1  # one latent shape a step
    # A run resumed at step 3 goes on with the data of step 3.
    later = iter(StepBatches(data.shapes, train, two, 0, 1, 3))
    assert sorted(next(later) + next(later)) == steps(two, 0, 1)[3]


def test_training_lowers_the_heldout_loss_and_leaves_a_model_the_engine_loads(latents, tiny_model_dir, tmp_path):
    cfg = _cfg(latents, tiny_model_dir, steps=30, eval_every=10, checkpoint_every=30, lr=3e-3)
    target = train_footage(cfg, CPU, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    held = [r["heldout"] for r in rows if "heldout" in r]
    assert len(held) == 4 and held[-1] < held[1] < held[0] * 0.95, held  # before training, steps 10, 20, 30
    assert target == tmp_path / "model"
    assert read_config(target / "t2v")["footage_steps"] == 30
    trained = load_component(target / "t2v", Generator, GeneratorConfig)
    base = load_component(tiny_model_dir / "t2v", Generator, GeneratorConfig)
    assert not torch.equal(trained.dit.blocks[0].attn.q.weight, base.dit.blocks[0].attn.q.weight)
    frozen = base.text.encoders[0].embed.weight.to(torch.bfloat16).float()  # as it is stored: bf16
    assert torch.equal(trained.text.encoders[0].embed.weight, frozen)
    assert (target / "tae" / "model.safetensors").is_file()
    # The Engine takes it as it is, and makes a clip of a shape the model never had as a square.
    engine = Engine(target, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out", bf16=False)
    res = engine.generate(T2VRequest(prompt="a square sliding left", width=48, height=32, frames=8, steps=2))
    assert res.frames.shape == (8, 32, 48, 3) and res.frames.std() > 1


def test_a_lora_trains_only_its_adapter_and_the_engine_offers_it(latents, tiny_model_dir, tmp_path):
    cfg = _cfg(latents, tiny_model_dir, steps=4, lora=LoraConfig(rank=4, alpha=4), name="sliding", lr=1e-2)
    target = train_footage(cfg, CPU, tmp_path)
    assert target == tmp_path / "loras" / "sliding"
    with safe_open(str(target / "adapter.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys)  # the adapter alone, not the base
    engine = Engine(tiny_model_dir, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out", loras=target.parent)
    req = T2VRequest(prompt="a square sliding left", frames=8, size=32, steps=2)
    plain, styled = engine.generate(req), engine.generate(replace(req, lora="sliding"))
    assert not np.array_equal(plain.frames, styled.frames)
    assert styled.metadata["lora"]["name"] == "sliding" and styled.metadata["lora"]["base_matches"]


def test_accumulation_and_resume_give_the_losses_of_one_unbroken_batch(latents, tiny_model_dir, tmp_path):
    whole = train_footage(_cfg(latents, tiny_model_dir, micro_batch=4), CPU, tmp_path / "whole")
    accumulated = train_footage(_cfg(latents, tiny_model_dir), CPU, tmp_path / "acc")
    a, b = _losses(whole.parent), _losses(accumulated.parent)
    assert a.keys() == b.keys() == set(range(1, 7))
    assert all(abs(a[k] - b[k]) < 1e-5 for k in a), (a, b)
    # Killed after the step-3 checkpoint (what came after it gone), then run again: it goes on
    # from step 3 and trains steps 4-6 as the unbroken run did.
    broken = tmp_path / "acc"
    shutil.rmtree(broken / "checkpoints" / "step-6")
    shutil.rmtree(broken / "model")
    (broken / "log.jsonl").write_text("")
    train_footage(_cfg(latents, tiny_model_dir), CPU, broken)
    c = _losses(broken)
    assert c.keys() == {4, 5, 6} and all(abs(b[k] - c[k]) < 1e-6 for k in c), (b, c)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_gloo_ranks_train_like_one(latents, tiny_model_dir, tmp_path, mode):
    """Under torchrun on two CPU ranks, DDP and FSDP2 (with activation checkpointing) give one
    rank's losses for the same global batch; the sharded checkpoint they leave resumes on one."""
    cfg = _cfg(latents, tiny_model_dir, parallel=ParallelConfig(mode=mode, checkpointing=mode == "fsdp"))
    one = train_footage(replace(cfg, parallel=ParallelConfig()), CPU, tmp_path / "one")
    run = tmp_path / "run.toml"
    run.write_text(dump_toml({"footage": replace(cfg, stop_at=3)}))
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = tmp_path / "two"
    subprocess.run([*cmd, "-m", "engine", "train", "--config", str(run), "--out", str(two), "--device", "cpu"],
                   check=True, env=env, cwd=ROOT, timeout=300)  # fmt: skip
    # Resumed on one rank from the two ranks' step-3 checkpoint.
    train_footage(cfg, CPU, two)
    a, b = _losses(one.parent), _losses(two)
    # The same samples, noise and times each step; only the order of float sums differs (the
    # all-reduce, FSDP2's sharded optimiser): within 1e-5 over six steps, the resume included.
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-5 * a[k] for k in a), [(k, a[k], b[k]) for k in a]
    assert abs(a[1] - b[1]) < 1e-5


def test_a_transformers_encoder_added_at_encode_time_reads_the_captions_in_training(
    tiny_model_dir, local_bert, tmp_path
):
    """`encode --text-encoder DIR` adds a local transformers encoder beside the word encoder;
    training builds its generator from what the latents were encoded with (a new projection for
    it), and the model it leaves reads prompts with both, the encoder's path kept, not its weights."""
    from engine.__main__ import main

    rng = np.random.default_rng(1)
    src = tmp_path / "clips"
    src.mkdir()
    for i in range(8):
        write_video(src / f"c{i}.mp4", _clip(rng, 32, 32, 8), fps=8.0)
        (src / f"c{i}.txt").write_text("a red circle moving left\n")
    lat = tmp_path / "lat"
    args = ["encode", "--data", str(src), "--model", str(tiny_model_dir), "--out", str(lat), "--quiet"]
    assert main([*args, "--size", "32", "--frames", "8", "--text-encoder", local_bert, "--device", "cpu"]) == 0
    cfg = _cfg(lat, tiny_model_dir, steps=2, holdout=0, eval_every=2, checkpoint_every=2)
    target = train_footage(cfg, CPU, tmp_path / "run")
    saved = read_config(target / "t2v")["config"]["text"]
    assert len(saved["extra"]) == 1 and not Path(saved["extra"][0]["path"]).is_absolute()
    with safe_open(str(target / "t2v" / "model.safetensors"), "pt") as f:
        assert "text.proj.1.0.weight" in f.keys() and not any(k.startswith("text.encoders.1.") for k in f.keys())
    gen = load_component(target / "t2v", Generator, GeneratorConfig)
    base = load_component(tiny_model_dir / "t2v", Generator, GeneratorConfig)
    n = base.encode_prompts(["a red circle"])["context"].shape[1]
    assert gen.encode_prompts(["a red circle"])["context"].shape[1] == n + 5  # + [CLS] a red circle [SEP]
    engine = Engine(target, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out", bf16=False)
    assert engine.generate(T2VRequest(prompt="a red circle", frames=8, size=32, steps=2)).frames.shape == (8, 32, 32, 3)
