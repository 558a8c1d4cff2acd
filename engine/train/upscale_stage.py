"""The spatial upsampler (docs/system.md section 6, at our scale): 4x, 64 -> 256 px.

Two stages that need nothing from each other, so they can run one after the other or side by side:
- `updecoder`: the skip decoder (engine/models/upsampler.py) learns to turn the true latents of
  256 px clips plus the enlarged low-resolution input back into the 256 px clip;
- `upscale`: the flow-matching transformer (the `Generator` class, the enlarged input's latents on
  extra channels) learns to denoise those true latents given the input's.

Data, shared by both and built once: world scenes rendered at 256 (the truth) and slow pans and
zooms over the training photographs (engine/upscale_data.py), each degraded to 64 px as an upload
or a generation would be (blur, noise, H.264, a TAE round trip for the look of generated clips),
enlarged back by bicubic, and cut to 128 px crops latent-aligned in space. Crops are where the
training cost goes, and the models are convolutional or use tile-local positions, so the full
frame at inference is tiled (MultiDiffusion) instead.

Resumable: the data is cached in chunks in the run folder and each stage writes its state (weights,
EMA, optimiser; safetensors + JSON) every `checkpoint_every` steps; every step's randomness is drawn
from (seed, step).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path
from ..checkpoint import save_component
from ..models.generator import Generator, GeneratorConfig
from ..models.tae import TAE
from ..models.upsampler import SkipDecoder
from ..upscale_data import TRAIN_PHOTOS, DegradeConfig, degrade, load_photo, pan_zoom_clip, upscale_bicubic
from ..world.data import to_frames, to_tensor
from ..world.render import render
from ..world.scene import sample_scene
from .common import LoopConfig, Runtime, begin
from .flow_loop import StepBatch, data_key, train_flow
from .tae_stage import edge_loss


@dataclass(frozen=True)
class UpscaleDataConfig:
    world_clips: int = 640
    photo_clips: int = 320
    frames: int = 16
    size: int = 256  # the truth's side
    scale: int = 4
    crop: int = 128  # training crops (truth pixels), multiples of the TAE's 8
    tae_roundtrip: float = 0.3  # world inputs passed through the TAE at 64 px: generated clips look like that
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    chunk: int = 32  # clips per cache file: a killed build keeps what it finished
    seed: int = 11


@dataclass(frozen=True)
class SkipDecoderTrainConfig:
    steps: int = 1200
    batch: int = 4
    frames: int = 8  # a crop's frames per sample (two latents)
    lr: float = 2e-4
    warmup: int = 50
    z_noise: float = 0.3  # up to this much noise on the (normalised) latents: the generator's are not exact
    edge_weight: float = 0.5
    ema: float = 0.995
    checkpoint_every: int = 100
    seed: int = 12


@dataclass(frozen=True)
class UpsamplerTrainConfig:
    steps: int = 2000
    batch: int = 16
    lr: float = 5e-4
    warmup: int = 100
    ema: float = 0.999
    checkpoint_every: int = 100
    seed: int = 13


@dataclass
class UpscaleData:
    truth: torch.Tensor  # (N, T, crop, crop, 3) uint8
    enlarged: torch.Tensor  # (N, T, crop, crop, 3) uint8: the degraded input, bicubic x scale
    z: torch.Tensor  # (N, Cz, T/4, crop/8, crop/8) normalised latents of the truth
    c: torch.Tensor  # same, of the enlarged input

    def __len__(self) -> int:
        return len(self.truth)


def make_example(i: int, dcfg: UpscaleDataConfig, tae: TAE) -> tuple[np.ndarray, np.ndarray, dict]:
    """Clip i of the data: (truth crop, enlarged input crop) (T, crop, crop, 3) uint8 and its log."""
    rng = np.random.default_rng([dcfg.seed, i])
    if i < dcfg.world_clips:
        scene = sample_scene(rng)  # training combinations only: held-out scenes are the evaluation's
        hr = render(scene, dcfg.size, dcfg.frames)
        source = "world"
    else:
        name = TRAIN_PHOTOS[i % len(TRAIN_PHOTOS)]
        hr = pan_zoom_clip(load_photo(name), rng, dcfg.size, dcfg.frames)
        source = name
    lr, info = degrade(hr, dcfg.scale, rng, dcfg.degrade)
    if source == "world" and rng.random() < dcfg.tae_roundtrip:
        with torch.no_grad():
            lr = to_frames(tae.decode(tae.encode(to_tensor(lr)[None]), len(lr))[0])
        info["tae_roundtrip"] = True
    up = upscale_bicubic(lr, dcfg.scale)
    # A crop where something happens: a flat background teaches nothing, so candidates (on the
    # latent grid) are drawn in proportion to how much the truth varies inside them.
    starts = np.arange(0, dcfg.size - dcfg.crop + 1, 8)
    grid = [(y, x) for y in starts for x in starts]
    few = hr[:: max(1, len(hr) // 4), ::2, ::2]  # every 4th frame at half size is enough to rank crops
    spread = np.array([few[:, y // 2 : (y + dcfg.crop) // 2, x // 2 : (x + dcfg.crop) // 2].std() for y, x in grid])
    spread = spread + 2.0
    y, x = grid[rng.choice(len(grid), p=spread / spread.sum())]
    crop = (slice(None), slice(y, y + dcfg.crop), slice(x, x + dcfg.crop))
    return hr[crop], up[crop], {"source": source, **info}


def build_data(dcfg: UpscaleDataConfig, tae: TAE, rt: Runtime, run: Path) -> UpscaleData:
    """Render, degrade and encode every clip once; cached in `run` in chunks (resumable)."""
    key = data_key(asdict(dcfg), tae)  # the data's recipe and the exact TAE weights
    total = dcfg.world_clips + dcfg.photo_clips
    parts: dict[str, list[torch.Tensor]] = {"truth": [], "enlarged": [], "z": [], "c": []}
    t0 = time.perf_counter()
    for start in range(0, total, dcfg.chunk):
        f = run / f"updata-{key}-{start:05d}.safetensors"
        if not f.is_file():
            examples = [make_example(i, dcfg, tae) for i in range(start, min(start + dcfg.chunk, total))]
            truth, up = [e[0] for e in examples], [e[1] for e in examples]
            tt, tu = torch.from_numpy(np.stack(truth)), torch.from_numpy(np.stack(up))
            with torch.no_grad():
                z = torch.cat([tae.encode(to_tensor(v)[None].to(rt.device)).cpu() for v in truth])
                c = torch.cat([tae.encode(to_tensor(v)[None].to(rt.device)).cpu() for v in up])
            if rt.main:
                with atomic_path(f) as tmp:
                    save_file({"truth": tt, "enlarged": tu, "z": z.contiguous(), "c": c.contiguous()}, str(tmp))
                print(
                    f"[updata] {min(start + dcfg.chunk, total)}/{total} ({time.perf_counter() - t0:.0f}s)", flush=True
                )
            chunk = {"truth": tt, "enlarged": tu, "z": z, "c": c}
        else:
            chunk = load_file(str(f))
        for k in parts:
            parts[k].append(chunk[k])
    return UpscaleData(**{k: torch.cat(v) for k, v in parts.items()})


def _pixels(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3, T, H, W) in [-1, 1]."""
    return x.to(device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1


def train_skip_decoder(
    tcfg: SkipDecoderTrainConfig, data: UpscaleData, tae: TAE, rt: Runtime, run: Path
) -> SkipDecoder:
    """The skip decoder from the TAE decoder's weights, trained on (true latents + noise, enlarged
    input) -> truth. Returns the EMA weights."""

    def build() -> SkipDecoder:
        model = SkipDecoder(tae.cfg)
        model.decoder.load_state_dict(tae.decoder.state_dict())
        return model.train()

    loop = LoopConfig(
        "updecoder", tcfg.steps, tcfg.lr, tcfg.warmup, tcfg.ema, tcfg.seed, tcfg.checkpoint_every, "updecoder-resume"
    )
    tr = begin(loop, rt, run, build)
    model, gen = tr.model, tr.gen
    k = tae.cfg.temporal_down
    mean, std = tae.latent_mean.to(rt.device), tae.latent_std.to(rt.device)
    for step in range(tr.start, tcfg.steps):
        rng = tr.begin_step(step)
        idx = torch.from_numpy(rng.integers(len(data), size=tcfg.batch))
        t0 = int(rng.integers(0, data.truth.shape[1] - tcfg.frames + 1) // k * k)
        frames = slice(t0, t0 + tcfg.frames)
        truth, up = _pixels(data.truth[idx, frames], rt.device), _pixels(data.enlarged[idx, frames], rt.device)
        z = data.z[idx, :, t0 // k : (t0 + tcfg.frames) // k].to(rt.device).float()
        sigma = torch.rand(tcfg.batch, 1, 1, 1, 1, generator=gen).to(rt.device) * tcfg.z_noise
        z = z + sigma * torch.randn(z.shape, generator=gen).to(rt.device)
        with rt.autocast():
            y = model(z * std + mean, up).float()  # (B, 3, T, H, W)
        loss = F.mse_loss(y, truth) + 0.5 * (y - truth).abs().mean() + tcfg.edge_weight * edge_loss(y, truth)
        tr.update(step, loss)
        with torch.no_grad():
            gain = 10 * torch.log10(F.mse_loss(up, truth) / F.mse_loss(y.clamp(-1, 1), truth).clamp_min(1e-10))
        tr.log.log(step, loss=loss, gain_db=gain)
        if tr.due(step):
            tr.save(step)
            save_component(run / f"updecoder-step{step + 1}", "skip_decoder", tae.cfg, tr.ema, {"steps": step + 1})
        rt.barrier()
    rt.check_in_sync(tr.ema, "updecoder")
    return tr.ema


def train_upsampler(
    tcfg: UpsamplerTrainConfig, gcfg: GeneratorConfig, data: UpscaleData, rt: Runtime, run: Path
) -> Generator:
    """Flow matching from noise to the truth's latents, given the enlarged input's latents."""
    loop = LoopConfig(
        "upscale", tcfg.steps, tcfg.lr, tcfg.warmup, tcfg.ema, tcfg.seed, tcfg.checkpoint_every, "upscale-resume"
    )
    tr = begin(loop, rt, run, lambda: Generator(gcfg).train(), ddp=True)
    model, net = tr.model, tr.forward  # net: through DDP under torchrun

    def batch(step: int, rng: np.random.Generator) -> StepBatch:
        idx = torch.from_numpy(rng.integers(len(data), size=tcfg.batch))
        x1, cond = data.z[idx].to(rt.device).float(), data.c[idx].to(rt.device).float()
        return "loss", x1, lambda xt, t: net(xt, t, cond=cond, **model.encode_prompts([""] * tcfg.batch))

    return train_flow(tr, gcfg, batch)
