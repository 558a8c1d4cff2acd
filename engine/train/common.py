"""What every training stage shares: seeding, one process or many (torchrun + DDP), logging, and
the start of a resumable stage (`begin`: model, EMA, optimiser, saved state, logger) with its data
made once and cached (`cached`).

Run a stage alone on the CPU, or unchanged under `torchrun --nproc-per-node N`: the launcher's
environment variables switch on data parallelism (NCCL on GPUs, Gloo on CPUs): every rank starts
from the same weights, draws different data, and averages gradients; rank 0 logs and saves.
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel

from ..atomic import atomic_path, write_atomic
from ..precision import bf16_is_fast


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    workers: int = 1  # processes for rendering training data

    @property
    def main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """bf16 autocast where the hardware runs it natively (GPUs, CPUs with avx512_bf16)."""
        if not bf16_is_fast(self.device):
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def average_gradients(self, params) -> None:
        """All-reduce gradients across ranks. Stages call their models' methods (encode_raw,
        decode_raw, encode_prompts) rather than one forward, so this replaces DDP's hooks."""
        if self.world == 1:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def barrier(self) -> None:
        """Wait for every rank: what rank 0 saves is read by all ranks only after it is written."""
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group once every rank is done. Without this, Gloo's threads can
        abort a rank as it exits ("terminate called without an active exception")."""
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def broadcast(self, t: torch.Tensor) -> torch.Tensor:
        """Rank 0's copy of `t` on every rank."""
        if self.world == 1:
            return t
        t = t.to(self.device).contiguous()
        dist.broadcast(t, 0)
        return t

    @torch.no_grad()
    def check_in_sync(self, model: torch.nn.Module, stage: str) -> None:
        """Ranks start from the same weights and apply the same averaged gradients, so they must end
        a stage holding the same weights and buffers (latent statistics, preview map); rank 0 saves
        what it holds, so a difference (a gradient not averaged, statistics fitted per rank) would
        silently train the ranks on different things. Fail loudly instead."""
        if self.world == 1:
            return
        tensors = [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]
        sums = torch.stack([t.detach().float().sum() for t in tensors]).to(self.device)
        lo, hi = sums.clone(), sums.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        worst = float((hi - lo).abs().max())
        if worst > 1e-6 * max(1.0, float(sums.abs().max())):
            raise RuntimeError(f"[{stage}] ranks hold different weights or statistics (max difference {worst:.3g})")


def setup(device: str | None = None, threads: int | None = None) -> Runtime:
    """One process, or a torchrun rank (WORLD_SIZE set) with NCCL on GPUs and Gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cpu" and threads:
        torch.set_num_threads(threads)
    # On a CPU the cores are busy training; beside a GPU they are free to render data.
    workers = 1 if dev.type == "cpu" else max(1, (os.cpu_count() or 1) // max(world, 1))
    return Runtime(device=dev, rank=rank, world=world, workers=workers)


def seed_all(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class Logger:
    """Prints a line every `every` steps with running means and elapsed time (rank 0 only)."""

    def __init__(self, rt: Runtime, name: str, total: int, every: int = 25):
        self.rt, self.name, self.total, self.every = rt, name, total, every
        self.start = time.perf_counter()
        self.sums: dict[str, list] = {}

    def log(self, step: int, **values: float | torch.Tensor) -> None:
        """Values may be 0-d tensors: they are read only when a line is printed, so a GPU is not
        made to wait for the host every step."""
        for k, v in values.items():
            self.sums.setdefault(k, []).append(v.detach() if isinstance(v, torch.Tensor) else v)
        if (step + 1) % self.every == 0 or step + 1 == self.total:
            means = " ".join(f"{k}={sum(float(x) for x in v) / len(v):.4g}" for k, v in self.sums.items())
            if self.rt.main:
                el = time.perf_counter() - self.start
                print(f"[{self.name}] step {step + 1}/{self.total} {means} ({el:.0f}s)", flush=True)
            self.sums = {}


def optimizer_step(
    opt: torch.optim.Optimizer, params: list, loss: torch.Tensor, rt: Runtime, synced: bool = False
) -> None:
    """Backward, gradients averaged over ranks (by DDP during backward where `synced`) and clipped
    to norm 1, one optimiser step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if not synced:
        rt.average_gradients(params)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """EMA of the weights, with a short warm-up so early steps are not averaged with the start."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - d)


def cosine_lr(step: int, total: int, peak: float, warmup: int = 50, floor: float = 0.05) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(total - warmup, 1)
    return peak * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * min(p, 1.0))))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Every group at `lr`, times the group's own `lr_mult` where it has one."""
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)


