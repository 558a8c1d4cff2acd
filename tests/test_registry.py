"""A new task is one module: this file registers a toy task (a boomerang: a generated clip, then
the same clip backwards) in the test alone and runs it through Engine.run, with no edit anywhere
else in the engine. It checks what every task gets from the shared path: progress, previews, a
playable result with its request inside, a cache hit, and Stop."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pytest
import torch

from engine.cache import cache_key
from engine.denoise import Prepared
from engine.engine import Engine
from engine.requests import CancelToken, Error, Preview, Progress, RequestError, Result
from engine.sampling import SCHEDULES
from engine.tasks import TASKS, Job, Task, register, task_for
from engine.video_io import read_metadata, read_video


@dataclass(frozen=True)
class BoomerangRequest:
    prompt: str
    seed: int = 0
    steps: int = 3
    frames: int = 8  # each way
    size: int = 64
    fps: float = 8.0

    task = "boomerang"

    def validate(self, limits=None) -> None:  # the model's ModelLimits (this toy checks none)
        if not self.prompt.strip():
            raise RequestError("The prompt is empty.")

    def to_dict(self) -> dict:
        return {"task": self.task} | asdict(self)


def boomerang_job(engine: Engine, req: BoomerangRequest) -> Job:
    tae = engine.models.tae

    def prepare() -> Prepared:
        return Prepared(
            shape=(1, *tae.cfg.latent_shape(req.frames, req.size, req.size)),
            cond=engine.encode_prompt(req.prompt),
            uncond=engine.encode_prompt(""),
            guidance=3.0,
            times=SCHEDULES["linear"](req.steps),
            seed=req.seed,
            frames=req.frames,
        )

    def decode(z: torch.Tensor) -> torch.Tensor:
        x = tae.decode(z, req.frames)  # (1, 3, T, H, W)
        return torch.cat([x, x.flip(2)], dim=2)  # (1, 3, 2T, H, W)

    return Job(
        key=cache_key("boomerang", engine.models.ids["generator"], engine.precision, req.to_dict()),
        prepare=prepare,
        model="generator",
        frames=2 * req.frames,
        shape=(req.size, req.size),
        fps=req.fps,
        steps=req.steps,
        meta={"each_way": req.frames},
        decode=decode,
    )


@pytest.fixture()
def boomerang():
    task = register(Task("boomerang", BoomerangRequest, boomerang_job))
    yield task
    TASKS.pop("boomerang")


@pytest.fixture()
def engine(tiny_model_dir, tmp_path):
    return Engine(tiny_model_dir, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "out")


def test_a_task_registered_in_a_test_runs_through_the_engine(boomerang, engine):
    req = BoomerangRequest(prompt="a red circle moving left on a blue background", seed=3)
    assert task_for(req) is boomerang
    events = list(engine.run(req))
    steps = [e.step for e in events if isinstance(e, Progress)]
    previews = [e for e in events if isinstance(e, Preview)]
    assert steps == [1, 2, 3] and len(previews) == 3 and previews[0].frames.shape[1:] == (64, 64, 3)
    res = events[-1]
    assert isinstance(res, Result) and not res.cached and res.path.name.endswith("-boomerang-3.mp4")
    frames, _ = read_video(res.path)  # what the browser plays: 8 frames, then the same 8 backwards
    assert frames.shape == (16, 64, 64, 3) and frames.std() > 0
    assert np.abs(frames[:8].astype(int) - frames[8:][::-1].astype(int)).mean() < 2
    meta = read_metadata(res.path)
    assert meta["request"] == req.to_dict() and meta["each_way"] == 8
    assert meta["model"] == engine.models.ids["generator"]
    # The same request again: from the cache, the same frames, no step run.
    again = list(engine.run(req))
    assert len(again) == 1 and again[0].cached and np.array_equal(again[0].frames, res.frames)


def test_stop_reaches_a_registered_task_within_a_step(boomerang, engine):
    cancel = CancelToken()
    seen = []
    for ev in engine.run(BoomerangRequest(prompt="a red circle", steps=6), cancel=cancel):
        seen.append(ev)
        if isinstance(ev, Progress) and ev.step == 2:
            cancel.cancel()
    assert isinstance(seen[-1], Error) and seen[-1].cancelled
    assert max(e.step for e in seen if isinstance(e, Progress)) == 2
    assert not list(engine.outputs_dir.glob("*.mp4"))  # nothing was saved


def test_an_unregistered_request_is_refused_with_what_is_accepted(engine):
    events = list(engine.run(BoomerangRequest(prompt="a red circle")))
    assert len(events) == 1 and isinstance(events[0], Error)
    assert "BoomerangRequest" in events[0].message and "T2VRequest" in events[0].message
