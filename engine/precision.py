"""Where bf16 autocast pays, and where it does not."""

from __future__ import annotations

import torch


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 autocast helps on GPUs and on CPUs with native bf16 (avx512_bf16, AMX): ~1.6x.
    Elsewhere oneDNN emulates it and it is far slower than fp32: on an AVX2 AMD EPYC a default
    clip took 64 s in bf16 against 3.7 s in fp32."""
    if device.type == "cuda":
        return True
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: treat its absence as "no"
        return False
