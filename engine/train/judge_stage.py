"""The judge stage: teach a small transformer to read TAE latents back into their scene.

Data are training combinations only (held-out ones stay unseen, as for the generator), rendered,
encoded by the frozen TAE, then noised along the flow path to a random time t, so the judge reads
part-way samples too. Labels come from the scene: background colour; per palette colour, whether
an object of that colour is there, its shape and (clips only) its motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..models.judge import Judge, JudgeConfig, Reading
from ..models.tae import TAE
from ..sampling import interpolate
from ..world.palette import COLOR_NAMES, MOTIONS, SHAPES
from ..world.scene import Scene, sample_scene
from .common import Logger, Runtime, cosine_lr, seed_all, set_lr
from .t2v_stage import encode_dataset

IGNORE = -100


@dataclass(frozen=True)
class JudgeTrainConfig:
    videos: int = 3000
    images: int = 1000
    frames: int = 32
    size: int = 64
    two_objects: float = 0.6
    steps: int = 3000
    batch: int = 64
    image_every: int = 5  # every n-th step is an image batch (0: videos only)
    lr: float = 1e-3
    clean: float = 0.3  # share of a batch at t = 1; the rest at t ~ U(t_min, 1)
    t_min: float = 0.2
    seed: int = 6
    eval_clips: int = 200  # held-out clips the recipe measures the judge on


def scene_labels(scene: Scene, image: bool) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(background, present (colors,), shape (colors,), motion (colors,)) with IGNORE where unknown."""
    n = len(COLOR_NAMES)
    present = np.zeros(n, np.float32)
    shape = np.full(n, IGNORE, np.int64)
    motion = np.full(n, IGNORE, np.int64)
    for o in scene.objects:
        k = COLOR_NAMES.index(o.color)
        present[k] = 1.0
        shape[k] = SHAPES.index(o.shape)
        if not image:
            motion[k] = MOTIONS.index(o.motion)
    return COLOR_NAMES.index(scene.background), present, shape, motion


def label_tensors(scenes: list[Scene], image: bool, device: torch.device) -> dict[str, torch.Tensor]:
    rows = [scene_labels(s, image) for s in scenes]
    return {
        "background": torch.tensor([r[0] for r in rows], device=device),
        "present": torch.from_numpy(np.stack([r[1] for r in rows])).to(device),
        "shape": torch.from_numpy(np.stack([r[2] for r in rows])).to(device),
        "motion": torch.from_numpy(np.stack([r[3] for r in rows])).to(device),
    }


def judge_loss(r: Reading, y: dict[str, torch.Tensor]) -> torch.Tensor:
    loss = F.cross_entropy(r.background.float(), y["background"])
    loss = loss + F.binary_cross_entropy_with_logits(r.present.float(), y["present"])
    for name in ("shape", "motion"):
        target = y[name].flatten()
        if (target != IGNORE).any():  # images have no motion: an all-ignored mean would be 0/0
            loss = loss + F.cross_entropy(getattr(r, name).float().flatten(0, 1), target, ignore_index=IGNORE)
    return loss


def train_judge(tcfg: JudgeTrainConfig, jcfg: JudgeConfig, tae: TAE, rt: Runtime) -> Judge:
    seed_all(tcfg.seed)
    model = Judge(jcfg).to(rt.device)
    rng = np.random.default_rng(tcfg.seed + 1000 * rt.rank)
    gen = torch.Generator().manual_seed(tcfg.seed + 1000 * rt.rank)

    def n_objects() -> int:
        return 1 + int(rng.random() < tcfg.two_objects)

    vid_scenes = [sample_scene(rng, n_objects()) for _ in range(tcfg.videos)]
    img_scenes = [sample_scene(rng, n_objects(), image=True) for _ in range(tcfg.images)]
    tae = tae.to(rt.device).eval()
    data = {
        False: (
            encode_dataset(tae, vid_scenes, tcfg.frames, tcfg.size, rt),
            label_tensors(vid_scenes, False, rt.device),
        )
    }
    if img_scenes:
        data[True] = (
            encode_dataset(tae, img_scenes, 1, tcfg.size, rt, batch=64),
            label_tensors(img_scenes, True, rt.device),
        )
    if rt.main:
        print(f"[judge] encoded {tcfg.videos} clips and {tcfg.images} images", flush=True)

    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=0.01, betas=(0.9, 0.99))
    log = Logger(rt, "judge", tcfg.steps, every=100)
    for step in range(tcfg.steps):
        set_lr(opt, cosine_lr(step, tcfg.steps, tcfg.lr))
        image = bool(img_scenes) and tcfg.image_every > 0 and step % tcfg.image_every == tcfg.image_every - 1
        x1_all, y_all = data[image]
        idx = torch.from_numpy(rng.integers(len(x1_all), size=tcfg.batch)).to(rt.device)
        x1 = x1_all[idx].float()
        t = tcfg.t_min + (1 - tcfg.t_min) * torch.rand(tcfg.batch, generator=gen)
        t = torch.where(torch.rand(tcfg.batch, generator=gen) < tcfg.clean, torch.ones_like(t), t).to(rt.device)
        xt = interpolate(torch.randn(x1.shape, generator=gen).to(rt.device), x1, t)
        with rt.autocast():
            r = model(xt, t)
        loss = judge_loss(r, {k: v[idx] for k, v in y_all.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        rt.average_gradients(params)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        log.log(step, **{"img" if image else "vid": loss})
    rt.check_in_sync(model, "judge")
    return model.eval()


@torch.no_grad()
def judge_accuracy(judge: Judge, tae: TAE, n: int = 200, seed: int = 778, size: int = 64, frames: int = 32) -> dict:
    """Fraction of fresh held-out clips (half with two objects; combinations neither the judge nor
    the generator trained on) whose TAE latents the judge reads exactly: background, which
    colours are there, and each one's shape and motion."""
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, 1 + k % 2, held_out=True) for k in range(n)]
    dev = next(judge.parameters()).device
    rt = Runtime(device=dev)
    z = encode_dataset(tae.to(dev).eval(), scenes, frames, size, rt).float()
    r = judge(z, torch.ones(len(z), device=dev))
    y = label_tensors(scenes, False, dev)
    present = r.present > 0
    on = y["present"].bool()
    exact = (
        (r.background.argmax(-1) == y["background"])
        & (present == on).all(-1)
        & ((r.shape.argmax(-1) == y["shape"]) | ~on).all(-1)
        & ((r.motion.argmax(-1) == y["motion"]) | ~on).all(-1)
    )
    return {"judge_exact_held_out": round(float(exact.float().mean()), 4)}
