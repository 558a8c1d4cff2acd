"""Candidates and the judge: batched sampling that finishes the chosen one, the judge's reading and
how it scores a prompt, and the engine's record of the choice."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch

from engine.checkpoint import save_component
from engine.engine import Engine
from engine.models.judge import Judge, JudgeConfig, Reading, Want, log_agreement, want_from_reading
from engine.requests import RequestError, T2VRequest
from engine.sampling import guided_velocity, linear_quadratic_schedule
from engine.tasks import Prepared, candidate_seeds, denoise, initial_noise
from engine.world.palette import COLOR_NAMES, MOTIONS, SHAPES

TINY_JUDGE = JudgeConfig(in_channels=4, width=32, depth=1, heads=2, time_dim=32)


class ToyModel(torch.nn.Module):
    """Velocity that depends on each row alone (and on the prompt), so batching cannot matter."""

    def forward(self, x, t, context, context_mask=None):
        return -x * (1 + t.view(-1, 1, 1, 1, 1)) + context.mean((1, 2)).view(-1, 1, 1, 1, 1)


def _prepared(candidates: int, choose_at: int) -> Prepared:
    cond = {"context": torch.ones(1, 3, 2), "context_mask": torch.ones(1, 3, dtype=torch.bool)}
    uncond = {"context": torch.zeros(1, 2, 2), "context_mask": torch.ones(1, 2, dtype=torch.bool)}
    return Prepared(
        shape=(1, 2, 2, 2, 2),
        cond=cond,
        uncond=uncond,
        guidance=3.0,
        times=linear_quadratic_schedule(8),
        seed=7,
        frames=8,
        candidates=candidates,
        choose_at=choose_at,
    )


def test_candidate_seeds_start_with_the_request_seed_and_differ():
    seeds = candidate_seeds(7, 4)
    assert seeds[0] == 7 and len(set(seeds)) == 4 and all(0 <= s < 2**63 for s in seeds)
    assert candidate_seeds(7, 2) == seeds[:2]  # more candidates keep the first ones
    noise = initial_noise((1, 2, 2, 2, 2), seeds, torch.device("cpu"))
    assert noise.shape == (4, 2, 2, 2, 2) and torch.equal(noise[:1], initial_noise((1, 2, 2, 2, 2), 7, "cpu"))


def test_guidance_shares_one_prompt_across_candidates():
    model = ToyModel()
    cond = {"context": torch.ones(1, 3, 2), "context_mask": torch.ones(1, 3, dtype=torch.bool)}
    uncond = {"context": torch.zeros(1, 2, 2), "context_mask": torch.ones(1, 2, dtype=torch.bool)}
    v = guided_velocity(model, cond, uncond, 4.0)
    x, t = torch.randn(3, 2, 2, 2, 2), torch.full((3,), 0.4)
    both = v(x, t)
    for i in range(3):
        assert torch.allclose(both[i : i + 1], v(x[i : i + 1], t[i : i + 1]), atol=1e-6)


@pytest.mark.parametrize("choose_at", [5, 0])  # part-way, and at the end
def test_denoise_finishes_the_chosen_candidate(choose_at):
    seen, steps = {}, []

    def choose(x, t):
        seen["rows"], seen["t"] = len(x), t
        return 2

    prep = _prepared(4, choose_at)
    out = denoise(ToyModel(), prep, torch.device("cpu"), lambda s, n, x1: steps.append((s, n, len(x1))), False, choose)
    k = choose_at or 8
    assert seen == {"rows": 4, "t": float(prep.times[k])}
    assert [s for s, _, _ in steps] == list(range(1, 9)) and all(n == 8 for _, n, _ in steps)
    assert [r for _, _, r in steps] == [4] * k + [1] * (8 - k)  # previews show what still runs
    # The chosen candidate ends where its own seed, run alone, ends.
    alone = denoise(
        ToyModel(), replace(prep, seed=candidate_seeds(7, 4)[2], candidates=1), torch.device("cpu"), None, False
    )
    assert out.shape == (1, 2, 2, 2, 2) and torch.allclose(out, alone, atol=1e-5)


def test_one_candidate_is_a_plain_request():
    prep = _prepared(1, 0)
    out = denoise(ToyModel(), prep, torch.device("cpu"), None, False, lambda x, t: 1 / 0)  # never asked
    assert out.shape == (1, 2, 2, 2, 2)


def test_judge_reads_any_latent_grid():
    judge = Judge(TINY_JUDGE).eval()
    for shape in ((2, 4, 8, 8, 8), (3, 4, 1, 4, 4)):  # a clip, images
        r = judge(torch.randn(shape), torch.rand(shape[0]))
        n = len(COLOR_NAMES)
        assert r.background.shape == (shape[0], n) and r.present.shape == (shape[0], n)
        assert r.shape.shape == (shape[0], n, len(SHAPES)) and r.motion.shape == (shape[0], n, len(MOTIONS))
    with pytest.raises(ValueError, match="exceeds"):
        judge(torch.randn(1, 4, 1, 80, 80), torch.ones(1))


def _reading(bg: str, *objects: tuple[str, str, str], sure: float = 6.0) -> Reading:
    """Logits of a confident judge that sees exactly this scene."""
    n = len(COLOR_NAMES)
    r = Reading(
        background=torch.zeros(1, n),
        present=torch.full((1, n), -sure),
        shape=torch.zeros(1, n, len(SHAPES)),
        motion=torch.zeros(1, n, len(MOTIONS)),
    )
    r.background[0, COLOR_NAMES.index(bg)] = sure
    for color, shape, motion in objects:
        k = COLOR_NAMES.index(color)
        r.present[0, k] = sure
        r.shape[0, k, SHAPES.index(shape)] = sure
        r.motion[0, k, MOTIONS.index(motion)] = sure
    return r


def test_agreement_prefers_the_clip_that_shows_the_prompt():
    want = want_from_reading(
        {"background": "blue", "color1": "red", "shape1": "star", "motion1": "left", "color2": "green"}
        | {"shape2": "square", "motion2": "growing"}
    )
    assert want == Want(5, ((0, 3, 0), (3, 1, 5)))
    right = log_agreement(_reading("blue", ("red", "star", "left"), ("green", "square", "growing")), want)
    wrong = [
        _reading("blue", ("red", "circle", "left"), ("green", "square", "growing")),  # a misshapen star
        _reading("blue", ("red", "star", "right"), ("green", "square", "growing")),  # moving the wrong way
        _reading("blue", ("red", "star", "left")),  # an object missing
        _reading("blue", ("red", "star", "left"), ("green", "square", "growing"), ("white", "circle", "up")),
        _reading("black", ("red", "star", "left"), ("green", "square", "growing")),
    ]
    assert right > -0.1  # near log 1
    for r in wrong:
        assert log_agreement(r, want) < right - 4


def test_unspecified_slots_are_not_judged():
    want = want_from_reading(
        {"background": "unspecified", "color1": "red", "shape1": "star", "motion1": "unspecified"}
        | {"color2": "none", "shape2": "none", "motion2": "none"}
    )
    assert want == Want(None, ((0, 3, None),))
    a = log_agreement(_reading("blue", ("red", "star", "left")), want)
    b = log_agreement(_reading("black", ("red", "star", "up")), want)
    assert torch.allclose(a, b)
    image = want_from_reading(
        {"background": "blue", "color1": "red", "shape1": "star", "motion1": "left"}
        | {"color2": "none", "shape2": "none", "motion2": "none"},
        image=True,
    )
    assert image.objects == ((0, 3, None),)


@pytest.fixture()
def judged_model(rewriting_model, tmp_path):
    out = tmp_path / "judged-model"
    shutil.copytree(rewriting_model, out)
    torch.manual_seed(0)
    save_component(out / "judge", "judge", TINY_JUDGE, Judge(TINY_JUDGE), {"choose_at": 0.5})
    return out


def test_engine_records_and_caches_the_choice(judged_model, tmp_path):
    engine = Engine(judged_model, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "out")
    req = T2VRequest(prompt="a red star moving left on a blue background", frames=8, steps=4, candidates=3)
    first = engine.generate(req)
    choice = first.metadata["candidates"]
    assert len(choice["log_agreement"]) == 3 and choice["chosen"] == max(
        range(3), key=choice["log_agreement"].__getitem__
    )
    assert choice["seed"] == candidate_seeds(0, 3)[choice["chosen"]] and 0 < choice["at_time"] < 1
    assert json.loads(first.path.with_suffix(".json").read_text())["candidates"] == choice
    again = engine.generate(req)
    assert again.cached and again.metadata["candidates"] == choice
    assert engine.generate(T2VRequest(prompt=req.prompt, frames=8, steps=4)).metadata["candidates"] is None


def test_engine_without_a_judge_runs_one_candidate_and_says_so(tiny_model_dir, tmp_path):
    engine = Engine(tiny_model_dir, device="cpu", cache_dir=None, outputs_dir=tmp_path)
    res = engine.generate(T2VRequest(prompt="a red star", frames=8, steps=2, candidates=3))
    assert "no judge" in res.metadata["candidates"]["why_not"]
    with pytest.raises(RequestError, match="candidates must be between 1 and 8"):
        engine.generate(T2VRequest(prompt="a red star", frames=8, steps=2, candidates=9))


def test_judge_loss_rewards_the_true_reading_and_handles_images():
    from engine.train.judge_stage import judge_loss, label_tensors
    from engine.world.scene import Scene, ShapeObject

    scene = Scene("blue", (ShapeObject("red", "star", "left"), ShapeObject("green", "square", "growing")))
    for image in (False, True):  # images carry no motion labels: the loss must stay finite
        y = label_tensors([scene], image, torch.device("cpu"))
        right = judge_loss(_reading("blue", ("red", "star", "left"), ("green", "square", "growing")), y)
        wrong = judge_loss(_reading("blue", ("red", "circle", "left"), ("green", "square", "growing")), y)
        assert torch.isfinite(right) and right < 0.1 and wrong > 2.5  # shape loss: a mean over both objects
