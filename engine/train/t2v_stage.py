"""Stage 3: the text-to-video generator. A text-to-image warm-up on single frames, then joint
image + video training (buckets of equal latent shape, alternating), with flow matching on
latents of the frozen TAE and the pre-trained text encoder (its projections train here).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..models.generator import Generator, GeneratorConfig
from ..models.tae import TAE
from ..models.text import WordEncoder
from ..sampling import interpolate, sample_times, target_velocity
from ..world.captions import free_caption
from ..world.data import render_many
from ..world.scene import Scene, sample_scene
from .common import Logger, Runtime, cosine_lr, optimizer_step, seed_all, set_lr, update_ema


@dataclass(frozen=True)
class T2VTrainConfig:
    videos: int = 3000
    images: int = 4000
    frames: int = 32
    size: int = 64
    image_steps: int = 300  # text-to-image warm-up
    joint_steps: int = 1800
    video_batch: int = 48
    image_batch: int = 128
    image_every: int = 4  # in the joint stage every n-th step is an image batch (0: videos only)
    two_objects: float = 0.5  # share of two-object scenes in the data
    lr: float = 6e-4
    drop_text: float = 0.1  # empty prompt, so classifier-free guidance has an unconditional model
    ema: float = 0.998
    seed: int = 2


@torch.no_grad()
def encode_dataset(tae: TAE, scenes: list[Scene], frames: int, size: int, rt: Runtime, batch: int = 16) -> torch.Tensor:
    """Render and encode scenes into normalised latents (N, Cz, t, h, w), stored as bf16 on the
    training device (3000 clips are 50 MB; the GPU holds 30000 without noticing)."""
    out = []
    chunk = max(batch, 64 * rt.workers)  # render many at once when processes help, encode in batches
    for c in range(0, len(scenes), chunk):
        pixels = render_many(scenes[c : c + chunk], size, frames, rt.workers)
        for i in range(0, len(pixels), batch):
            x = torch.from_numpy(pixels[i : i + batch]).to(rt.device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
            with rt.autocast():
                z = tae.encode(x)
            out.append(z.to(torch.bfloat16))
    return torch.cat(out)


def train_t2v(
    tcfg: T2VTrainConfig,
    gcfg: GeneratorConfig,
    tae: TAE,
    words: WordEncoder | None,
    rt: Runtime,
    init: Generator | None = None,
) -> Generator:
    """Train from scratch with the pre-trained word encoder `words`, or (init given) go on from a
    trained generator as a later stage with its own data, schedule and optimiser, as Movie Gen's
    stages do."""
    seed_all(tcfg.seed)
    model = Generator(gcfg).to(rt.device)
    if init is not None:
        model.load_state_dict(init.state_dict())
    elif words is not None:
        model.text.word_encoder.load_state_dict(words.state_dict())
    model.text.word_encoder.requires_grad_(False)  # keep the parse it learned
    rng = np.random.default_rng(tcfg.seed + 1000 * rt.rank)
    gen = torch.Generator().manual_seed(tcfg.seed + 1000 * rt.rank)

    def n_objects() -> int | None:
        # None keeps sample_scene's own 50/50 draw (and its random stream) for the default share.
        return None if tcfg.two_objects == 0.5 else 1 + int(rng.random() < tcfg.two_objects)

    # Training combinations only: the evaluation's held-out ones are never seen.
    vid_scenes = [sample_scene(rng, n_objects()) for _ in range(tcfg.videos)]
    img_scenes = [sample_scene(rng, n_objects(), image=True) for _ in range(tcfg.images)]
    tae = tae.to(rt.device).eval()
    vid = encode_dataset(tae, vid_scenes, tcfg.frames, tcfg.size, rt)
    img = encode_dataset(tae, img_scenes, 1, tcfg.size, rt, batch=64) if img_scenes else None
    if rt.main:
        print(f"[t2v] encoded {len(vid)} clips {tuple(vid.shape[1:])} and {len(img_scenes)} images", flush=True)

    ema = copy.deepcopy(model).eval().requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    total = tcfg.image_steps + tcfg.joint_steps
    log = Logger(rt, "t2v", total, every=25)
    for step in range(total):
        set_lr(opt, cosine_lr(step, total, tcfg.lr))
        image = step < tcfg.image_steps or (tcfg.image_every > 0 and step % tcfg.image_every == tcfg.image_every - 1)
        data, scenes, n = (img, img_scenes, tcfg.image_batch) if image else (vid, vid_scenes, tcfg.video_batch)
        idx = rng.integers(len(data), size=n)
        x1 = data[torch.from_numpy(idx).to(data.device)].float()
        prompts = ["" if rng.random() < tcfg.drop_text else free_caption(rng, scenes[i], image=image).text for i in idx]
        x0 = torch.randn(x1.shape, generator=gen).to(rt.device)
        t = sample_times(n, gen, rt.device)
        xt = interpolate(x0, x1, t)
        with rt.autocast():
            v = model(xt, t, **model.encode_prompts(prompts))
        loss = F.mse_loss(v.float(), target_velocity(x0, x1))
        optimizer_step(opt, params, loss, rt)
        update_ema(ema, model, step, tcfg.ema)
        log.log(step, **{"img" if image else "vid": loss})
    rt.check_in_sync(ema, "t2v")
    return ema
