"""Stage 1: the temporal autoencoder. Reconstruction (L1 + MSE) + a small latent L2, on 8-frame windows
and single frames mixed (one latent space for images and video), then a fine-tune with the
outlier penalty loss. Afterwards: latent statistics for normalisation and the linear
latent -> RGB preview map, both saved with the weights.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import save_component
from ..models.tae import TAE, TAEConfig, outlier_fraction, outlier_penalty
from ..world.data import render_many, render_pool, sample_windows
from ..world.scene import Scene, sample_scene
from .common import Logger, Runtime, cosine_lr, seed_all, set_lr


@dataclass(frozen=True)
class TAETrainConfig:
    steps: int = 2200
    opl_steps: int = 200
    batch: int = 8
    frames: int = 8
    image_every: int = 4  # every n-th step is a batch of single frames
    image_batch: int = 16
    lr: float = 1e-3
    l2_weight: float = 1e-5
    opl_weight: float = 0.1
    edge_weight: float = 0.0  # L1 on spatial differences: sharper edges (a cheap perceptual stand-in)
    pool: int = 2000
    seed: int = 0


@dataclass(frozen=True)
class DecoderTrainConfig:
    """Decoder-only fine-tune: the encoder (so the latent space and everything trained on it)
    stays fixed while the decoder gets sharper (Video LDM fine-tunes its decoder the same way)."""

    steps: int = 1000
    batch: int = 8
    frames: int = 8
    image_every: int = 4
    image_batch: int = 16
    lr: float = 5e-4
    edge_weight: float = 0.0
    pool: int = 1500
    # Share of objects redrawn as the hardest shape: after the TAE stage stars are the shape a round
    # trip loses most (46% still read as stars before this fine-tune, squares 86%, circles 97%).
    hard_share: float = 0.0
    hard_shape: str = "star"
    seed: int = 3


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of two pixel tensors in [-1, 1], peak 2."""
    mse = F.mse_loss(x.float(), y.float()).item()
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def edge_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical pixel differences of (B, 3, T, H, W) clips: plain L1/MSE
    is happy to blur a star's points into a disc, this term is not."""
    dy = (y[..., 1:, :] - y[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])
    dx = (y[..., :, 1:] - y[..., :, :-1]) - (x[..., :, 1:] - x[..., :, :-1])
    return dy.abs().mean() + dx.abs().mean()


def _fit_reconstruction(
    name: str,
    model: TAE,
    params: list[torch.nn.Parameter],
    tcfg: TAETrainConfig | DecoderTrainConfig,
    steps: int,
    rng: np.random.Generator,
    pool: np.ndarray,
    rt: Runtime,
    regularise=None,
    frozen_encoder: bool = False,
) -> None:
    """The one reconstruction loop: 8-frame windows mixed with single frames (one latent space
    for images and video), L1 + MSE, plus `regularise(step, z) -> (loss, logs)` if given."""
    held = render_pool(np.random.default_rng(12345), 8)[0]  # fixed monitor clips
    opt = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    log = Logger(rt, name, steps, every=25)
    for step in range(steps):
        set_lr(opt, cosine_lr(step, steps, tcfg.lr))
        image = step % tcfg.image_every == tcfg.image_every - 1
        x = sample_windows(rng, pool, tcfg.image_batch if image else tcfg.batch, 1 if image else tcfg.frames)
        x = x.to(rt.device)
        with rt.autocast():
            with torch.set_grad_enabled(not frozen_encoder):
                z = model.encode_raw(x)
            y = model.decode_raw(z, x.shape[2])
        y, z = y.float(), z.float()
        rec = F.l1_loss(y, x) + F.mse_loss(y, x)
        loss, logs = rec, {}
        if tcfg.edge_weight:
            loss = loss + tcfg.edge_weight * edge_loss(y, x)
        if regularise is not None:
            extra, logs = regularise(step, z)
            loss = loss + extra
        opt.zero_grad(set_to_none=True)
        loss.backward()
        rt.average_gradients(params)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        log.log(step, rec=rec.item(), psnr=psnr(y.detach(), x), **logs)
        if rt.main and ((step + 1) % 200 == 0 or step + 1 == steps):
            print(f"[{name}] held-out 32-frame PSNR {evaluate_psnr(model, held, rt.device):.2f} dB", flush=True)