# -- resumable stages: weights, EMA and optimiser state as safetensors + JSON (never pickles) --
def _state_paths(folder: Path) -> tuple[Path, Path]:
    return folder / "state.safetensors", folder / "state.json"


def save_state(
    folder: Path, step: int, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer
) -> None:
    """Everything a resumed run needs, written atomically (a kill mid-write keeps the last one)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    steps = {}
    for i, st in opt.state_dict()["state"].items():
        tensors[f"opt.{i}.exp_avg"] = st["exp_avg"]
        tensors[f"opt.{i}.exp_avg_sq"] = st["exp_avg_sq"]
        steps[str(i)] = float(st["step"])
    ft, fj = _state_paths(folder)
    with atomic_path(ft) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    write_atomic(fj, json.dumps({"step": step, "opt_steps": steps}).encode())


def has_state(folder: Path) -> bool:
    """Whether `folder` holds a saved state to go on from."""
    return all(f.is_file() for f in _state_paths(folder))


def load_state(folder: Path, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    if not has_state(folder):
        return 0
    ft, fj = _state_paths(folder)
    t, meta = load_file(str(ft)), json.loads(fj.read_text())
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("ema.")})
    sd = opt.state_dict()
    dev = next(model.parameters()).device
    sd["state"] = {
        int(i): {
            "step": torch.tensor(s),
            "exp_avg": t[f"opt.{i}.exp_avg"].to(dev),
            "exp_avg_sq": t[f"opt.{i}.exp_avg_sq"].to(dev),
        }
        for i, s in meta["opt_steps"].items()
    }
    opt.load_state_dict(sd)
    return int(meta["step"])


def resume(folder: Path, model: torch.nn.Module, ema: torch.nn.Module, opt, rt: Runtime, name: str) -> int:
    """The step to start from: the saved state in `folder` if there is one (loaded), else 0."""
    start = load_state(folder, model, ema, opt)
    if rt.main and start:
        print(f"[{name}] resumed at step {start}", flush=True)
    return start


def step_rng(seed: int, step: int, rank: int, gen: torch.Generator) -> np.random.Generator:
    """Every step's randomness drawn from (seed, step, rank), NumPy's and `gen`'s: a resumed run
    draws what the uninterrupted one would have."""
    gen.manual_seed(seed * 100003 + step * 17 + rank)
    return np.random.default_rng([seed, step, rank])


# -- the start of every resumable stage --
@dataclass(frozen=True)
class LoopConfig:
    """A resumable stage's loop: its schedule, its seed and where it keeps its state."""

    name: str  # in logs, and snapshots are run/<name>-step<N>
    steps: int
    lr: float
    warmup: int
    ema: float  # the EMA's decay; 0: no EMA (the stage's result is the weights themselves)
    seed: int
    checkpoint_every: int
    resume_dir: str = "resume"  # inside the run folder
    steps_key: str = "steps"  # the step count's key in a snapshot's metadata
    # Where a run was first planned to end before it was resumed with more steps: up to there the
    # learning rate followed a cosine over `planned` steps, after it one over `steps` (see
    # stretched_lr). 0: one cosine over `steps`.
    planned: int = 0


def stretched_lr(step: int, loop: LoopConfig) -> float:
    """The learning rate at `step` of a run planned for `loop.planned` steps and then stretched to
    `loop.steps` (resumed at `planned` with the longer cosine, which restarts at its midpoint or
    so): one command reproduces the weights such a run shipped."""
    total = loop.planned if step < loop.planned < loop.steps else loop.steps
    return cosine_lr(step, total, loop.lr, warmup=loop.warmup)


M = TypeVar("M", bound=torch.nn.Module)


