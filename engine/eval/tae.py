"""Autoencoder quality on held-out clips: PSNR for 1-frame and 32-frame clips, the compression
ratio and the latent outlier figure (vectors beyond 3 standard deviations of the mean)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..models.tae import TAE, outlier_fraction
from ..world.data import render_pool


@torch.no_grad()
def evaluate_tae(tae: TAE, n: int = 32, seed: int = 4242, size: int = 64) -> dict:
    clips, _ = render_pool(np.random.default_rng(seed), n, frames=32, size=size)
    x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)
    out: dict = {}
    for frames in (1, 32):
        xs = x[:, :, :frames]
        lat, mses = [], []
        for i in range(0, n, 4):
            z = tae.encode(xs[i : i + 4])
            y = tae.decode(z, frames)
            lat.append(z)
            mses.append(((y - xs[i : i + 4]) ** 2).mean((1, 2, 3, 4)))
        mse = torch.cat(mses)
        z = torch.cat(lat)
        out[f"psnr_{frames}f"] = float((10 * torch.log10(4.0 / mse)).mean())
        out[f"compression_{frames}f"] = xs[0].numel() / z[0].numel()
        out[f"outliers_{frames}f"] = outlier_fraction(tae.denormalize(z))
    out["psnr_32f_min"] = float(10 * math.log10(4.0 / float(mse.max())))
    return out
