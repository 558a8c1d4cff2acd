"""Training the text-to-video generator on a user's own footage: the latents and caption
encodings the encode pass wrote (engine/data/encode.py), read by a DataLoader in batches of one
latent shape (aspect ratio x duration), on one process or under torchrun with DDP or FSDP2
(parallel.py). A full fine-tune or a LoRA (lora.py) of a model folder's T2V generator, or a new
generator from its config.

The global batch is fixed whatever the rank count: each step is `global_batch` samples, split
into micro-batches of `micro_batch`, spread over the ranks and accumulated on each. Which samples
form step s, and every sample's noise, time and caption drop, depend only on (seed, s, the
sample), so one rank, two ranks, or a run resumed on another rank count see the same data.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..checkpoint import config_from_dict, file_digest, load_component, read_config, save_component, weights_digest
from ..data.shards import BucketBatchSampler, LatentShards, collate
from ..models.generator import Generator, GeneratorConfig
from ..models.tae import TAE, TAEConfig
from ..models.text import TextConfig
from ..models.transformer import DiTConfig
from ..sampling import interpolate, sample_times, target_velocity
from .common import Logger, Runtime, cosine_lr, set_lr, setup
from .lora import LoraConfig, add_lora, save_lora
from .parallel import (
    ParallelConfig,
    bf16_training,
    full_state,
    latest,
    load_sharded,
    memory_now_mb,
    parallelize,
    peak_memory_mb,
    plain_name,
    reshard,
    save_sharded,
    sync_gradients,
)
from .run_config import dump_toml


@dataclass(frozen=True)
class FootageTrainConfig:
    latents: str = ""  # the encode pass's output folder
    # The model folder the encode pass used: its TAE made the latents and its text encoders the
    # caption encodings; its T2V generator is what is fine-tuned.
    model: str = ""
    # A new transformer of this size instead (the folder's text encoders kept, new projections).
    dit: DiTConfig | None = None
    steps: int = 1000
    global_batch: int = 16  # samples per optimiser step, whatever the rank count
    micro_batch: int = 8  # samples per forward on one rank (memory); accumulated up to the global batch
    lr: float = 1e-4
    warmup: int = 50
    ema: float = 0.999  # 0: no EMA, the weights themselves are the result
    drop_text: float = 0.1  # empty prompt, for classifier-free guidance
    holdout: int = 8  # samples kept out of training, for the held-out flow loss
    eval_every: int = 100
    checkpoint_every: int = 100
    seed: int = 0
    # End this invocation at this step (0: at `steps`) with a checkpoint there: a cluster job with
    # a time limit runs part of the schedule, the next one resumes.
    stop_at: int = 0
    workers: int = 0  # DataLoader processes
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    lora: LoraConfig | None = None  # train only low-rank adapters (saved apart, a few MB)
    name: str = ""  # the LoRA's name in the studio and in requests; "" = the output folder's name


def check_config(cfg: FootageTrainConfig) -> None:
    """Settings that cannot train, said in words before anything is loaded."""
    for name in ("steps", "global_batch", "micro_batch", "eval_every", "checkpoint_every"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"footage.{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.holdout < 0 or cfg.stop_at < 0 or not 0 <= cfg.drop_text < 1 or not 0 <= cfg.ema < 1:
        raise ValueError("footage.holdout and stop_at must be >= 0, drop_text and ema in [0, 1)")
    if cfg.dit is not None and cfg.lora is not None:
        raise ValueError(
            "footage.lora adapts the model folder's trained transformer: it cannot go with a new one (dit)"
        )


class FlowModel(torch.nn.Module):
    """The generator as one forward from stored caption encodings, so DDP and FSDP2 see every
    trainable parameter (the text projections included) inside the call they wrap."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, xt: torch.Tensor, t: torch.Tensor, encoded: list[tuple[torch.Tensor, torch.Tensor]]):
        ctx, mask = self.generator.text.project(encoded)  # (B, L, D), (B, L)
        return self.generator(xt, t, context=ctx, context_mask=mask)  # (B, C, T, h, w)


