"""Personalized generation (docs/system.md section 4, Movie Gen PT2V at our scale), grown from the T2V
generator. The reference reaches it as every condition does (docs/conditioning.md): the prepared
picture's TAE latents in the sequence, at a place of their own (`condition = "sequence"`). The
design before (`"encoder"`, older checkpoints): a vision encoder reads the picture, Linear +
LayerNorm project its tokens to the backbone's width, and they join the prompt's text tokens in the
same cross-attention. The DiT starts from the T2V weights, the word encoder stays frozen.

Training pairs, as Movie Gen's: first the reference comes from the same clip (the character on
that clip's background), which is easy and teaches identity (and copy-paste); then mostly from
another clip of the same character: another background, drawn at another size and place on a
canvas of another size, sometimes as a JPEG, and prepared by engine/reference.py exactly as the
engine prepares uploads, so the model must follow the prompt instead of pasting the reference.
Characters with docs/world.md's held-out colour pairs are never drawn. The prompt and the reference are
dropped now and then so both guidance scales (prompt, reference) have their terms.

Resumable like the edit stage: the encoded data cached in the run folder, a checkpoint with the
optimiser state every `checkpoint_every` steps, every step's randomness from (seed, step).
"""

from __future__ import annotations

import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..models.generator import Generator, GeneratorConfig
from ..models.tae import TAE
from ..reference_image import ReferenceImageError, prepare_reference_array
from ..world.characters import (
    REFERENCE_R,
    Character,
    character_prompt,
    other_background,
    sample_character,
    sample_character_scene,
)
from ..world.render import render_reference
from .common import LoopConfig, Runtime, begin, cached
from .flow_loop import StepBatch, data_key, encode_scenes, grown_groups, train_flow


@dataclass(frozen=True)
class PersonalizeTrainConfig:
    videos: int = 1200  # character clips of `frames` frames
    images: int = 2400  # single frames (a still character): identity is learned fastest on these
    frames: int = 32
    size: int = 64
    steps: int = 4000
    # The shipped run was planned for 2000 steps, measured there (README), then resumed to 4000
    # with the longer schedule (FlowLoop.planned).
    planned: int = 2000
    same_until: int = 500  # up to here most references come from the same clip
    same_share_early: float = 0.8
    same_share_late: float = 0.2
    video_batch: int = 16
    image_batch: int = 64
    image_every: int = 2  # every n-th step is an image batch
    free_share: float = 0.7  # free phrasings ("it is sliding left over a teal backdrop")
    drop_prompt: float = 0.1  # reference kept, prompt empty: v(reference)
    drop_both: float = 0.05  # neither: v(nothing)
    drop_reference: float = 0.05  # prompt only
    lr: float = 3e-4
    new_lr_mult: float = 3.0  # the vision encoder and its projection start from nothing
    warmup: int = 50
    ema: float = 0.995
    checkpoint_every: int = 100
    seed: int = 13
    # How the reference reaches the generator (docs/conditioning.md): its TAE latents' tokens in
    # the sequence ("sequence"), or Movie Gen's vision encoder read by cross-attention ("encoder").
    condition: str = "sequence"


NEW_PARTS = ("reference.", "reference_proj.", "dit.markers")  # what personalization adds to T2V


def grow_for_personalization(t2v: Generator, cfg: GeneratorConfig) -> Generator:
    """A generator with a vision encoder (cfg.reference), holding the T2V weights."""
    model = Generator(cfg)
    missing, unexpected = model.load_state_dict(t2v.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(NEW_PARTS) for k in missing), (missing, unexpected)
    return model


def cross_reference(rng: np.random.Generator, ch: Character, avoid: str, size: int) -> np.ndarray:
    """The character as a user might upload it: on another background, at another size and place
    on a canvas of another size, sometimes a JPEG; prepared as the engine prepares uploads."""
    while True:  # a draw the preparation refuses (a JPEG's ringing at the edge) is drawn again
        background = other_background(rng, ch, (avoid,))
        canvas = int(rng.integers(48, 161))
        r = float(rng.uniform(0.12, 0.42))
        cx, cy = rng.uniform(r + 0.05, 1 - r - 0.05, size=2)
        img = render_reference(ch.object(), background, canvas, float(cx), float(cy), r)
        if rng.random() < 0.5:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "JPEG", quality=int(rng.integers(50, 96)))
            img = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        try:
            return prepare_reference_array(img, size).image
        except ReferenceImageError:
            continue


@torch.no_grad()
def encode_images(tae: TAE, images: np.ndarray, rt: Runtime, batch: int = 64) -> torch.Tensor:
    """Pictures (N, S, S, 3) uint8 -> 1-frame normalised latents (N, Cz, 1, S/8, S/8), bf16."""
    out = []
    for i in range(0, len(images), batch):
        x = _pixels(images[i : i + batch], rt.device)[:, :, None]  # (B, 3, 1, S, S)
        with rt.autocast():
            out.append(tae.encode(x).to(torch.bfloat16))
    return torch.cat(out)


