"""Flow matching (docs/system.md section 3): the path, training times, schedules and the Euler solver.

Pure functions. Time runs from t = 0 (noise) to t = 1 (data).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .tiling import blend_nd, blend_tiles, grid_spans, tile_boxes, tile_starts

S_MIN = 1e-5

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t (B,)) -> v
LAID_OUT_LIKE_X = ("cond", "source")  # model keywords cut with x into windows (an edit's source)
StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]  # (step, total, x, x1_hat)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, s_min: float = S_MIN) -> torch.Tensor:
    """x_t = t x1 + (1 - (1 - s_min) t) x0, with x0 noise and x1 data; t broadcasts from (B,)."""
    t = t.view(-1, *([1] * (x1.ndim - 1)))
    return t * x1 + (1 - (1 - s_min) * t) * x0


def target_velocity(x0: torch.Tensor, x1: torch.Tensor, s_min: float = S_MIN) -> torch.Tensor:
    return x1 - (1 - s_min) * x0


def sample_times(n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Logit-normal training times: t = sigmoid(u), u ~ N(0, 1)."""
    return torch.sigmoid(torch.randn(n, generator=generator)).to(device)


def linear_schedule(steps: int) -> torch.Tensor:
    """steps + 1 times from 0 to 1, evenly spaced."""
    return torch.linspace(0.0, 1.0, steps + 1)


def linear_quadratic_schedule(steps: int, linear_steps: int | None = None, n_linear: int | None = None) -> torch.Tensor:
    """Movie Gen's schedule: the first L steps follow an N-step linear schedule (f(i) = i / N),
    the rest a quadratic continuous in value and slope with f(S) = 1. Defaults keep Movie Gen's
    proportions (S = 50, L = 25, N = 250) at any S."""
    s = steps
    L = linear_steps if linear_steps is not None else s // 2
    N = n_linear if n_linear is not None else 5 * s
    if s < 2 or not 0 < L < s or N < s:
        return linear_schedule(steps)
    q = s - L
    i = torch.arange(s + 1, dtype=torch.float64)
    j = (i - L).clamp_min(0)
    # g(j) = L/N + j/N + alpha j^2 for i >= L; alpha sets g(Q) = 1 (same as docs/system.md's a, b, c).
    alpha = (1 - s / N) / q**2
    f = torch.where(i < L, i / N, L / N + j / N + alpha * j * j)
    return f.float()


SCHEDULES: dict[str, Callable[[int], torch.Tensor]] = {
    "linear-quadratic": linear_quadratic_schedule,
    "linear": linear_schedule,
}


def guided_velocity(
    model: Callable[..., torch.Tensor],
    cond: dict,
    uncond: dict | None,
    guidance: float,
) -> Velocity:
    """Classifier-free guidance: v = v_u + g (v_c - v_u), both halves in one batch.

    cond / uncond are the model's keyword arguments (context, context_mask, cond...) for the
    prompt and for the negative (or empty) prompt.
    """
    if uncond is None or guidance == 1.0:
        return lambda x, t: model(x, t, **cond)

    both = {k: _cat(cond[k], uncond[k]) for k in cond}

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = model(torch.cat([x, x]), torch.cat([t, t]), **both)
        v_c, v_u = v.chunk(2)
        return v_u + guidance * (v_c - v_u)

    return velocity


def two_scale_velocity(
    model: Callable[..., torch.Tensor],
    full: dict,
    source: dict,
    none: dict,
    text_guidance: float,
    source_guidance: float,
) -> Velocity:
    """InstructPix2Pix's two-scale guidance (docs/system.md section 5), the three terms in one batch:
    v = v(none) + s_I (v(source) - v(none)) + s_T (v(source, instruction) - v(source)).

    full / source / none are the model's keyword arguments with the source and the instruction,
    with the source only, and with neither."""
    both = {k: _cat(_cat(full[k], source[k]), none[k]) for k in full}

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = model(torch.cat([x, x, x]), torch.cat([t, t, t]), **both)
        v_f, v_s, v_n = v.chunk(3)
        return v_n + source_guidance * (v_s - v_n) + text_guidance * (v_f - v_s)

    return velocity


