"""Instruction editing (docs/system.md section 5, Movie Gen Edit at our scale), grown from the T2V
generator. The source reaches it as every condition does (docs/conditioning.md): its latents'
tokens in the sequence at the target's own positions (`condition = "sequence"`); the design before
(`"channels"`, older checkpoints) concatenated them to the noisy latents on channels through
zero-initialised weights. A learned task embedding is added to the time embedding and read as
extra context tokens, and the instruction goes through the text encoder.

Movie Gen's stages, adapted to a world that renders exact video pairs: (I) image edits (1-frame
clips) multitasked with text-to-image (blank source), then (II) video edit pairs, every n-th step
still an image batch, with plain text-to-video mixed in. The instruction and the source are
dropped now and then so the three terms of two-scale guidance exist (InstructPix2Pix).

Resumable: the encoded pairs are cached in the run folder, and a checkpoint with the optimiser
state (safetensors + JSON, never pickles) is written every `checkpoint_every` steps; every step's
randomness is drawn from (seed, step), so a resumed run draws what the uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.generator import Generator, GeneratorConfig
from ..models.tae import TAE
from ..world.captions import free_caption
from ..world.edits import EDIT_TASKS, TASKS, EditPair, free_instruction, sample_edit
from ..world.scene import sample_scene
from .common import LoopConfig, Runtime, begin
from .flow_loop import StepBatch, data_key, encode_scenes, grown_groups, train_flow


@dataclass(frozen=True)
class EditTrainConfig:
    video_sources: int = 800
    video_edits: int = 3  # edits per video source (distinct tasks where possible)
    image_sources: int = 2000
    image_edits: int = 2
    frames: int = 32
    size: int = 64
    image_steps: int = 200  # stage I: image edits only
    steps: int = 6600  # in all, stage I included
    planned: int = 0  # where the run was first planned to end before it was resumed longer (LoopConfig)
    video_batch: int = 16
    image_batch: int = 64
    image_every: int = 4  # in stage II every n-th step is an image batch
    t2v_share: float = 0.15  # samples that are plain generation: blank source, caption, task "generate"
    free_share: float = 0.6  # instructions in a free phrasing (the rest canonical)
    drop_instruction: float = 0.1  # source kept, instruction empty, task "generate": v(source)
    drop_both: float = 0.05  # blank source, empty instruction: v(none)
    # Identity samples: the source in, an empty instruction, and the source itself as the target,
    # so v(source) learns to copy and every pixel of the sample teaches the source pathway (the
    # edit pairs teach copying only on the pixels an edit leaves alone). From step `keep_from`:
    # the shipped run added them when it was resumed at step 4600 (23% -> 29% of edits followed).
    keep_share: float = 0.1
    keep_from: int = 4600
    lr: float = 3e-4
    # The new inputs start at zero and must grow from nothing while the rest only adapts: at the base
    # rate the source's embedding reached 1/15 of the latent's in 800 steps and the model still
    # drew objects where T2V would, not where the source had them.
    new_lr_mult: float = 10.0
    warmup: int = 50
    ema: float = 0.995
    checkpoint_every: int = 100
    seed: int = 7
    # How the source reaches the generator (docs/conditioning.md): its tokens in the sequence
    # ("sequence"), or Movie Gen's zero-initialised extra channels ("channels", the design before).
    condition: str = "sequence"


def grow_for_editing(t2v: Generator, cfg: GeneratorConfig) -> Generator:
    """A generator with the edit inputs (the source in the sequence, or on extra channels; a task
    embedding), holding the T2V weights; the task embedding starts at zero."""
    model = Generator(cfg)
    missing, unexpected = model.load_state_dict(t2v.state_dict(), strict=False)
    new = [k for k in missing if not (k.startswith(NEW_PARTS) or k.endswith(".place_bias"))]
    assert not unexpected and not new, (missing, unexpected)
    return model


NEW_PARTS = ("dit.cond_embed.", "dit.task_embed.", "dit.task_tokens.", "dit.markers")  # what editing adds to T2V


def _sample_pairs(rng: np.random.Generator, n_sources: int, per_source: int, image: bool) -> tuple[list, list]:
    """Sources from training combinations and up to `per_source` edits of each, of distinct tasks."""
    sources, pairs = [], []
    for _ in range(n_sources):
        scene = sample_scene(rng, image=image)
        got = []
        for task in rng.permutation(len(EDIT_TASKS)):
            pair = sample_edit(rng, scene, EDIT_TASKS[task], image=image)
            if pair is not None:
                got.append(pair)
            if len(got) == per_source:
                break
        sources.append(scene)
        pairs += [(len(sources) - 1, p) for p in got]
    return sources, pairs


class EditData:
    """Encoded sources and targets of one kind (videos or images), with their pairs."""

    def __init__(self, sources: list, pairs: list[tuple[int, EditPair]], src: torch.Tensor, tgt: torch.Tensor):
        self.sources, self.pairs, self.src, self.tgt = sources, pairs, src, tgt

    @classmethod
    def build(cls, tcfg: EditTrainConfig, tae: TAE, rt: Runtime, image: bool, cache: Path | None) -> EditData:
        rng = np.random.default_rng([tcfg.seed, int(image), rt.rank])
        n, k = (tcfg.image_sources, tcfg.image_edits) if image else (tcfg.video_sources, tcfg.video_edits)
        frames = 1 if image else tcfg.frames
        sources, pairs = _sample_pairs(rng, n, k, image)
        z = encode_scenes(tae, {"src": sources, "tgt": [p.target for _, p in pairs]}, frames, tcfg.size, rt, cache)
        return cls(sources, pairs, z["src"], z["tgt"])


def make_batch(
    tcfg: EditTrainConfig,
    data: EditData,
    rng: np.random.Generator,
    n: int,
    image: bool,
    device: torch.device,
    keep: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
    """(x1 target latents, source latents (zeros where blank), whether each has its source,
    texts, task ids) for one step; a share `keep` of the samples are identity ones (the source
    is the target)."""
    idx = rng.integers(len(data.pairs), size=n)
    x1, cond, texts, tasks = [], [], [], []
    for i in idx:
        s, pair = data.pairs[i]
        r = rng.random()
        if r < tcfg.t2v_share:  # plain generation of the source or the target scene
            use_target = rng.random() < 0.5
            scene = pair.target if use_target else pair.source
            x1.append(data.tgt[i] if use_target else data.src[s])
            cond.append(torch.zeros_like(data.src[s]))
            texts.append("" if rng.random() < 0.1 else free_caption(rng, scene, image=image).text)
            tasks.append(0)
            continue
        if keep and rng.random() < keep:  # identity: nothing asked, nothing changes
            x1.append(data.src[s])
            cond.append(data.src[s])
            texts.append("")
            tasks.append(0)
            continue
        x1.append(data.tgt[i])
        r = rng.random()
        if r < tcfg.drop_both:
            cond.append(torch.zeros_like(data.src[s]))
            texts.append("")
            tasks.append(0)
        elif r < tcfg.drop_both + tcfg.drop_instruction:
            cond.append(data.src[s])
            texts.append("")
            tasks.append(0)
        else:
            cond.append(data.src[s])
            free = rng.random() < tcfg.free_share
            texts.append(free_instruction(rng, pair, image=image) if free else pair.instruction)
            tasks.append(TASKS.index(pair.edit.task))
    x1_t = torch.stack(x1).float().to(device)
    cond_t = torch.stack(cond).float().to(device)
    given = cond_t.flatten(1).abs().amax(1) > 0  # a blank source is all zeros
    return x1_t, cond_t, given, texts, torch.tensor(tasks, device=device)


def train_edit(
    tcfg: EditTrainConfig, gcfg: GeneratorConfig, tae: TAE, t2v: Generator, rt: Runtime, run: Path
) -> Generator:
    """Grow `t2v` into the edit model and train it; `run` holds the data cache and resume state.
    Returns the EMA weights."""

    def build() -> Generator:
        model = grow_for_editing(t2v, gcfg)
        model.text.word_encoder.requires_grad_(False)  # keep the parse it learned
        return model

    loop = LoopConfig(
        "edit",
        tcfg.steps,
        tcfg.lr,
        tcfg.warmup,
        tcfg.ema,
        tcfg.seed,
        tcfg.checkpoint_every,
        steps_key="edit_steps",
        planned=tcfg.planned,
    )
    tr = begin(loop, rt, run, build, lambda m: grown_groups(m, NEW_PARTS, tcfg.new_lr_mult), ddp=True)
    model, net = tr.model, tr.forward  # net: through DDP under torchrun
    tae = tae.to(rt.device).eval()
    # What the pairs are drawn from, and the frames and size they are rendered at.
    fields = {k: v for k, v in dataclasses.asdict(tcfg).items() if "source" in k or "edits" in k or k in ("seed",)}
    key = data_key([fields, tcfg.frames, tcfg.size], tae)
    t0 = time.perf_counter()
    img = EditData.build(tcfg, tae, rt, True, run / f"data-{key}-images.safetensors")
    vid = EditData.build(tcfg, tae, rt, False, run / f"data-{key}-videos.safetensors")
    if rt.main:
        print(
            f"[edit] {len(vid.pairs)} video pairs of {len(vid.sources)} sources, {len(img.pairs)} image pairs"
            f" ready in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )

    def batch(step: int, rng: np.random.Generator) -> StepBatch:
        image = step < tcfg.image_steps or (tcfg.image_every > 0 and step % tcfg.image_every == tcfg.image_every - 1)
        data, n = (img, tcfg.image_batch) if image else (vid, tcfg.video_batch)
        keep = tcfg.keep_share if step >= tcfg.keep_from else 0.0
        x1, src, given, texts, tasks = make_batch(tcfg, data, rng, n, image, rt.device, keep)
        source = {"source": src, "source_keep": given} if tcfg.condition == "sequence" else {"cond": src}
        return (
            "img" if image else "vid",
            x1,
            lambda xt, t: net(xt, t, task=tasks, **source, **model.encode_prompts(texts)),
        )

    return train_flow(tr, gcfg, batch)
