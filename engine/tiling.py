"""Tiles: where they start, and how overlapping tiles are blended back into one.

The TAE encodes and decodes long clips in tiles along time (docs/system.md section 1) and joins them
with `blend_tiles`, the exact linear formula of docs/system.md. The denoiser runs large or long clips
in windows over time and space (MultiDiffusion, docs/system.md section 6) and joins them with
`blend_nd`, a normalised weighted average that agrees with `blend_tiles` where at most two tiles
overlap on each axis and reduces to MultiDiffusion's plain average wherever the ramps are flat.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import torch

Span = tuple[int, int]  # (start, size) of one tile along one axis


def blend_weights(n: int) -> torch.Tensor:
    """Weights w_j = j / N of the incoming tile over N overlapping frames (docs/system.md section 1)."""
    return torch.arange(1, n + 1, dtype=torch.float32) / (n + 1)


def tile_starts(total: int, tile: int, overlap: int) -> list[int]:
    if total <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, total - tile + 1, stride))
    if starts[-1] + tile < total:
        starts.append(total - tile)
    return starts


def blend_tiles(pieces: list[tuple[int, torch.Tensor]], total: int) -> torch.Tensor:
    """Join tiles (start, tensor with time at dim 2), blending each overlap linearly."""
    first = pieces[0][1]
    out = first.new_zeros(*first.shape[:2], total, *first.shape[3:])
    end = 0
    for start, piece in pieces:
        n = piece.shape[2]
        overlap = max(end - start, 0)
        if overlap:
            w = blend_weights(overlap).to(piece).view(1, 1, -1, 1, 1)
            out[:, :, start:end] = w * piece[:, :, :overlap] + (1 - w) * out[:, :, start:end]
        out[:, :, start + overlap : start + n] = piece[:, :, overlap:]
        end = start + n
    return out


def _check_grid(total: Sequence[int], tile: Sequence[int], overlap: Sequence[int]) -> None:
    if not len(total) == len(tile) == len(overlap):
        raise ValueError(f"total {tuple(total)}, tile {tuple(tile)} and overlap {tuple(overlap)} differ in length")
    for n, k, o in zip(total, tile, overlap, strict=True):
        # An axis that fits in one tile never steps, so only a tiled axis needs room to advance.
        if k < 1 or o < 0 or (n > k and o >= k):
            raise ValueError(f"tile {k} with overlap {o} cannot cover {n} positions")


def tile_boxes(total: tuple[int, ...], tile: tuple[int, ...], overlap: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Start of every tile over the trailing axes: the grid of `tile_starts` per axis, so the
    tiles cover every position (the last tile on an axis is pulled back to end at the border
    rather than run over it). An axis shorter than its tile is one tile covering it, of size
    min(tile, total)."""
    _check_grid(total, tile, overlap)
    axes = [tile_starts(n, k, o) for n, k, o in zip(total, tile, overlap, strict=True)]
    return list(itertools.product(*axes))


def grid_spans(total: tuple[int, ...], tile: tuple[int, ...], overlap: tuple[int, ...]) -> list[list[Span]]:
    """(start, size) of the tiles along each axis of the `tile_boxes` grid: what `blend_nd` needs
    to shape its ramps before it has seen any tile, so tiles can be streamed to it."""
    _check_grid(total, tile, overlap)
    return [[(s, min(k, n)) for s in tile_starts(n, k, o)] for n, k, o in zip(total, tile, overlap, strict=True)]