class PersonalizeData:
    """Encoded character clips (or stills) with their characters, scenes and two references each:
    from the same clip (its background) and from another clip; as pixels, and (for a model that
    reads them in the sequence) as TAE latents."""

    def __init__(self, chars, scenes, latents, same, cross, same_z=None, cross_z=None):
        self.chars, self.scenes, self.latents, self.same, self.cross = chars, scenes, latents, same, cross
        self.same_z, self.cross_z = same_z, cross_z

    @classmethod
    def build(cls, tcfg: PersonalizeTrainConfig, tae: TAE, rt: Runtime, image: bool, cache: Path | None):
        rng = np.random.default_rng([tcfg.seed, int(image), rt.rank])
        n = tcfg.images if image else tcfg.videos
        chars = [sample_character(rng, held_out=False) for _ in range(n)]
        scenes = [sample_character_scene(rng, ch, "still" if image else None) for ch in chars]
        cross = np.stack(
            [cross_reference(rng, ch, s.background, tcfg.size) for ch, s in zip(chars, scenes, strict=True)]
        )
        same = np.stack(
            [
                prepare_reference_array(ch.reference(s.background, 128), tcfg.size).image
                for ch, s in zip(chars, scenes, strict=True)
            ]
        )
        latents = encode_scenes(tae, {"latents": scenes}, 1 if image else tcfg.frames, tcfg.size, rt, cache)
        if tcfg.condition != "sequence":
            return cls(chars, scenes, latents["latents"], same, cross)
        refs_cache = cache.with_name(cache.stem + "-references" + cache.suffix) if cache is not None else None
        refs = cached(
            refs_cache,
            {"same": n, "cross": n},
            lambda: {"same": encode_images(tae, same, rt), "cross": encode_images(tae, cross, rt)},
            rt,
        )
        z = {k: v.to(rt.device) for k, v in refs.items()}
        return cls(chars, scenes, latents["latents"], same, cross, z["same"], z["cross"])


def _pixels(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(device)


def make_batch(
    tcfg: PersonalizeTrainConfig,
    data: PersonalizeData,
    rng: np.random.Generator,
    n: int,
    step: int,
    image: bool,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """(x1 latents, references (pixels, or latents where the data has them), keep-reference
    flags, prompts) for one step."""
    idx = rng.integers(len(data.chars), size=n)
    same_share = tcfg.same_share_early if step < tcfg.same_until else tcfg.same_share_late
    refs, keep, texts = [], [], []
    for i in idx:
        scene = data.scenes[i]
        same = rng.random() < same_share
        if data.same_z is not None:
            refs.append((data.same_z if same else data.cross_z)[i])
        else:
            refs.append(data.same[i] if same else data.cross[i])
        motion = scene.objects[0].motion
        # A still's prompt names no motion, as image prompts do.
        free = rng.random() < tcfg.free_share
        text = character_prompt(rng, None if image else motion, scene.background, free=free)
        r = rng.random()
        if r < tcfg.drop_both:
            keep.append(False)
            texts.append("")
        elif r < tcfg.drop_both + tcfg.drop_prompt:
            keep.append(True)
            texts.append("")
        elif r < tcfg.drop_both + tcfg.drop_prompt + tcfg.drop_reference:
            keep.append(False)
            texts.append(text)
        else:
            keep.append(True)
            texts.append(text)
    x1 = data.latents[torch.from_numpy(idx).to(data.latents.device)].float().to(device)
    ref = torch.stack(refs).float().to(device) if data.same_z is not None else _pixels(np.stack(refs), device)
    return x1, ref, torch.tensor(keep, device=device), texts


def train_personalize(
    tcfg: PersonalizeTrainConfig, gcfg: GeneratorConfig, tae: TAE, t2v: Generator, rt: Runtime, run: Path
) -> Generator:
    """Grow `t2v` into the PT2V model and train it; `run` holds the data cache and resume state.
    Returns the EMA weights."""

    def build() -> Generator:
        model = grow_for_personalization(t2v, gcfg)
        model.text.word_encoder.requires_grad_(False)  # keep the parse it learned (stored once, in t2v)
        return model

    loop = LoopConfig(
        "pt2v",
        tcfg.steps,
        tcfg.lr,
        tcfg.warmup,
        tcfg.ema,
        tcfg.seed,
        tcfg.checkpoint_every,
        steps_key="pt2v_steps",
        planned=tcfg.planned,
    )
    tr = begin(loop, rt, run, build, lambda m: grown_groups(m, NEW_PARTS, tcfg.new_lr_mult), ddp=True)
    model, net = tr.model, tr.forward  # net: through DDP under torchrun
    tae = tae.to(rt.device).eval()
    key = data_key([tcfg.videos, tcfg.images, tcfg.frames, tcfg.size, tcfg.seed, REFERENCE_R], tae)
    t0 = time.perf_counter()
    img = PersonalizeData.build(tcfg, tae, rt, True, run / f"data-{key}-images.safetensors")
    vid = PersonalizeData.build(tcfg, tae, rt, False, run / f"data-{key}-videos.safetensors")
    if rt.main:
        print(
            f"[pt2v] {len(vid.chars)} clips, {len(img.chars)} stills ready in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )

    def batch(step: int, rng: np.random.Generator) -> StepBatch:
        image = tcfg.image_every > 0 and step % tcfg.image_every == tcfg.image_every - 1
        data, n = (img, tcfg.image_batch) if image else (vid, tcfg.video_batch)
        x1, ref, keep, texts = make_batch(tcfg, data, rng, n, step, image, rt.device)

        def velocity(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            ctx = model.encode_prompts(texts)
            if tcfg.condition == "sequence":
                return net(xt, t, reference=ref, reference_keep=keep, **ctx)
            return net(xt, t, **model.with_reference(ctx, ref, keep))

        return "img" if image else "vid", x1, velocity

    return train_flow(tr, gcfg, batch)


def personalize_generator_config(gcfg: GeneratorConfig, rcfg, condition: str = "sequence") -> GeneratorConfig:
    """The T2V generator that reads a reference: its latents in the sequence (a marker for
    them), or through a vision encoder."""
    if condition == "sequence":
        return dataclasses.replace(gcfg, dit=dataclasses.replace(gcfg.dit, context_kinds=2))
    return dataclasses.replace(gcfg, reference=rcfg)
