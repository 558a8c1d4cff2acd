"""`python -m engine bench train --data LATENTS --model M`: training throughput (samples per
second after a warm-up) and peak memory per rank, for one rank and for several under torchrun,
with DDP and with FSDP2, with and without activation checkpointing, printed as one JSON object.
Each setting is a real run of the footage stage (footage_stage.py) on the encoded data, in a
process (or torchrun job) of its own, so one setting's memory does not colour the next."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from .footage_stage import FootageTrainConfig
from .parallel import ParallelConfig
from .run_config import dump_toml

WARMUP = 2  # steps left out of the timing (allocator, first-touch, FSDP2's lazy set-up)


def _run(cfg: FootageTrainConfig, ranks: int, out: Path, device: str, threads: int) -> dict:
    run = out / "run.toml"
    run.parent.mkdir(parents=True, exist_ok=True)
    run.write_text(dump_toml({"footage": cfg}))
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    train = ["-m", "engine", "train", "--config", str(run), "--out", str(out), "--device", device]
    train += ["--threads", str(threads)]
    if ranks > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", *train]
    else:
        cmd = [sys.executable, *train]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=3600)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    start = next(r for r in rows if "memory_start_mb" in r)
    timed = steps[WARMUP:]
    seconds = timed[-1]["seconds"] - steps[WARMUP - 1]["seconds"]
    return {
        "ranks": ranks,
        "mode": cfg.parallel.mode if ranks > 1 else "one process",
        "checkpointing": cfg.parallel.checkpointing,
        "samples_per_s": round(len(timed) * cfg.global_batch / seconds, 2),
        "step_s": round(seconds / len(timed), 3),
        # Rank 0's: the ranks hold equal shares. On a GPU, torch's peak allocation; on a CPU, the
        # process's peak resident memory, and its growth over what it held when training began.
        "peak_mb": round(steps[-1]["peak_mb"], 1),
        "training_peak_over_start_mb": round(steps[-1]["peak_mb"] - start["memory_start_mb"], 1),
    }


def bench_training(
    latents: str,
    model: str,
    *,
    ranks: tuple[int, ...] = (1, 2),
    modes: tuple[str, ...] = ("ddp", "fsdp"),
    checkpointing: tuple[bool, ...] = (False, True),
    steps: int = 8,
    global_batch: int = 16,
    micro_batch: int = 8,
    device: str = "cpu",
    threads: int = 1,
) -> dict:
    base = FootageTrainConfig(
        latents=latents, model=model, steps=steps, global_batch=global_batch, micro_batch=micro_batch,
        eval_every=10**9, checkpoint_every=10**9, holdout=0, warmup=1,
    )  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, mode, ckpt in itertools.product(ranks, modes, checkpointing):
            if n == 1 and mode != modes[0]:
                continue  # one process is the same whatever the mode
            cfg = replace(base, parallel=ParallelConfig(mode=mode, checkpointing=ckpt))
            rows.append(_run(cfg, n, Path(tmp) / f"{n}-{mode}-{ckpt}", device, threads))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {
        "device": device,
        "threads_per_rank": threads,
        "torch": torch.__version__,
        "global_batch": global_batch,
        "micro_batch": micro_batch,
        "steps_timed": steps - WARMUP,
        "runs": rows,
    }