def train_tae(tcfg: TAETrainConfig, mcfg: TAEConfig, out: Path, rt: Runtime) -> TAE:
    seed_all(tcfg.seed)  # the same initial weights on every rank
    model = TAE(mcfg).to(rt.device)
    rng = np.random.default_rng(tcfg.seed + 1000 * rt.rank)  # different data on every rank
    pool, _ = render_pool(rng, tcfg.pool, workers=rt.workers)

    def regularise(step: int, z: torch.Tensor):
        loss = tcfg.l2_weight * z.square().mean()
        opl = outlier_penalty(z) if step >= tcfg.steps else torch.zeros(())  # the outlier fine-tune
        return loss + tcfg.opl_weight * opl, {"opl": opl.item()}

    params = list(model.parameters())
    _fit_reconstruction("tae", model, params, tcfg, tcfg.steps + tcfg.opl_steps, rng, pool, rt, regularise)
    model.eval()
    # Each rank measures its own clips, but every rank must normalise latents for the generator
    # with the statistics rank 0 saves: take rank 0's.
    mcfg = fit_latent_stats(model, pool[:256], rt.device, rt.main)
    stats = rt.broadcast(torch.tensor(mcfg.latent_mean + mcfg.latent_std))
    c = mcfg.latent_channels
    mcfg = dataclasses.replace(mcfg, latent_mean=tuple(stats[:c].tolist()), latent_std=tuple(stats[c:].tolist()))
    model = _with_config(model, mcfg)
    fit_preview(model, pool[:64], rt.device)
    model.preview_weight.copy_(rt.broadcast(model.preview_weight))
    model.preview_bias.copy_(rt.broadcast(model.preview_bias))
    rt.check_in_sync(model, "tae")
    if rt.main:
        save_component(out, "tae", mcfg, model)
    rt.barrier()
    return model


def finetune_decoder(tcfg: DecoderTrainConfig, model: TAE, out: Path, rt: Runtime) -> TAE:
    model = model.to(rt.device)
    model.encoder.requires_grad_(False)
    params = list(model.decoder.parameters())
    for p in params:
        p.requires_grad_(True)
    rng = np.random.default_rng(tcfg.seed + 1000 * rt.rank)
    if tcfg.hard_share:
        scenes = [_with_hard_shapes(rng, sample_scene(rng, held_out=None), tcfg) for _ in range(tcfg.pool)]
        pool = render_many(scenes, 64, 32, rt.workers)
    else:
        pool, _ = render_pool(rng, tcfg.pool, workers=rt.workers)
    _fit_reconstruction("decoder", model, params, tcfg, tcfg.steps, rng, pool, rt, frozen_encoder=True)
    model.eval().requires_grad_(False)
    rt.check_in_sync(model, "decoder")
    if rt.main:
        save_component(out, "tae", model.cfg, model)
    rt.barrier()
    return model


def _with_hard_shapes(rng: np.random.Generator, scene: Scene, tcfg: DecoderTrainConfig) -> Scene:
    objs = tuple(
        dataclasses.replace(o, shape=tcfg.hard_shape) if rng.random() < tcfg.hard_share else o for o in scene.objects
    )
    return dataclasses.replace(scene, objects=objs)


@torch.no_grad()
def evaluate_psnr(model: TAE, clips: np.ndarray, device: torch.device) -> float:
    x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0).to(device)
    y = torch.cat([model.decode(model.encode(x[i : i + 1]), x.shape[2]) for i in range(len(x))])
    return psnr(y, x)


@torch.no_grad()
def _raw_latents(model: TAE, clips: np.ndarray, device: torch.device) -> torch.Tensor:
    out = []
    for i in range(0, len(clips), 8):
        x = torch.from_numpy(clips[i : i + 8]).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)
        out.append(model.encode_raw(x.to(device)).float())
    return torch.cat(out)  # (N, Cz, t, h, w)


def fit_latent_stats(model: TAE, clips: np.ndarray, device: torch.device, verbose: bool = True) -> TAEConfig:
    z = _raw_latents(model, clips, device)
    mean = z.mean((0, 2, 3, 4))
    std = z.std((0, 2, 3, 4)).clamp_min(1e-4)
    if verbose:
        print(f"[tae] latent outliers (raw) {outlier_fraction(z):.2e}", flush=True)
    return dataclasses.replace(model.cfg, latent_mean=tuple(mean.tolist()), latent_std=tuple(std.tolist()))


def _with_config(model: TAE, cfg: TAEConfig) -> TAE:
    fresh = TAE(cfg).to(next(model.parameters()).device)
    fresh.load_state_dict(model.state_dict())
    return fresh.eval()


@torch.no_grad()
def fit_preview(model: TAE, clips: np.ndarray, device: torch.device) -> None:
    """Least-squares linear map from a raw latent vector to the mean colour of the pixels it codes."""
    z = _raw_latents(model, clips, device)  # (N, Cz, t, h, w)
    n, cz, t, h, w = z.shape
    x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)
    k, s = model.cfg.temporal_down, model.cfg.spatial_down
    pad = t * k - x.shape[2]
    if pad:
        x = torch.cat([x, x[:, :, -1:].expand(-1, -1, pad, -1, -1)], 2)
    target = F.avg_pool3d(x, (k, s, s)).to(device)  # (N, 3, t, h, w)
    a = torch.cat([z.movedim(1, -1).reshape(-1, cz), torch.ones(n * t * h * w, 1, device=device)], 1)
    b = target.movedim(1, -1).reshape(-1, 3)
    sol = torch.linalg.lstsq(a.cpu(), b.cpu()).solution  # (Cz + 1, 3)
    model.preview_weight.copy_(sol[:cz].T)
    model.preview_bias.copy_(sol[cz])
