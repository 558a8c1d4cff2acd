"""The C allocator's settings for a process that runs the engine for hours.

glibc serves large blocks by mmap and returns them to the system when freed, but each time one is
freed it raises its mmap threshold to that block's size (up to 32 MB), after which blocks of the
size the engine uses over and over (a slab of frames, a tile's activations) come from the heap
instead, where freed space is reused only when a later block fits it. Run long enough (a long
upscale: one slab after another), the heap's high-water mark creeps up with the clip's length:
measured on the shipped upsampler's decoder, peak RSS 1.57 GB for 32 frames and 1.74 GB for 192.
A fixed threshold keeps large blocks on mmap: 1.55 GB at 96, 192 or 384 frames, with it at 1, 4 or
16 MiB alike. The whole upscale (encoder, transformer, decoder, writer) is flatter at 1 MiB: 1.65 GB
at 12 seconds of video and 1.68 GB at 48, against 1.68 and 1.78 GB at 16 MiB; the upscale bench
took the same time with either (19.7-19.9 s and 19.2 s), so the mmap calls cost nothing we can see.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD = 1 << 20  # blocks of 1 MiB and more: mmap, returned to the system when freed


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at `size` bytes (which also stops it moving). Returns whether it
    was set: False off Linux or under another C library, where nothing is changed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, size))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
