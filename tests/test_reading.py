"""Reading what the user types (the studio does it on every key, outside the job queue) is safe
while a job runs: the instruction reader's memory of analysed sources and the prompt rewriter
each have their own lock, so readings made while a job runs, from many threads at once, are the
readings made alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.engine import Engine
from engine.tasks import T2VRequest
from engine.world.render import render
from engine.world.scene import Scene, ShapeObject


def _clip(color: str, shape: str, background: str) -> np.ndarray:
    scene = Scene(background=background, objects=(ShapeObject(color=color, shape=shape, motion="still"),))
    return render(scene, 64, 4)


@pytest.mark.slow  # four threads of readings beside a job: about 9 s
def test_readings_while_a_job_runs_match_readings_alone(rewriting_model, tmp_path):
    engine = Engine(rewriting_model, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out")
    engine.scenes.size = 3  # evictions happen while the threads read
    combos = [("red", "circle", "blue"), ("green", "star", "white"), ("yellow", "square", "black")]
    clips = [_clip(*c) for c in combos * 2] + [_clip("pink", "triangle", "gray")]
    instructions = ["make the circle yellow", "remove the star", "turn the square into a triangle"]
    prompts = ["a red circle moving left on a blue background", "a green star growing on white"]
    alone = [engine.read_instruction(text, clip) for clip in clips for text in instructions]
    rewritten = [engine.rewrite_text(p) for p in prompts]
    assert any(r.target is not None for r in alone)  # the sources resolve the objects named

    got: dict[int, list] = {}
    errors: list[BaseException] = []

    def reader(k: int) -> None:
        try:
            out = []
            for _ in range(3):
                out += [engine.read_instruction(text, clip) for clip in clips for text in instructions]
                out += [engine.rewrite_text(p) for p in prompts]
            got[k] = out
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    job = threading.Thread(target=lambda: engine.generate(T2VRequest(prompt="a red circle", steps=3, frames=4)))
    job.start()
    for t in threads:
        t.start()
    for t in (*threads, job):
        t.join()
    assert not errors
    expected = (alone + rewritten) * 3
    assert all(got[k] == expected for k in range(4))
    assert len(engine.scenes._scenes) <= 3
