"""Flow matching (SYSTEM.md section 3): the path, training times, schedules and the Euler solver.

Pure functions. Time runs from t = 0 (noise) to t = 1 (data).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

S_MIN = 1e-5

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t (B,)) -> v
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
    # g(j) = L/N + j/N + alpha j^2 for i >= L; alpha sets g(Q) = 1 (same as SYSTEM.md's a, b, c).
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