def ramp_weight(start: int, size: int, total: int, overlap: int | tuple[int, int]) -> torch.Tensor:
    """Weights (size,) of one tile along one axis.

    They rise linearly over the overlap at an edge that has a neighbour, as j / (N + 1) for
    j = 1..N (docs/system.md's w_j), so two tiles overlapping by N cross-fade with weights that already
    sum to one. At the clip's border there is no neighbour to fade into, so the weight stays 1 there
    (a ramp would only be divided out again, but a border covered by a single tile must not depend on
    it). Strictly positive everywhere, so normalising never divides by zero inside a tile. `overlap`
    is one length for both edges or (before, after) when the neighbours overlap by different
    amounts (the last tile of `tile_starts` is pulled back and overlaps more).
    """
    before, after = (overlap, overlap) if isinstance(overlap, int) else overlap
    i = torch.arange(size, dtype=torch.float32)
    ones = torch.ones(size)
    rise = (i + 1) / (before + 1) if start > 0 else ones
    fall = (size - i) / (after + 1) if start + size < total else ones
    # Both ramps may reach the middle of a small tile; the lower one wins so neither edge jumps.
    return torch.minimum(rise, fall).clamp(max=1.0)


def span_weights(spans: Sequence[Span], total: int) -> list[torch.Tensor]:
    """The ramp of each tile along one axis, as blend_nd weights them: for a caller that blends
    one axis itself (as the tiles along it come)."""
    return [ramp_weight(s, n, total, _overlaps(s, n, spans)) for s, n in spans]


def _overlaps(start: int, size: int, spans: Sequence[Span]) -> tuple[int, int]:
    """How far the tile [start, start + size) is overlapped by tiles starting before and after it."""
    before = max((min(a + m, start + size) - start for a, m in spans if a < start), default=0)
    after = max((start + size - a for a, m in spans if start < a < start + size), default=0)
    return max(before, 0), max(after, 0)


def blend_nd(
    pieces: Iterable[tuple[tuple[int, ...], torch.Tensor]],
    total: tuple[int, ...],
    spans: Sequence[Sequence[Span]] | None = None,
) -> torch.Tensor:
    """Join tiles over the trailing len(total) axes into one tensor (..., *total).

    Each piece is (starts over those axes, tensor (..., *tile_size)); the leading axes (batch,
    channels) are the same for every piece. Every piece is weighted by the outer product of its
    per-axis `ramp_weight`s, then each position is divided by the sum of the weights that reached
    it: the normalised weights sum to one everywhere, which is MultiDiffusion's average, so a
    constant comes back constant and there are no seams.

    Memory: the output (..., *total) plus one weight accumulator (*total) (no batch or channel
    axes), both in float32 when the pieces are half precision so the sums do not round, plus one
    tile's weights at a time. `pieces` is consumed once, in order; with `spans` (per axis, the
    (start, size) of its tiles, see `grid_spans`) it may be a generator, so only the tile being
    added needs to exist. Without `spans` they are read off the pieces, which are then all held.
    """
    k = len(total)
    if spans is None:
        pieces = list(pieces)
        spans = [sorted({(s[a], p.shape[p.ndim - k + a]) for s, p in pieces}) for a in range(k)]
    out: torch.Tensor | None = None
    acc: torch.Tensor | None = None
    dtype = None
    for starts, piece in pieces:
        size = piece.shape[piece.ndim - k :]
        if out is None:
            dtype = piece.dtype
            work = torch.promote_types(piece.dtype, torch.float32)
            out = piece.new_zeros(*piece.shape[: piece.ndim - k], *total, dtype=work)
            acc = piece.new_zeros(*total, dtype=work)
        assert acc is not None
        w = torch.ones((), dtype=out.dtype, device=out.device)
        for a, (s, n) in enumerate(zip(starts, size, strict=True)):
            ramp = ramp_weight(s, n, total[a], _overlaps(s, n, spans[a])).to(out)
            w = w.unsqueeze(-1) * ramp  # builds (*tile_size) one axis at a time
        region = (..., *(slice(s, s + n) for s, n in zip(starts, size, strict=True)))
        out[region] += w * piece
        acc[region] += w
    if out is None or acc is None:
        raise ValueError("blend_nd needs at least one piece")
    if not bool((acc > 0).all()):
        raise ValueError(f"the tiles leave positions of {tuple(total)} uncovered")
    return (out / acc).to(dtype)
