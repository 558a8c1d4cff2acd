"""Data parallelism with torch's own machinery, chosen by one setting: DDP (every rank holds the
weights; gradients all-reduced in buckets, overlapped with backward) or FSDP2 (`fully_shard` per
transformer block, then the root: weights, gradients and optimiser state sharded across ranks),
activation checkpointing per block, gradient accumulation without a needless all-reduce, and
sharded checkpoints (torch.distributed.checkpoint, written as safetensors) that load on any rank
count. One process runs the plain model through the same calls.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from ..atomic import write_atomic
from .common import Runtime

MODES = ("ddp", "fsdp")


@dataclass(frozen=True)
class ParallelConfig:
    mode: str = "ddp"  # "ddp" or "fsdp" (FSDP2) when there is more than one rank
    # Recompute each block's activations in backward instead of keeping them: less memory for
    # about a third more compute (measured by `bench train`).
    checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"parallel mode must be one of {', '.join(MODES)}, got {self.mode!r}")


def bf16_training(device: torch.device) -> bool:
    """bf16 mixed precision where the device computes it natively: a GPU whose capability says so
    (Ampere and later), a CPU with native bf16 (engine/precision.py); fp32 elsewhere."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    from ..precision import bf16_is_fast

    return bf16_is_fast(device)


def parallelize(
    model: torch.nn.Module,
    blocks: torch.nn.ModuleList,
    rt: Runtime,
    cfg: ParallelConfig,
    frozen_parts: tuple[torch.nn.Module, ...] = (),
):
    """`model` (already on rt.device, its frozen parts frozen) made ready to train on every rank.
    `blocks` are its repeated blocks (the DiT's): each is checkpointed and, under FSDP2, sharded on
    its own so only one block's full weights exist at a time; `frozen_parts` (text encoders whose
    outputs were stored) are sharded apart and never gathered. Returns the module to call."""
    if cfg.checkpointing:
        for i, block in enumerate(blocks):
            blocks[i] = checkpoint_wrapper(block)  # non-reentrant: works with DDP, FSDP2 and kwargs
    if rt.world == 1:
        return model
    if cfg.mode == "ddp":
        return DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    # Master weights and the optimiser stay fp32; under bf16 the gathered weights and the matmuls
    # are bf16 and gradients are reduced in fp32.
    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if bf16_training(rt.device)
        else None
    )
    kw = {"mp_policy": mp} if mp is not None else {}
    for block in blocks:
        fully_shard(block, **kw)
    for frozen in frozen_parts:  # never called in training: sharded apart, so never gathered
        fully_shard(frozen, **kw)
    fully_shard(model, **kw)
    return model


def sync_gradients(model: torch.nn.Module, sync: bool):
    """Around a micro-batch's backward: only the last one of an accumulated step all-reduces."""
    if isinstance(model, DistributedDataParallel):
        return nullcontext() if sync else model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(sync)
    return nullcontext()


def reshard(model: torch.nn.Module) -> None:
    """After forwards without backward (an evaluation): FSDP2 keeps the root's gathered weights
    for the backward that never comes, and a checkpoint would then see them instead of the
    shards the optimiser holds. Put every module back to its shards."""
    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def peak_memory_mb(device: torch.device) -> float:
    """A GPU's peak allocation by torch, or on a CPU this process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def memory_now_mb(device: torch.device) -> float:
    """What a GPU holds allocated now, or this process's resident memory now."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def plain_name(name: str) -> str:
    """A parameter's name as the plain module has it, whatever wraps it (DDP, checkpointing)."""
    return name.removeprefix("module.").replace("_checkpoint_wrapped_module.", "")


# -- sharded checkpoints: every rank writes its own shards; any rank count reads them --
_OPT = StateDictOptions(flatten_optimizer_state_dict=True)
# What does not train (the base under a LoRA, the text encoders) is the model folder's, as it was:
# a checkpoint holds only what changes, so a LoRA's is the adapter's size, not the model's.
_FROZEN_LEFT_OUT = StateDictOptions(ignore_frozen_params=True, strict=False)


def save_sharded(folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, extra: dict, meta: dict) -> None:
    """Weights, optimiser moments and `extra` tensors (the EMA) as safetensors shards, plus
    meta.json (the step). meta.json is written last, by rank 0 after every rank is done, so a
    kill mid-write leaves the previous checkpoint's meta pointing at complete shards of the
    previous folder (see `latest`)."""
    osd = get_optimizer_state_dict(model, opt, options=_OPT)
    state = {
        "model": get_model_state_dict(model, options=_FROZEN_LEFT_OUT),
        # The moments and step counts; the groups' settings (rates, betas) come from the config.
        "optim": {k: v for k, v in osd.items() if isinstance(v, torch.Tensor)},
        "extra": extra,
    }
    # The reader takes every shard in the folder: a save cut short before (perhaps by another rank
    # count) must leave none behind.
    if not dist.is_initialized() or dist.get_rank() == 0:
        shutil.rmtree(folder, ignore_errors=True)
    if dist.is_initialized():
        dist.barrier()
    with warnings.catch_warnings():  # one process saves alone, as meant: no "assuming" warning
        warnings.filterwarnings("ignore", "torch.distributed is disabled")
        dcp.save(state, storage_writer=dcp.HuggingFaceStorageWriter(str(folder), save_distributed=True))
    if dist.is_initialized():
        dist.barrier()
    if not dist.is_initialized() or dist.get_rank() == 0:
        write_atomic(folder / "meta.json", json.dumps(meta).encode())


def load_sharded(folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, extra: dict) -> dict:
    """The state save_sharded wrote, resharded to this run's ranks; `extra`'s tensors are filled in
    place. Returns its meta."""
    osd = get_optimizer_state_dict(model, opt, options=_OPT)  # initialises empty moments to load into
    state = {
        "model": get_model_state_dict(model, options=_FROZEN_LEFT_OUT),
        "optim": {k: v for k, v in osd.items() if isinstance(v, torch.Tensor)},
        "extra": extra,
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed is disabled")
        dcp.load(state, storage_reader=dcp.HuggingFaceStorageReader(str(folder)))
    set_model_state_dict(model, state["model"], options=_FROZEN_LEFT_OUT)
    set_optimizer_state_dict(model, opt, osd | state["optim"], options=_OPT)
    return json.loads((folder / "meta.json").read_text())


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint folder under `root` (step-N folders with a meta.json)."""
    done = [p for p in root.glob("step-*") if (p / "meta.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on the CPU, gathered from every rank's shards (all ranks call it)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
