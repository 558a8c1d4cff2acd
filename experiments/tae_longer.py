"""Experiment (not part of the recipe): how far does more whole-TAE training on star-heavy two-object
clips take the autoencoder's round-trip ceiling at the shipped 8x8x16 latent grid?

    PYTHONPATH=. python experiments/tae_longer.py runs/tae_longer 6000

Continues the shipped TAE at a constant rate (fixed seeds) and measures a snapshot every 1500 steps:
stars next to another object read back as stars, two-object round trips fully satisfied, the 48
held-out prompts' ceiling, PSNR and outliers (README, "What still goes wrong"; 107 min on our CPU).
It decides the GPU plan: train longer if the figures keep climbing, a finer latent grid if they stall.
The snapshots keep the shipped latent statistics; the generator was not trained on them."""

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.checkpoint import config_from_dict, load_weights, read_config, save_component
from engine.eval.t2v import held_out_prompts
from engine.eval.tae import evaluate_tae, readable_after_roundtrip, roundtrip
from engine.models.tae import TAE, TAEConfig, outlier_penalty
from engine.train.common import Logger, Runtime, set_lr
from engine.train.tae_stage import DecoderTrainConfig, _with_hard_shapes, edge_loss, psnr
from engine.world.analyse import analyse, score
from engine.world.data import render_many, sample_windows
from engine.world.render import render
from engine.world.scene import sample_scene

SRC = Path("assets/models/shapes-v2/tae")
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/tae_longer")
STEPS, EVERY, LR = int(sys.argv[2]) if len(sys.argv) > 2 else 6000, 1500, 1.5e-4
torch.set_num_threads(2)
torch.manual_seed(0)


def load() -> TAE:
    return load_weights(SRC, TAE(config_from_dict(TAEConfig, read_config(SRC)["config"]))).eval()


PAIRS = [it.scene for it in held_out_prompts(0, 120)]
H48 = [it.scene for it in held_out_prompts()]
PAIR_CLIPS = [render(s, 64, 32) for s in PAIRS]
H48_CLIPS = [render(s, 64, 32) for s in H48]


@torch.no_grad()
def measure(tae: TAE) -> dict:
    tae.eval()
    sat, stars = [], []
    for clip, scene in zip(PAIR_CLIPS, PAIRS, strict=True):
        a = analyse(roundtrip(tae, clip))
        sat.append(score(a, scene).satisfied)
        got = {o.color: o.shape for o in a.objects}
        stars += [got.get(o.color) == "star" for o in scene.objects if o.shape == "star"]
    h48 = readable_after_roundtrip(tae, H48_CLIPS, H48)
    t = evaluate_tae(tae)
    return {
        "pairs_satisfied": np.mean(sat),
        "stars_in_pairs": np.mean(stars),
        "n_stars": len(stars),
        "h48_shape": h48["roundtrip_shape_readable"],
        "h48_satisfied": h48["roundtrip_satisfied"],
        "psnr_32f": t["psnr_32f"],
        "psnr_1f": t["psnr_1f"],
        "outliers": t["outliers_32f"],
    }


def main() -> None:
    tae = load()
    t0 = time.perf_counter()
    print(
        "[base]",
        {k: round(float(v), 4) for k, v in measure(tae).items()},
        f"({time.perf_counter() - t0:.0f}s)",
        flush=True,
    )
    rng = np.random.default_rng(7)
    hard = DecoderTrainConfig(hard_share=0.5)
    scenes = [
        _with_hard_shapes(rng, sample_scene(rng, n_objects=2 if rng.random() < 0.8 else 1, held_out=None), hard)
        for _ in range(3000)
    ]
    pool = render_many(scenes, 64, 32)
    rt = Runtime(device=torch.device("cpu"))
    params = list(tae.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, betas=(0.9, 0.99))
    log = Logger(rt, "polish", STEPS, every=100)
    tae.train()
    for step in range(STEPS):
        set_lr(opt, LR * min(1.0, (step + 1) / 50))
        image = step % 4 == 3
        x = sample_windows(rng, pool, 16 if image else 8, 1 if image else 8)
        with rt.autocast():
            z = tae.encode_raw(x)
            y = tae.decode_raw(z, x.shape[2])
        y, z = y.float(), z.float()
        rec = F.l1_loss(y, x) + F.mse_loss(y, x)
        opl = outlier_penalty(z)
        loss = rec + 0.5 * edge_loss(y, x) + 1e-5 * z.square().mean() + 0.1 * opl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        log.log(step, rec=rec.item(), psnr=psnr(y.detach(), x), opl=opl.item())
        if (step + 1) % EVERY == 0 or step + 1 == STEPS:
            m = measure(tae)
            print(
                f"[snap {step + 1}]",
                {k: round(float(v), 4) for k, v in m.items()},
                f"({time.perf_counter() - t0:.0f}s)",
                flush=True,
            )
            save_component(OUT / f"step{step + 1}", "tae", tae.cfg, tae)
            tae.train()


if __name__ == "__main__":
    main()