class StepBatches:
    """This rank's micro-batches, step after step from `start`, forever (a DataLoader batch
    sampler). A step's global batch is dealt to global_batch / micro_batch slots, one per (rank,
    micro-batch) pair, each slot a BucketBatchSampler (DistributedSampler per bucket) of its own:
    the samples of a step are the same however the slots are spread over ranks, so a run on one
    rank, on two, or resumed on another count trains on the same data."""

    def __init__(
        self, shapes: list[tuple], train: list[int], cfg: FootageTrainConfig, rank: int, world: int, start: int
    ):
        slots, rem = divmod(cfg.global_batch, cfg.micro_batch)
        if rem or slots % world:
            raise ValueError(
                f"global_batch {cfg.global_batch} must be micro_batch {cfg.micro_batch} times a multiple of the "
                f"{world} ranks (each step's batch is split into micro-batches over the ranks)"
            )
        self.accumulate, self.train, self.start = slots // world, train, start
        mine = [shapes[i] for i in train]
        self.slots = [
            BucketBatchSampler(mine, cfg.micro_batch, rank=rank * self.accumulate + m, world=slots, seed=cfg.seed)
            for m in range(self.accumulate)
        ]
        self.per_epoch = len(self.slots[0])
        self.dropped = [  # buckets too small for one step: said, not silently left out
            (shape, n) for shape, n in sorted(Counter(tuple(x) for x in mine).items()) if n < cfg.global_batch
        ]
        if self.per_epoch == 0:
            raise ValueError(f"no latent shape has {cfg.global_batch} training samples: lower global_batch")

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start
        while True:
            e, k = divmod(step, self.per_epoch)
            for s in self.slots:
                s.set_epoch(e)
            epoch = [list(s) for s in self.slots]  # per slot, its micro-batches of the epoch
            for j in range(k, self.per_epoch):
                for m in range(self.accumulate):
                    yield [self.train[i] for i in epoch[m][j]]
            step = (e + 1) * self.per_epoch


def sample_noise(seed: int, step: int, index: int, shape: tuple, drop_text: float) -> tuple[torch.Tensor, float, bool]:
    """One sample's noise, flow time and caption drop at `step`, from (seed, step, sample) alone."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_000_033 + index)
    return torch.randn(shape, generator=g), float(sample_times(1, g)[0]), bool(torch.rand(1, generator=g) < drop_text)


def encoded_text(
    batch: dict, empty: dict, drop: list[bool], device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batch's caption encodings per encoder, the empty prompt's where a caption is dropped."""
    out, i = [], 0
    while f"text{i}" in batch:
        tok, mask = batch[f"text{i}"].clone(), batch[f"mask{i}"].clone()
        for j, d in enumerate(drop):
            if d:
                tok[j], mask[j] = empty[f"text{i}"], empty[f"mask{i}"]
        out.append((tok.to(device), mask.to(device)))
        i += 1
    return out


def flow_loss(model, batch: dict, empty: dict, seed: int, step: int, drop_text: float, rt: Runtime) -> torch.Tensor:
    """The summed per-sample flow-matching loss of a micro-batch (divide by the global batch)."""
    x1 = batch["latents"].float()  # (B, C, T, h, w)
    noise = [sample_noise(seed, step, int(i), tuple(x1.shape[1:]), drop_text) for i in batch["index"]]
    x0 = torch.stack([n[0] for n in noise]).to(rt.device)
    t = torch.tensor([n[1] for n in noise], device=rt.device)
    x1 = x1.to(rt.device)
    encoded = encoded_text(batch, empty, [n[2] for n in noise], rt.device)
    with torch.autocast(rt.device.type, dtype=torch.bfloat16, enabled=bf16_training(rt.device)):
        v = model(interpolate(x0, x1, t), t, encoded)
    err = F.mse_loss(v.float(), target_velocity(x0, x1), reduction="none")
    return err.flatten(1).mean(1).sum()  # (,)


def build_generator(cfg: FootageTrainConfig, text: TextConfig | None = None) -> Generator:
    """The generator to train: the model folder's T2V generator, or a new transformer (cfg.dit),
    with the text encoders the latents were encoded with (`text`, from their index: the folder's
    own, or others added at encode time, each with a new projection; the word encoder and its
    projection carried over where both have it). The encoders stay frozen (their outputs were
    stored by the encode pass); under LoRA only the adapters train."""
    base = load_component(Path(cfg.model) / "t2v", Generator, GeneratorConfig).requires_grad_(True).train()
    text = text or base.cfg.text
    if cfg.dit is None and text == base.cfg.text:
        gen = base
    else:
        gen = Generator(GeneratorConfig(dit=cfg.dit or base.cfg.dit, text=text))
        if cfg.dit is None:
            gen.dit.load_state_dict(base.dit.state_dict())
        same = text.words is not None and text.words == base.cfg.text.words
        if same:
            gen.text.encoders[0].load_state_dict(base.text.encoders[0].state_dict())
            if cfg.dit is None:
                gen.text.proj[0].load_state_dict(base.text.proj[0].state_dict())
        for i, e in enumerate(text.extra):  # the folder's own transformers encoders' projections
            j = i + (text.words is not None)
            if e in base.cfg.text.extra and cfg.dit is None:
                k = base.cfg.text.extra.index(e) + (base.cfg.text.words is not None)
                gen.text.proj[j].load_state_dict(base.text.proj[k].state_dict())
    gen.text.encoders.requires_grad_(False)
    if cfg.lora is not None:
        gen = add_lora(gen, cfg.lora)
    return gen