def windowed(
    model: Callable[..., torch.Tensor],
    window: int | tuple[int, ...],
    overlap: int | tuple[int, ...],
    batch: int = 8,
) -> Callable[..., torch.Tensor]:
    """The model run over overlapping windows, blended where they overlap (MultiDiffusion):
    clips longer or larger than what it was trained on keep its quality, and its memory stays
    flat in length and frame size. Keyword tensors laid out like x (LAID_OUT_LIKE_X: the source
    latents) are cut the same way; the rest (context, task) are shared by every window. Same signature as
    the model.

    An int window tiles time only, joined with docs/system.md's linear blend (`blend_tiles`). A tuple
    tiles the trailing axes it names, e.g. (t, h, w) in latent positions for the upsampler, joined
    by `blend_nd`'s normalised average so a spatial grid has no seams; an int overlap with a tuple
    window is the same overlap on every axis, and an axis shorter than its window is not cut.
    `batch` tiles share one model call (tuple windows)."""
    if isinstance(window, int):
        if not isinstance(overlap, int):
            raise TypeError("an int window (time only) takes an int overlap")
        step = overlap  # narrowed to int, which a closure would not see

        def run_time(x: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
            total = x.shape[2]
            if total <= window:
                return model(x, t, **kwargs)
            pieces = []
            for s in tile_starts(total, window, step):
                part = {
                    k: v[:, :, s : s + window] if k in LAID_OUT_LIKE_X and v is not None else v
                    for k, v in kwargs.items()
                }
                pieces.append((s, model(x[:, :, s : s + window], t, **part)))  # (B, C, window, h, w)
            return blend_tiles(pieces, total)  # (B, C, T, h, w)

        return run_time
    tile = tuple(window)
    over = (overlap,) * len(tile) if isinstance(overlap, int) else tuple(overlap)

    def run(x: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        total = tuple(x.shape[x.ndim - len(tile) :])  # (T, h, w) for a (t, h, w) window
        if all(n <= k for n, k in zip(total, tile, strict=True)):
            return model(x, t, **kwargs)
        spans = grid_spans(total, tile, over)
        boxes = tile_boxes(total, tile, over)
        b = x.shape[0]

        def pieces():
            # Tiles go through the model `batch` at a time: every tile has the same shape (the
            # last one along an axis is pulled back inside the clip), and on a CPU a few larger
            # calls beat many small ones. Only those tiles' outputs are alive while blending.
            for i in range(0, len(boxes), batch):
                group = boxes[i : i + batch]
                regions = [(..., *(slice(s, s + n) for s, n in zip(box, tile, strict=True))) for box in group]
                k = len(group)
                part = {
                    name: (
                        torch.cat([v[r] for r in regions])
                        if name in LAID_OUT_LIKE_X
                        else torch.cat([v] * k)
                        if isinstance(v, torch.Tensor)
                        else v
                    )
                    for name, v in kwargs.items()
                    if v is not None
                }
                out = model(torch.cat([x[r] for r in regions]), torch.cat([t] * k), **part)  # (k*B, C, *tile)
                yield from zip(group, out.split(b), strict=True)

        return blend_nd(pieces(), total, spans)  # (B, C, *total)

    return run


def sdedit_times(times: torch.Tensor, strength: float) -> torch.Tensor:
    """SDEdit: the schedule squeezed into [1 - strength, 1], so sampling starts from the source
    noised to time 1 - strength (strength 1 is plain generation, 0 returns the source)."""
    start = 1.0 - strength
    return start + (1.0 - start) * times


def _cat(a, b):
    if a is None:
        return None
    if a.shape[1:] != b.shape[1:] and a.ndim >= 2:  # context of different lengths: pad the shorter
        n = max(a.shape[1], b.shape[1])
        a, b = _pad_to(a, n), _pad_to(b, n)
    return torch.cat([a, b])


def _pad_to(x: torch.Tensor, n: int) -> torch.Tensor:
    if x.shape[1] == n:
        return x
    pad = x.new_zeros(x.shape[0], n - x.shape[1], *x.shape[2:])  # masks pad with False
    return torch.cat([x, pad], 1)


def euler(
    velocity: Velocity, x: torch.Tensor, times: torch.Tensor, callback: StepCallback | None = None
) -> torch.Tensor:
    """First-order Euler from times[0] to times[-1]. After each step, callback(step, total, x,
    x1_hat) with x1_hat = x_t + (1 - t) v, the current estimate of the clean sample (what
    previews show); the callback may raise to cancel."""
    total = len(times) - 1
    for i in range(total):
        t = times[i].to(x.device).expand(x.shape[0])
        v = velocity(x, t)
        x1_hat = x + (1 - times[i].item()) * v
        x = x + (times[i + 1] - times[i]).item() * v
        if callback is not None:
            callback(i + 1, total, x, x1_hat)
    return x
