"""Where bf16 autocast pays, and where it does not; and the weights kept in bf16 where it does."""

from __future__ import annotations

import torch


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 autocast helps on GPUs that run it natively (Ampere and later) and on CPUs with native
    bf16 (avx512_bf16, AMX): ~1.6x. Elsewhere it is emulated and far slower than fp32: on an AVX2
    AMD EPYC a default clip took 64 s in bf16 against 3.7 s in fp32, and an upscale step 6.3 s
    against 0.6 s."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        with torch.cuda.device(device):  # the device asked about, not the current one
            return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    # oneDNN reports bf16 "supported" on any AVX-512 core (torch.ops.mkldnn._is_mkldnn_bf16_supported),
    # where it is emulated, as on AVX2; only the bf16 dot-product instructions (avx512_bf16) or AMX
    # make it pay.
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers: treat their absence as "no"
        return False


def keep_in_bf16(generator: torch.nn.Module) -> torch.nn.Module:
    """A generator's transformer with its weights in bf16 (in place). Only for sampling under bf16
    autocast (engine/denoise.py), which casts the fp32 latents and prompt tokens it is given. The
    text encoders stay in fp32: they run once per prompt, outside autocast."""
    generator.dit.to(torch.bfloat16)
    return generator