def latents_text(data: LatentShards) -> TextConfig | None:
    """The text encoders the encode pass used (None: an index that does not say: the folder's)."""
    raw = data.index.get("text_config")
    return config_from_dict(TextConfig, raw) if raw is not None else None


def _tae_weights(folder: Path) -> str:
    return weights_digest(load_component(folder / "tae", TAE, TAEConfig).state_dict())


def check_data(data: LatentShards, cfg: FootageTrainConfig) -> None:
    """The latents must come from this model folder's TAE and text encoders (else training
    learns a space the model never decodes), and their shapes must fit its position tables."""
    folder = Path(cfg.model)
    made_by = data.index.get("models", {}).get("tae")
    # The encode command names the TAE by its folder's digest; encode_footage called without one,
    # by its weights'.
    if made_by is not None and made_by != file_digest(folder / "tae") and made_by != _tae_weights(folder):
        raise ValueError(
            f"{cfg.latents} was encoded by another TAE than {folder}'s: encode it again with --model {folder}"
        )
    gcfg = config_from_dict(GeneratorConfig, read_config(folder / "t2v")["config"])
    dit = gcfg.dit if cfg.dit is None else cfg.dit
    text = latents_text(data) or gcfg.text
    want = len(text.extra) + (text.words is not None)
    if len(data.index["text"]) != want:
        raise ValueError(
            f"{cfg.latents} holds {len(data.index['text'])} caption encodings, {folder}'s generator reads {want}: "
            f"encode it again with --model {folder}"
        )
    (pt, ph, pw), grid = dit.patch, (dit.max_t, dit.max_h, dit.max_w)
    for shape in sorted(set(data.shapes)):
        t, h, w = shape[1:]
        if t % pt or h % ph or w % pw or t // pt > grid[0] or h // ph > grid[1] or w // pw > grid[2]:
            raise ValueError(
                f"latents of shape {shape} do not fit the transformer (patch {dit.patch}, at most {grid} patches): "
                "encode with smaller --size or --frames"
            )


def _record(out: Path, rt: Runtime, row: dict) -> None:
    if rt.main:
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


@torch.no_grad()
def heldout_loss(
    model, data: LatentShards, holdout: list[int], empty: dict, cfg: FootageTrainConfig, rt: Runtime
) -> float:
    """The flow loss on the held-out samples at fixed noise and times (the same draws every time,
    so the curve compares like with like), every rank computing all of it (FSDP2 needs each rank
    in every forward). Four draws per sample."""
    total, n = 0.0, 0
    by_shape: dict[tuple, list[int]] = {}
    for j in holdout:
        by_shape.setdefault(tuple(data.shapes[j]), []).append(j)
    chunks = [
        b[i : i + cfg.micro_batch] for _, b in sorted(by_shape.items()) for i in range(0, len(b), cfg.micro_batch)
    ]
    for chunk in chunks:
        batch = collate([data[j] for j in chunk])
        for draw in range(4):
            loss = flow_loss(model, batch, empty, cfg.seed, -1 - draw, 0.0, rt)
            total, n = total + float(loss), n + len(batch["index"])
    reshard(model)
    return total / max(n, 1)


def _swap(params: list[torch.nn.Parameter], ema: dict[str, torch.Tensor]) -> None:
    """Exchange the weights and their EMA in place (twice restores them)."""
    with torch.no_grad():
        for p, e in zip(params, ema.values(), strict=True):
            tmp = p.detach().clone()
            p.copy_(e)
            e.copy_(tmp)


def export(cfg: FootageTrainConfig, model, params, ema: dict, rt: Runtime, out: Path, text: TextConfig | None) -> Path:
    """What the run made, for the Engine: out/model (the folder's TAE and the trained T2V
    generator, bf16), or for LoRA out/loras/NAME (the adapter alone: `Engine(model, loras=
    out / "loras")`, or copy it into the model folder's loras/). All ranks gather the weights;
    rank 0 writes."""
    if ema:
        _swap(params, ema)
    state = full_state(model)  # every rank takes part in the gather
    if ema:
        _swap(params, ema)
    target = out / "loras" / (cfg.name or out.resolve().name) if cfg.lora is not None else out / "model"
    if rt.main:
        gen = build_generator(cfg, text)
        FlowModel(gen).load_state_dict(state)
        meta = {"footage_steps": cfg.steps, "latents": str(cfg.latents), "grown_from": str(cfg.model)}
        if cfg.lora is not None:
            save_lora(gen, target, cfg.lora, meta)
        else:
            shutil.copytree(Path(cfg.model) / "tae", target / "tae", dirs_exist_ok=True)
            # Encoder paths rewritten relative to the new model folder (the encoders are not copied).
            extra = tuple(replace(e, path=os.path.relpath(e.path, target)) for e in gen.cfg.text.extra)
            gcfg = replace(gen.cfg, text=replace(gen.cfg.text, extra=extra))
            save_component(target / "t2v", "generator", gcfg, gen, meta, torch.bfloat16)
    rt.barrier()
    return target


