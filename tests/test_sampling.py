import torch

from engine.sampling import (
    euler,
    guided_velocity,
    interpolate,
    linear_quadratic_schedule,
    linear_schedule,
    sample_times,
    target_velocity,
)


def test_linear_quadratic_matches_movie_gen():
    f = linear_quadratic_schedule(50, 25, 250)
    assert f[0] == 0 and torch.isclose(f[-1], torch.tensor(1.0))
    assert torch.allclose(f[:26], torch.arange(26) / 250)  # the linear part
    d = f.diff()
    assert (d > 0).all()  # monotonic
    # Continuous in slope at L: the first quadratic step continues the linear one smoothly.
    assert abs(float(d[25] - d[24])) < 2e-3 and abs(float(d[24] - 1 / 250)) < 1e-6


def test_linear_quadratic_defaults_scale_with_steps():
    for s in (4, 10, 24, 50):
        f = linear_quadratic_schedule(s)
        assert len(f) == s + 1 and f[0] == 0 and abs(float(f[-1]) - 1) < 1e-6 and (f.diff() > 0).all()


def test_linear_schedule():
    assert torch.allclose(linear_schedule(4), torch.tensor([0, 0.25, 0.5, 0.75, 1.0]))


def test_path_and_target():
    x0, x1 = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.allclose(interpolate(x0, x1, torch.zeros(3)), x0)
    assert torch.allclose(interpolate(x0, x1, torch.ones(3)), x1, atol=1e-4)
    t = torch.full((3,), 0.3)
    # The target is the time derivative of the path.
    eps = 1e-3
    num = (interpolate(x0, x1, t + eps) - interpolate(x0, x1, t)) / eps
    assert torch.allclose(num, target_velocity(x0, x1), atol=1e-3)


def test_logit_normal_times():
    t = sample_times(20000, torch.Generator().manual_seed(0))
    assert 0 < t.min() and t.max() < 1 and abs(float(t.median()) - 0.5) < 0.02


def test_euler_is_exact_on_straight_paths():
    x0, x1 = torch.randn(2, 5), torch.randn(2, 5)
    steps = []
    out = euler(
        lambda x, t: target_velocity(x0, x1), x0.clone(), linear_quadratic_schedule(10), lambda *a: steps.append(a[0])
    )
    assert torch.allclose(out, x1, atol=1e-4) and steps == list(range(1, 11))


def test_guidance_combines_cond_and_uncond():
    def model(x, t, context):
        return x * 0 + context

    c, u = torch.ones(1, 3), torch.zeros(1, 3)
    v = guided_velocity(model, {"context": c}, {"context": u}, 4.0)(torch.zeros(1, 3), torch.zeros(1))
    assert torch.allclose(v, torch.full((1, 3), 4.0))
    v1 = guided_velocity(model, {"context": c}, {"context": u}, 1.0)(torch.zeros(1, 3), torch.zeros(1))
    assert torch.allclose(v1, c)
