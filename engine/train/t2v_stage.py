"""Stage 3: the text-to-video generator. A text-to-image warm-up on single frames, then joint
image + video training (buckets of equal latent shape, alternating), with flow matching on
latents of the frozen TAE and the pre-trained text encoder (its projections train here).

Resumable like the other generator stages (flow_loop.train_flow): the encoded clips and images
are cached in the run folder, the state (weights, EMA, optimiser) is written every
`checkpoint_every` steps, and every step's randomness is drawn from (seed, step, rank).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.generator import Generator, GeneratorConfig
from ..models.tae import TAE
from ..models.text import WordEncoder
from ..world.captions import free_caption
from ..world.scene import sample_scene
from .common import LoopConfig, Runtime, begin
from .flow_loop import StepBatch, data_key, encode_scenes, train_flow


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
    warmup: int = 50  # steps of linear learning-rate warm-up before the cosine
    drop_text: float = 0.1  # empty prompt, so classifier-free guidance has an unconditional model
    ema: float = 0.998
    checkpoint_every: int = 100  # resume state and a bf16 snapshot (run/<stage>-step<N>)
    seed: int = 2


def train_t2v(
    tcfg: T2VTrainConfig,
    gcfg: GeneratorConfig,
    tae: TAE,
    words: WordEncoder | None,
    rt: Runtime,
    run: Path,
    init: Generator | None = None,
    name: str = "t2v",
) -> Generator:
    """Train from scratch with the pre-trained word encoder `words`, or (init given) go on from a
    trained generator as a later stage with its own data, schedule and optimiser, as Movie Gen's
    stages do. `run` holds the data cache, the resume state and the snapshots; `name` is the
    stage's in logs and snapshots. Returns the EMA weights."""

    def build() -> Generator:
        model = Generator(gcfg)
        if init is not None:
            model.load_state_dict(init.state_dict())
        elif words is not None:
            model.text.word_encoder.load_state_dict(words.state_dict())
        model.text.word_encoder.requires_grad_(False)  # keep the parse it learned
        return model

    total = tcfg.image_steps + tcfg.joint_steps
    loop = LoopConfig(
        name, total, tcfg.lr, tcfg.warmup, tcfg.ema, tcfg.seed, tcfg.checkpoint_every, steps_key=f"{name}_steps"
    )
    tr = begin(loop, rt, run, build, ddp=True)
    model, net = tr.model, tr.forward  # net: through DDP under torchrun

    # The scenes come from one stream per rank, drawn in full before training (so the data is the
    # same whether a run is resumed or not); every step's own draws come from (seed, step, rank).
    rng = np.random.default_rng(tcfg.seed + 1000 * rt.rank)

    def n_objects() -> int | None:
        # None keeps sample_scene's own 50/50 draw (and its random stream) for the default share.
        return None if tcfg.two_objects == 0.5 else 1 + int(rng.random() < tcfg.two_objects)

    # Training combinations only: the evaluation's held-out ones are never seen.
    vid_scenes = [sample_scene(rng, n_objects()) for _ in range(tcfg.videos)]
    img_scenes = [sample_scene(rng, n_objects(), image=True) for _ in range(tcfg.images)]
    tae = tae.to(rt.device).eval()
    key = data_key([tcfg.videos, tcfg.images, tcfg.two_objects, tcfg.frames, tcfg.size, tcfg.seed], tae)
    t0 = time.perf_counter()
    vid = encode_scenes(
        tae, {"latents": vid_scenes}, tcfg.frames, tcfg.size, rt, run / f"data-{key}-videos.safetensors"
    )
    vid = vid["latents"]  # (N, Cz, t, h, w)
    img = None
    if img_scenes:
        img = encode_scenes(tae, {"latents": img_scenes}, 1, tcfg.size, rt, run / f"data-{key}-images.safetensors")
        img = img["latents"]  # (N, Cz, 1, h, w)
    if rt.main:
        print(
            f"[{name}] {len(vid)} clips {tuple(vid.shape[1:])} and {len(img_scenes)} images"
            f" ready in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )

    def batch(step: int, rng: np.random.Generator) -> StepBatch:
        image = step < tcfg.image_steps or (tcfg.image_every > 0 and step % tcfg.image_every == tcfg.image_every - 1)
        data, scenes, n = (img, img_scenes, tcfg.image_batch) if image else (vid, vid_scenes, tcfg.video_batch)
        idx = rng.integers(len(data), size=n)
        x1 = data[torch.from_numpy(idx).to(data.device)].float()
        prompts = ["" if rng.random() < tcfg.drop_text else free_caption(rng, scenes[i], image=image).text for i in idx]
        return "img" if image else "vid", x1, lambda xt, t: net(xt, t, **model.encode_prompts(prompts))

    return train_flow(tr, gcfg, batch)