def train_footage(cfg: FootageTrainConfig, rt: Runtime, out: Path) -> Path:
    """Train from cfg.latents into `out`: out/checkpoints/step-N (sharded, resumable on any rank
    count), out/log.jsonl (train and held-out losses, seconds, peak memory), and at the end
    out/model (the TAE and the T2V generator) or out/loras/NAME (a LoRA). Returns what it wrote
    for the Engine to load (a checkpoint folder when it stopped early at cfg.stop_at)."""
    check_config(cfg)
    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    data = LatentShards(cfg.latents)
    check_data(data, cfg)
    held = np.random.default_rng(cfg.seed).permutation(len(data))
    holdout, train = sorted(held[: cfg.holdout].tolist()), sorted(held[cfg.holdout :].tolist())

    text = latents_text(data)
    gen = build_generator(cfg, text).to(rt.device)
    net = FlowModel(gen)
    model = parallelize(net, gen.dit.blocks, rt, cfg.parallel, frozen_parts=tuple(gen.text.encoders))
    named = [(plain_name(k), p) for k, p in model.named_parameters() if p.requires_grad]
    names, params = [k for k, _ in named], [p for _, p in named]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    ema = {f"ema.{k}": p.detach().clone() for k, p in zip(names, params, strict=True)} if cfg.ema else {}

    ckpts, start = out / "checkpoints", 0
    found = latest(ckpts)
    if found is not None:
        start = int(load_sharded(found, model, opt, ema)["step"])
        if rt.main:
            print(f"[footage] resumed at step {start} from {found}", flush=True)

    sampler = StepBatches(data.shapes, train, cfg, rt.rank, rt.world, start)
    if rt.main:
        for shape, n in sampler.dropped:
            print(f"[footage] {n} samples of shape {shape} are fewer than a global batch: not trained on", flush=True)
    loader = iter(DataLoader(data, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.workers))
    empty = data.empty
    log = Logger(rt, "footage", cfg.steps, every=10)
    t0 = time.perf_counter()
    end = min(cfg.stop_at or cfg.steps, cfg.steps)
    _record(out, rt, {"step": start, "memory_start_mb": memory_now_mb(rt.device)})
    if start == 0 and holdout:  # where the held-out loss starts from, for the curve
        _record(out, rt, {"step": 0, "heldout": heldout_loss(model, data, holdout, empty, cfg, rt)})
    for step in range(start, end):
        set_lr(opt, cosine_lr(step, cfg.steps, cfg.lr, warmup=cfg.warmup))
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=rt.device)
        for m in range(sampler.accumulate):
            batch = next(loader)
            with sync_gradients(model, m == sampler.accumulate - 1):
                # This rank's share of the batch: DDP and FSDP2 average the ranks' gradients.
                loss = flow_loss(model, batch, empty, cfg.seed, step, cfg.drop_text, rt) / (cfg.global_batch / rt.world)
                loss.backward()
            total += loss.detach() / rt.world
        if rt.world > 1:  # the loss for the log only: DDP and FSDP2 already averaged the gradients
            dist.all_reduce(total)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema:
            d = min(cfg.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.values()), [p.detach() for p in params], 1 - d)
        log.log(step, loss=total)
        row = {"step": step + 1, "loss": float(total), "seconds": time.perf_counter() - t0}
        _record(out, rt, row | {"peak_mb": peak_memory_mb(rt.device)})
        if holdout and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            held_loss = heldout_loss(model, data, holdout, empty, cfg, rt)
            _record(out, rt, {"step": step + 1, "heldout": held_loss})
            if rt.main:
                print(f"[footage] step {step + 1} held-out flow loss {held_loss:.4f}", flush=True)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end:
            save_sharded(ckpts / f"step-{step + 1}", model, opt, ema, {"step": step + 1})
    if end < cfg.steps:
        return ckpts / f"step-{end}"
    return export(cfg, model, params, ema, rt, out, text)


def run_footage(cfg: FootageTrainConfig, out: Path, device: str | None = None, threads: int | None = None) -> Path:
    """One process, or this rank of a torchrun job: set up, train, leave the process group."""
    rt = setup(device, threads)
    out.mkdir(parents=True, exist_ok=True)
    if rt.main:
        (out / "run.toml").write_text(dump_toml({"footage": cfg}))  # what this run was, to run it again
    try:
        target = train_footage(cfg, rt, out)
    finally:
        rt.close()
    if rt.main:
        print(f"[footage] done -> {target}", flush=True)
    return target
