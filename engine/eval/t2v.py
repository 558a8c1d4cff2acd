"""Text-to-video quality on held-out prompts: combinations of colour, shape, motion and
background never seen together in training, one and two objects, freely phrased. Each clip is
analysed back into the world's terms and compared with what the prompt asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..requests import T2VRequest
from ..world.analyse import analyse, score
from ..world.captions import free_caption
from ..world.render import render
from ..world.scene import Scene, ShapeObject, sample_scene


@dataclass
class EvalItem:
    prompt: str
    scene: Scene
    image: bool = False


def _scene(bg: str, *objs: tuple[str, str, str]) -> Scene:
    return Scene(bg, tuple(ShapeObject(c, s, m) for c, s, m in objs))


# Typed by hand the way people type (not produced by the caption generator), with what they mean.
HANDWRITTEN: tuple[tuple[str, Scene], ...] = (
    ("blue ball going right on a yellow background", _scene("yellow", ("blue", "circle", "right"))),
    ("A GREEN TRIANGLE MOVING UP, BLACK BACKGROUND", _scene("black", ("green", "triangle", "up"))),
    ("pink star getting bigger on white", _scene("white", ("pink", "star", "growing"))),
    ("on a gray backdrop, an orange square sliding down", _scene("gray", ("orange", "square", "down"))),
    (
        "a purple circle standing still and a cyan star shrinking on a black background",
        _scene("black", ("purple", "circle", "still"), ("cyan", "star", "shrinking")),
    ),
    ("teal box moves to the left on red background", _scene("red", ("cyan", "square", "left"))),
    ("Red star, growing, on a green background.", _scene("green", ("red", "star", "growing"))),
    (
        "white circle moving down and a black square moving up, gray background",
        _scene("gray", ("white", "circle", "down"), ("black", "square", "up")),
    ),
    ("a yellow triangle contracting on a blue background", _scene("blue", ("yellow", "triangle", "shrinking"))),
    ("violet ball resting on an orange background", _scene("orange", ("purple", "circle", "still"))),
    (
        "grey square moving right and a pink triangle moving left on a cyan background",
        _scene("cyan", ("gray", "square", "right"), ("pink", "triangle", "left")),
    ),
    ("a blue star expanding against a white background", _scene("white", ("blue", "star", "growing"))),
    (
        "green box with a red ball going up on a yellow background",
        _scene("yellow", ("green", "square", "still"), ("red", "circle", "up")),
    ),
    ("black triangle sliding left on pink", _scene("pink", ("black", "triangle", "left"))),
    ("an orange star not moving on a purple background", _scene("purple", ("orange", "star", "still"))),
    ("the cyan circle moving downwards on a black background", _scene("black", ("cyan", "circle", "down"))),
)


def handwritten_prompts() -> list[EvalItem]:
    return [EvalItem(p, s) for p, s in HANDWRITTEN]


def held_out_prompts(n_one: int = 24, n_two: int = 24, seed: int = 0) -> list[EvalItem]:
    rng = np.random.default_rng(10_000 + seed)
    items = []
    for n_obj, count in ((1, n_one), (2, n_two)):
        for _ in range(count):
            scene = sample_scene(rng, n_objects=n_obj, held_out=True)
            items.append(EvalItem(free_caption(rng, scene, omit=0.0).text, scene))
    return items


def explain(analysis, scene: Scene) -> str:
    """What differs between the clip and the prompt, e.g. 'red star left: circle, still; extra blue'."""
    found = {o.color: o for o in analysis.objects}
    parts = [] if analysis.background == scene.background else [f"background {analysis.background}"]
    for want in scene.objects:
        got = found.get(want.color)
        if got is None:
            parts.append(f"{want.color} {want.shape}: missing")
            continue
        wrong = [v for v, w in ((got.shape, want.shape), (got.motion, want.motion)) if v != w]
        if wrong:
            parts.append(f"{want.color} {want.shape} {want.motion}: {', '.join(wrong)}")
    extra = [o.color for o in analysis.objects if o.color not in {w.color for w in scene.objects}]
    if extra:
        parts.append(f"extra {', '.join(extra)}")
    return "; ".join(parts)


def evaluate_t2v(engine, items: list[EvalItem], base: T2VRequest | None = None, log=print) -> dict:
    base = base or T2VRequest(prompt="x")
    totals = {"background": [], "color": [], "shape": [], "motion": [], "satisfied": []}
    by_n = {1: [], 2: []}
    truth = []  # the same prompts' true clips, read by the analyser: the most any model can score
    for i, item in enumerate(items):
        req = replace(base, prompt=item.prompt, seed=i)
        res = engine.generate(req)
        analysis = analyse(res.frames)
        sc = score(analysis, item.scene, image=req.frames == 1)
        totals["background"].append(sc.background)
        totals["color"] += sc.color
        totals["shape"] += sc.shape
        totals["motion"] += sc.motion
        totals["satisfied"].append(sc.satisfied)
        by_n[len(item.scene.objects)].append(sc.satisfied)
        true_clip = render(item.scene, req.size, req.frames)
        truth.append(score(analyse(true_clip), item.scene, image=req.frames == 1).satisfied)
        log(f"ok  {item.prompt!r}" if sc.satisfied else f"BAD {item.prompt!r}  [{explain(analysis, item.scene)}]")
    out = {k: float(np.mean(v)) for k, v in totals.items()}
    out |= {f"satisfied_{k}obj": float(np.mean(v)) for k, v in by_n.items() if v}
    out["truth_satisfied"] = float(np.mean(truth))
    return out
