import itertools
import random

import pytest
import torch

from engine.sampling import windowed
from engine.tiling import blend_nd, blend_tiles, grid_spans, ramp_weight, tile_boxes, tile_starts


def _grid_pieces(total, tile, overlap, fill):
    """Pieces (starts, fill(box, size)) with shape (1, 2, *size) over the tile_boxes grid."""
    pieces = []
    for box in tile_boxes(total, tile, overlap):
        size = tuple(min(k, n - s) for s, k, n in zip(box, tile, total, strict=True))
        pieces.append((box, fill(box, size)))
    return pieces


def _random_grids(n, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        dims = rng.randint(1, 3)
        total = tuple(rng.randint(1, 13) for _ in range(dims))
        tile = tuple(rng.randint(1, 9) for _ in range(dims))
        overlap = tuple(rng.randint(0, k - 1) for k in tile)
        yield total, tile, overlap


def test_tile_boxes_cover_every_position():
    for total, tile, overlap in [((7, 9, 11), (4, 6, 6), (2, 2, 2)), ((3, 32, 32), (8, 16, 16), (2, 8, 8))]:
        hits = torch.zeros(total)
        for box in tile_boxes(total, tile, overlap):
            assert all(0 <= s and s + min(k, n) <= n for s, k, n in zip(box, tile, total, strict=True))
            hits[tuple(slice(s, s + k) for s, k in zip(box, tile, strict=True))] += 1
        assert hits.min() >= 1
    # a tile larger than the axis is one tile over the whole axis; odd totals end exactly at the border
    assert tile_boxes((3, 9), (8, 4), (2, 1)) == [(0, 0), (0, 3), (0, 5)]
    assert tile_boxes((5,), (5,), (4,)) == [(0,)]
    assert grid_spans((3, 9), (8, 4), (2, 1)) == [[(0, 3)], [(0, 4), (3, 4), (5, 4)]]
    with pytest.raises(ValueError):
        tile_boxes((9,), (4,), (4,))  # no stride left
    with pytest.raises(ValueError):
        tile_boxes((9, 9), (4,), (1,))


def test_ramp_weight_rises_over_the_overlap_and_keeps_borders():
    w = ramp_weight(4, 8, 20, 3)  # neighbours on both sides
    assert torch.allclose(w, torch.tensor([0.25, 0.5, 0.75, 1, 1, 0.75, 0.5, 0.25]))
    assert torch.equal(ramp_weight(0, 8, 20, 3)[:4], torch.ones(4))  # clip's first border
    assert torch.equal(ramp_weight(12, 8, 20, 3)[-4:], torch.ones(4))  # clip's last border
    assert torch.equal(ramp_weight(0, 5, 5, 3), torch.ones(5))  # one tile over the axis
    assert torch.allclose(ramp_weight(4, 8, 20, (1, 3))[:2], torch.tensor([0.5, 1.0]))
    small = ramp_weight(2, 3, 9, 4)  # ramps meet in a small tile: still positive, no jump
    assert (small > 0).all() and torch.allclose(small, torch.tensor([0.2, 0.4, 0.2]))


def test_normalised_weights_sum_to_one_everywhere():
    for total, tile, overlap in _random_grids(60):
        pieces = _grid_pieces(total, tile, overlap, lambda box, size: torch.ones(1, 2, *size))
        out = blend_nd(pieces, total)
        assert out.shape == (1, 2, *total) and torch.equal(out, torch.ones_like(out))


def test_constant_clip_comes_back_constant_without_seams():
    for total, tile, overlap in _random_grids(30, seed=1):
        clip = torch.full((1, 2, *total), 0.3718)

        def cut(box, size, clip=clip):
            return clip[(..., *(slice(s, s + n) for s, n in zip(box, size, strict=True)))]

        pieces = _grid_pieces(total, tile, overlap, cut)
        out = blend_nd(pieces, total)
        assert (out - 0.3718).abs().max() < 1e-6


def test_streamed_pieces_match_the_list():
    total, tile, overlap = (7, 9, 11), (4, 6, 6), (2, 2, 2)
    g = torch.Generator().manual_seed(0)
    pieces = _grid_pieces(total, tile, overlap, lambda box, size: torch.randn(1, 2, *size, generator=g))
    streamed = blend_nd(iter(pieces), total, grid_spans(total, tile, overlap))
    assert torch.equal(streamed, blend_nd(pieces, total))


def test_blend_nd_agrees_with_blend_tiles_along_time():
    # docs/system.md's linear blend and the normalised average are the same where two tiles overlap,
    # including the last tile pulled back to the border (overlap 4 instead of 2 at total 12). Where
    # three tiles meet (overlap >= tile / 2 at a pulled-back end) blend_tiles is sequential and
    # blend_nd an average, so they differ there by design.
    for total, tile, overlap in [(14, 8, 2), (12, 8, 2), (18, 6, 2), (13, 6, 2)]:
        g = torch.Generator().manual_seed(total)
        pieces = [(s, torch.randn(1, 2, tile, 3, 2, generator=g)) for s in tile_starts(total, tile, overlap)]
        nd = blend_nd([((s, 0, 0), p) for s, p in pieces], (total, 3, 2))
        assert torch.allclose(nd, blend_tiles(pieces, total), atol=1e-6)


def test_half_precision_pieces_keep_their_dtype():
    pieces = _grid_pieces((6, 6), (4, 4), (2, 2), lambda box, size: torch.ones(1, 2, *size, dtype=torch.bfloat16))
    out = blend_nd(pieces, (6, 6))
    assert out.dtype == torch.bfloat16 and torch.equal(out, torch.ones_like(out))


@pytest.mark.parametrize(
    "shape,window,overlap",
    [((3, 9, 32, 32), (4, 16, 16), (2, 8, 8)), ((3, 7, 9, 11), (4, 6, 6), (2, 2, 2)), ((3, 5, 8, 8), (8, 4, 4), 1)],
)
def test_windowed_in_space_and_time_equals_one_pass_for_a_pointwise_model(shape, window, overlap):
    seen = []

    def add(x, t, cond=None, context=None):
        k = x.shape[0] // 2  # tiles batched into one call
        seen.extend([x.shape[2:]] * k)
        # cond is cut like x; the context is every tile's (repeated along the batch)
        assert cond.shape == x.shape and torch.equal(context, torch.cat([ctx] * k)) and t.shape == (2 * k,)
        return x + cond

    def double(x, t, cond=None, context=None):
        return x * 2

    g = torch.Generator().manual_seed(0)
    x, cond = torch.randn(2, *shape, generator=g), torch.randn(2, *shape, generator=g)
    context = ctx = torch.randn(2, 5)
    out = windowed(add, window, overlap, batch=3)(x, torch.zeros(2), cond=cond, context=context)
    ov = (overlap,) * 3 if isinstance(overlap, int) else overlap
    assert len(seen) == len(tile_boxes(tuple(shape[1:]), window, ov)) > 1
    assert all(s[a] == min(window[a], shape[1 + a]) for s in seen for a in range(3))
    assert (out - (x + cond)).abs().max() < 1e-6
    out = windowed(double, window, overlap)(x, torch.zeros(2), cond=cond, context=context)
    assert (out - 2 * x).abs().max() < 1e-6


def test_windowed_calls_the_model_once_when_the_clip_fits():
    calls = []

    def model(x, t, cond=None):
        calls.append(x.shape)
        return x

    x = torch.randn(1, 2, 3, 8, 8)
    assert torch.equal(windowed(model, (4, 16, 16), (2, 8, 8))(x, torch.zeros(1), cond=x), x)
    assert calls == [x.shape]


def test_tile_means_blend_smoothly_across_seams():
    # Each tile returns its own mean: a hard cut would jump by the difference between tiles;
    # the ramps spread it over the overlap, so no step exceeds that difference / (overlap + 1).
    total, window, overlap = (8, 32, 32), (4, 16, 16), (2, 8, 8)
    x = torch.randn(1, 1, *total, generator=torch.Generator().manual_seed(3)) * 4
    means = []

    def tile_mean(x, t, cond=None):  # x holds several tiles along the batch
        m = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)  # (k, 1, 1, 1, 1)
        means.extend(m.flatten())
        return m.expand_as(x).clone()

    out = windowed(tile_mean, window, overlap)(x, torch.zeros(1))[0, 0]
    boxes = tile_boxes(total, window, overlap)
    spread = max(
        abs(float(means[i] - means[j]))
        for i, j in itertools.combinations(range(len(boxes)), 2)
        if all(abs(a - b) < k for a, b, k in zip(boxes[i], boxes[j], window, strict=True))  # tiles that overlap
    )
    assert spread > 0.1
    for axis, o in enumerate(overlap):
        step = out.diff(dim=axis).abs().max()
        assert step <= spread / (o + 1) + 1e-5
    assert out.min() >= min(means) - 1e-5 and out.max() <= max(means) + 1e-5


def test_int_window_is_the_old_time_only_blend():
    def model(x, t, cond=None):
        return torch.sin(x * 3 + x.mean()) + cond  # not pointwise: windows really differ

    g = torch.Generator().manual_seed(5)
    for total in (15, 14, 12, 8, 5):
        x, cond = torch.randn(2, 3, total, 4, 5, generator=g), torch.randn(2, 3, total, 4, 5, generator=g)
        out = windowed(model, 8, 2)(x, torch.zeros(2), cond=cond)
        if total <= 8:
            assert torch.equal(out, model(x, None, cond=cond))  # the early return, one call
            continue
        pieces = [(s, model(x[:, :, s : s + 8], None, cond=cond[:, :, s : s + 8])) for s in tile_starts(total, 8, 2)]
        assert torch.equal(out, blend_tiles(pieces, total))