@dataclass
class Trainer(Generic[M]):
    """A resumable stage's model and what trains it, made by `begin` the same way for every stage."""

    loop: LoopConfig
    rt: Runtime
    run: Path  # the stage's folder: data cache, saved state, snapshots
    model: M
    ema: M  # frozen, in eval mode
    params: list[torch.nn.Parameter]  # the trainable ones, in the model's order (for clipping)
    opt: torch.optim.Optimizer
    start: int  # the step to go on from: 0, or the saved state's
    gen: torch.Generator  # torch's share of every step's randomness (see begin_step)
    log: Logger
    # What a stage's forward goes through: under torchrun, torch's DistributedDataParallel around
    # the model (gradients all-reduced in buckets as backward runs); else the model itself.
    net: torch.nn.Module | None = None

    @property
    def forward(self) -> torch.nn.Module:
        return self.net if self.net is not None else self.model

    def begin_step(self, step: int) -> np.random.Generator:
        """Begin `step`: its learning rate set, and its randomness (the returned NumPy generator and
        self.gen) drawn from (seed, step, rank), so a resumed run draws what an unbroken one would."""
        set_lr(self.opt, stretched_lr(step, self.loop))
        return step_rng(self.loop.seed, step, self.rt.rank, self.gen)

    def update(self, step: int, loss: torch.Tensor) -> None:
        """The optimiser step on `loss`, then the EMA (if the stage keeps one)."""
        optimizer_step(self.opt, self.params, loss, self.rt, synced=self.net is not None)
        if self.loop.ema:
            update_ema(self.ema, self.model, step, self.loop.ema)

    def due(self, step: int) -> bool:
        """Whether rank 0 saves after `step`: every `checkpoint_every` steps and at the end."""
        n = step + 1
        return self.rt.main and (n % self.loop.checkpoint_every == 0 or n == self.loop.steps)

    def save(self, step: int) -> None:
        """The state after `step`, which a run started again goes on from."""
        save_state(self.run / self.loop.resume_dir, step + 1, self.model, self.ema, self.opt)


def begin(
    loop: LoopConfig,
    rt: Runtime,
    run: Path,
    build: Callable[[], M],
    groups: Callable[[M], list[dict]] | None = None,
    ddp: bool = False,
) -> Trainer[M]:
    """What every resumable stage does first. `build()` makes the model under the stage's seed (so
    every rank starts from the same weights), with what stays frozen already frozen; it goes to the
    device with an EMA copy and AdamW over `groups(model)` (each {"params", "lr_mult"?}; default:
    every trainable parameter at the base rate), and the state a killed run left in
    run/<resume_dir> is loaded over them. ddp: the stage calls `Trainer.forward` for its forward
    (the generator stages), so under torchrun DDP reduces the gradients; the others' are averaged
    after backward (Runtime.average_gradients)."""
    seed_all(loop.seed)
    model = build().to(rt.device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        groups(model) if groups is not None else [{"params": params}],
        lr=loop.lr,
        weight_decay=0.0,
        betas=(0.9, 0.99),
    )
    start = resume(run / loop.resume_dir, model, ema, opt, rt, loop.name)
    log = Logger(rt, loop.name, loop.steps, every=25)
    net = None
    if ddp and rt.world > 1:
        # Stages compute parts of the conditioning (prompt tokens, a reference) with the model's
        # own methods before its forward; DDP's hooks are on every parameter, so those gradients
        # are reduced too. find_unused_parameters: a batch may leave a part unused (no source in
        # a plain T2V sample, no image batch's parts in a video step).
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    return Trainer(loop, rt, run, model, ema, params, opt, start, torch.Generator(), log, net)


def cached(
    path: Path | None, sizes: dict[str, int], make: Callable[[], dict[str, torch.Tensor]], rt: Runtime
) -> dict[str, torch.Tensor]:
    """Tensors made once: read from `path` when it holds each name in `sizes` with that many rows (a
    file of other sizes, or a damaged one, is a miss), else `make()` and written there atomically, so
    a kill leaves no half file. Ranks draw different data, so rank r > 0 keeps its own file beside
    rank 0's (`path` itself). None: always made, never written."""
    if path is not None and rt.rank:
        path = path.with_name(f"{path.stem}.rank{rt.rank}{path.suffix}")
    if path is not None and path.is_file():
        try:
            data = load_file(str(path))
        except Exception:  # noqa: BLE001 - a damaged cache is a miss: make it again
            data = {}
        if all(k in data and len(data[k]) == n for k, n in sizes.items()):
            return {k: data[k] for k in sizes}
    data = make()
    if path is not None:
        with atomic_path(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in data.items()}, str(tmp))
    return data
