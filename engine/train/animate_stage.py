"""The animation model (Emu Video's image-to-video, extension and interpolation with one generator,
docs/conditioning.md), grown from the T2V generator: given frames in the sequence, each clean at
its own latent time and phase. One model learns the four uses from world clips drawn per sample:

- image-to-video: frame 0 given as a picture (and, a share of the time, frame 31 too);
- extension: the first 4 or 8 frames given as whole latent frames (encoded alone, as a source's
  last frames are, or the clip's own, as a window's are when the one before made them), the rest
  moving as the caption says from where they end;
- interpolation: every K-th frame of a clip K times slower given as pictures;
- text-to-video: nothing given (and for guidance, the caption dropped too).

Clips start from random states (objects anywhere, any size), not only the world's canonical paths,
since the pictures users give and the clips they continue put objects anywhere. The loss is on
the clip's own tokens. Resumable like every flow stage (flow_loop): the encoded data is cached in
the run folder and each step's draw comes from (seed, step)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import frozen_prefixes
from ..models.generator import Generator, GeneratorConfig
from ..models.tae import TAE
from ..world.captions import canonical_caption, free_caption
from ..world.continuation import handoff, render_states, sample_window_plan, window_frames
from ..world.data import to_tensor
from .common import LoopConfig, Runtime, begin, cached
from .flow_loop import StepBatch, data_key, grown_groups, train_flow

NEW_PARTS = ("dit.markers", "dit.frame_phase")  # what given frames add to T2V


@dataclass(frozen=True)
class AnimateTrainConfig:
    clips: int = 1500  # windows from random states; a third each given 1, 4 and 8 frames
    slow_clips: int = 600  # clips at 1/2 and 1/4 of the world's speed (half each), to interpolate
    frames: int = 32
    size: int = 64
    batch: int = 16
    steps: int = 1500
    planned: int = 0  # where the run was first planned to end before it was resumed longer
    image_share: float = 0.35  # uses, per sample (the rest after these: text-to-video)
    extend_share: float = 0.3
    interpolate_share: float = 0.25
    last_share: float = 0.3  # image-to-video samples given the last frame too
    own_chunk_share: float = 0.5  # extension samples given the clip's own latent frames
    drop_caption: float = 0.1  # frames kept, caption empty: v(frames)
    free_share: float = 0.6  # captions in a free phrasing
    lr: float = 2e-4
    new_lr_mult: float = 10.0
    warmup: int = 20
    ema: float = 0.99
    checkpoint_every: int = 100
    seed: int = 11
    # What trains: "all" of the generator, or "attention": the self-attention of every block (where
    # the target reads its given frames) and the new parts, the rest frozen as in T2V, so the
    # model stores only those (6.8 of 31 MB) and shares the rest with the T2V checkpoint.
    train: str = "all"


def animate_generator_config(gcfg: GeneratorConfig, stride: int) -> GeneratorConfig:
    """The T2V generator that reads given frames (FRAMES, the TAE's time stride)."""
    return replace(gcfg, dit=replace(gcfg.dit, context_kinds=3, frame_stride=stride))


def grow_for_animation(t2v: Generator, cfg: GeneratorConfig) -> Generator:
    model = Generator(cfg)
    missing, unexpected = model.load_state_dict(t2v.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(NEW_PARTS) for k in missing), (missing, unexpected)
    return model


def _pixels(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3, T, H, W) in [-1, 1]."""
    return torch.stack([to_tensor(np.array(f)) for f in frames]).to(device)


@torch.no_grad()
def _encode(tae: TAE, clips: np.ndarray, rt: Runtime, batch: int = 16) -> torch.Tensor:
    out = []
    for i in range(0, len(clips), batch):
        with rt.autocast():
            out.append(tae.encode(_pixels(clips[i : i + batch], rt.device)).to(torch.bfloat16))
    return torch.cat(out)


class AnimateData:
    """The encoded clips: `z` (N, Cz, t, h, w) of the windows, their first frames encoded alone
    as a clip (`head`, latent frames for 8 frames), pictures of frames 0 and 31 (`ends`); the slow
    clips `slow` with the pictures of their even frames (`slow_pics`); captions of each."""

    def __init__(self, tcfg: AnimateTrainConfig, tae: TAE, rt: Runtime, cache: Path | None):
        rng = np.random.default_rng([tcfg.seed, rt.rank])
        givens = [(1, 4, 8)[i % 3] for i in range(tcfg.clips)]
        plans = [sample_window_plan(rng, g, tcfg.frames) for g in givens]
        speeds = [(2, 4)[i % 2] for i in range(tcfg.slow_clips)]
        slow_plans = [sample_window_plan(rng, 1, tcfg.frames) for _ in speeds]
        self.speeds = speeds
        self.by_given = {g: [i for i, h in enumerate(givens) if h == g] for g in (1, 4, 8)}
        self.scenes = [p.after for p in plans]
        self.slow_scenes = [p.after for p in slow_plans]
        sizes = {"z": tcfg.clips, "head": tcfg.clips, "ends": tcfg.clips, "slow": tcfg.slow_clips}
        sizes["slow_pics"] = tcfg.slow_clips

        def make() -> dict[str, torch.Tensor]:
            clips = np.stack([window_frames(p, tcfg.size) for p in plans])  # (N, T, R, R, 3)
            slow = np.stack(
                [
                    render_states(
                        p.after.background,
                        list(zip(p.after.objects, handoff(p), strict=True)),
                        tcfg.frames,
                        tcfg.size,
                        1 / k,
                    )
                    for p, k in zip(slow_plans, speeds, strict=True)
                ]
            )
            s = tae.cfg.temporal_down
            heads = _encode(tae, clips[:, : 2 * s], rt)  # (N, Cz, 2, h, w): the first 8 frames alone
            ends = _encode(tae, clips[:, [0, -1]].reshape(-1, 1, *clips.shape[2:]), rt, 64)  # (2N, Cz, 1, h, w)
            pics = _encode(tae, slow[:, ::2].reshape(-1, 1, *slow.shape[2:]), rt, 64)  # (16N, Cz, 1, h, w)
            n, m = len(clips), len(slow)
            return {
                "z": _encode(tae, clips, rt),
                "head": heads,
                "ends": ends.view(n, 2, *ends.shape[1:]).squeeze(3).transpose(1, 2),  # (N, Cz, 2, h, w)
                "slow": _encode(tae, slow, rt),
                "slow_pics": pics.view(m, -1, *pics.shape[1:]).squeeze(3).transpose(1, 2),  # (N, Cz, 16, h, w)
            }

        got = cached(cache, sizes, make, rt)
        self.t = {k: v.to(rt.device) for k, v in got.items()}


def make_batch(
    tcfg: AnimateTrainConfig, data: AnimateData, rng: np.random.Generator, stride: int, device: torch.device
) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str]]:
    """(x1 latents, the model's given-frame arguments padded to the batch's most, captions)."""
    z, head, ends, slow, pics = (data.t[k] for k in ("z", "head", "ends", "slow", "slow_pics"))
    x1, given, texts = [], [], []  # given: per sample (latents (Cz, F, h, w), at (F,), phase (F,))
    whole = stride
    for _ in range(tcfg.batch):
        r = rng.random()
        if r < tcfg.interpolate_share:
            i = int(rng.integers(len(data.speeds)))
            k = data.speeds[i]
            idx = np.arange(0, tcfg.frames, k)  # every k-th frame of the slow clip
            x1.append(slow[i])
            given.append((pics[i][:, idx // 2], torch.tensor(idx // stride), torch.tensor(idx % stride)))
            scene = data.slow_scenes[i]
        else:
            r -= tcfg.interpolate_share
            if r < tcfg.image_share:
                want = 1  # image-to-video
            elif r < tcfg.image_share + tcfg.extend_share:
                want = 4 if rng.random() < 0.5 else 8  # extension
            else:
                want = 0  # text-to-video, on the windows made for image-to-video
            pool = data.by_given[max(want, 1)]
            i = pool[int(rng.integers(len(pool)))]
            x1.append(z[i])
            scene = data.scenes[i]
            if want == 1:
                last = rng.random() < tcfg.last_share
                f = [0, tcfg.frames - 1] if last else [0]
                given.append((ends[i][:, : len(f)], torch.tensor(f) // stride, torch.tensor(f) % stride))
            elif want:
                n = want // stride
                chunk = z[i][:, :n] if rng.random() < tcfg.own_chunk_share else head[i][:, :n]
                given.append((chunk, torch.arange(n), torch.full((n,), whole)))
            else:
                given.append(None)
        if given[-1] is not None and rng.random() < tcfg.drop_caption:
            texts.append("")
        else:
            texts.append(free_caption(rng, scene).text if rng.random() < tcfg.free_share else canonical_caption(scene))
    f_max = max([g[1].numel() for g in given if g is not None], default=1)
    c, _, h, w = x1[0].shape
    frames = torch.zeros(len(x1), c, f_max, h, w, device=device)
    at = torch.zeros(len(x1), f_max, dtype=torch.long, device=device)
    phase = torch.zeros_like(at)
    keep = torch.zeros(len(x1), f_max, dtype=torch.bool, device=device)
    for b, g in enumerate(given):
        if g is None:
            continue
        n = g[1].numel()
        frames[b, :, :n] = g[0].float()
        at[b, :n], phase[b, :n], keep[b, :n] = g[1].to(device), g[2].to(device), True
    kwargs = {"frames": frames, "frame_at": at, "frame_phase": phase, "frames_keep": keep}
    return torch.stack(x1).float().to(device), kwargs, texts


def train_animate(
    tcfg: AnimateTrainConfig, gcfg: GeneratorConfig, tae: TAE, t2v: Generator, rt: Runtime, run: Path
) -> Generator:
    """Grow `t2v` into the animation model and train it; `run` holds the data cache and resume
    state. Returns the EMA weights."""

    def build() -> Generator:
        model = grow_for_animation(t2v, gcfg)
        model.text.word_encoder.requires_grad_(False)  # keep the parse it learned
        if tcfg.train == "attention":
            for name, p in model.named_parameters():
                p.requires_grad_(attention_trains(name))
        elif tcfg.train != "all":
            raise ValueError(f"AnimateTrainConfig.train must be 'all' or 'attention', got {tcfg.train!r}")
        return model

    loop = LoopConfig(
        "animate",
        tcfg.steps,
        tcfg.lr,
        tcfg.warmup,
        tcfg.ema,
        tcfg.seed,
        tcfg.checkpoint_every,
        steps_key="animate_steps",
        planned=tcfg.planned,
    )
    tr = begin(loop, rt, run, build, lambda m: grown_groups(m, NEW_PARTS, tcfg.new_lr_mult), ddp=True)
    model, net = tr.model, tr.forward  # net: through DDP under torchrun
    tae = tae.to(rt.device).eval()
    fields = {k: v for k, v in asdict(tcfg).items() if k in ("clips", "slow_clips", "frames", "size", "seed")}
    t0 = time.perf_counter()
    data = AnimateData(tcfg, tae, rt, run / f"data-{data_key(fields, tae)}.safetensors")
    if rt.main:
        print(
            f"[animate] {tcfg.clips} clips, {tcfg.slow_clips} slow clips ready in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
    stride = tae.cfg.temporal_down

    def batch(step: int, rng: np.random.Generator) -> StepBatch:
        x1, given, texts = make_batch(tcfg, data, rng, stride, rt.device)
        return "vid", x1, lambda xt, t: net(xt, t, **given, **model.encode_prompts(texts))

    return train_flow(tr, gcfg, batch)


def animate_frozen(cfg: GeneratorConfig) -> tuple[str, ...]:
    """The key prefixes of an attention-trained animation model that are the T2V checkpoint's
    weights unchanged (everything but the self-attention and the new parts)."""
    probe = Generator(cfg)
    for name, p in probe.named_parameters():
        p.requires_grad_(attention_trains(name))
    return frozen_prefixes(probe)


def attention_trains(name: str) -> bool:
    """Whether a parameter trains with train = "attention": the new parts, and the transformer
    blocks' self-attention (not the text encoder's own, nor the prompt's cross-attention)."""
    return name.startswith(NEW_PARTS) or (name.startswith("dit.blocks.") and ".attn." in name)
