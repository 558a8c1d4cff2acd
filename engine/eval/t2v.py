"""Text-to-video quality on held-out prompts: combinations of colour, shape, motion and
background never seen together in training, one and two objects, freely phrased. Each clip is
analysed back into the world's terms and compared with what the prompt asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..requests import T2VRequest
from ..world.analyse import analyse, score
from ..world.captions import free_caption
from ..world.scene import Scene, sample_scene


@dataclass
class EvalItem:
    prompt: str
    scene: Scene
    image: bool = False


def held_out_prompts(n_one: int = 24, n_two: int = 24, seed: int = 0) -> list[EvalItem]:
    rng = np.random.default_rng(10_000 + seed)
    items = []
    for n_obj, count in ((1, n_one), (2, n_two)):
        for _ in range(count):
            scene = sample_scene(rng, n_objects=n_obj, held_out=True)
            items.append(EvalItem(free_caption(rng, scene, omit=0.0).text, scene))
    return items


def evaluate_t2v(engine, items: list[EvalItem], base: T2VRequest | None = None, log=print) -> dict:
    base = base or T2VRequest(prompt="x")
    totals = {"background": [], "color": [], "shape": [], "motion": [], "satisfied": []}
    by_n = {1: [], 2: []}
    for i, item in enumerate(items):
        req = _with(base, item.prompt, i)
        res = engine.generate(req)
        sc = score(analyse(res.frames), item.scene, image=req.frames == 1)
        totals["background"].append(sc.background)
        totals["color"] += sc.color
        totals["shape"] += sc.shape
        totals["motion"] += sc.motion
        totals["satisfied"].append(sc.satisfied)
        by_n[len(item.scene.objects)].append(sc.satisfied)
        log(f"{'ok ' if sc.satisfied else 'BAD'} {item.prompt!r}")
    out = {k: float(np.mean(v)) for k, v in totals.items()}
    out |= {f"satisfied_{k}obj": float(np.mean(v)) for k, v in by_n.items() if v}
    return out


def _with(base: T2VRequest, prompt: str, seed: int) -> T2VRequest:
    from dataclasses import replace

    return replace(base, prompt=prompt, seed=seed)
