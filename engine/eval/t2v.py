"""Text-to-video quality on held-out prompts: combinations of colour, shape, motion and
background never seen together in training, one and two objects, freely phrased. Each clip is
analysed back into the world's terms and compared with what the prompt asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..tasks import T2VRequest
from ..world.analyse import analyse, score
from ..world.captions import SLOTS, caption_labels, free_caption
from ..world.render import render
from ..world.scene import Scene, ShapeObject, sample_scene
from .tae import roundtrip


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


# Written as people type prompts, without the caption generator's phrase lists: other word forms
# (leftwards, from left to right), other verbs (falling, rising, sitting), other sentence shapes
# ("the background is blue"), shorthand ("bg"), typos, and words that add nothing ("make me a video
# of", "4k"). Scored the same way as the others.
TYPED: tuple[tuple[str, Scene], ...] = (
    ("a red circle moves leftwards on a blue background", _scene("blue", ("red", "circle", "left"))),
    ("red ball travelling from right to left, blue background", _scene("blue", ("red", "circle", "left"))),
    ("the background is white and a green square is falling", _scene("white", ("green", "square", "down"))),
    ("yellow star flying upward on black", _scene("black", ("yellow", "star", "up"))),
    ("a purple triangle sitting on an orange background", _scene("orange", ("purple", "triangle", "still"))),
    ("pink star zooming in, cyan bg", _scene("cyan", ("pink", "star", "growing"))),
    ("a white circle that gets tiny on green", _scene("green", ("white", "circle", "shrinking"))),
    ("an orange triangle going rigth on a gray background", _scene("gray", ("orange", "triangle", "right"))),
    ("a black circle moving rightward on yellow", _scene("yellow", ("black", "circle", "right"))),
    ("blue square sinking down on a pink background", _scene("pink", ("blue", "square", "down"))),
    ("a cyan triangle climbing up over a red background", _scene("red", ("cyan", "triangle", "up"))),
    ("background: purple. a yellow circle that stays still", _scene("purple", ("yellow", "circle", "still"))),
    ("green star slowly getting larger against white", _scene("white", ("green", "star", "growing"))),
    ("a grey sqaure drifting to the left on a blue backround", _scene("blue", ("gray", "square", "left"))),
    ("a motionless red triangle on black", _scene("black", ("red", "triangle", "still"))),
    ("white star moving from left to right on an orange background", _scene("orange", ("white", "star", "right"))),
    ("a pink cirlce shrinking on a gray background", _scene("gray", ("pink", "circle", "shrinking"))),
    ("black box rising on a cyan background", _scene("cyan", ("black", "square", "up"))),
    (
        "a yellow triangle dropping from top to bottom, green background",
        _scene("green", ("yellow", "triangle", "down")),
    ),
    ("an orange ball, static, on a white background", _scene("white", ("orange", "circle", "still"))),
    ("violet star getting smaller on a yellow backdrop", _scene("yellow", ("purple", "star", "shrinking"))),
    ("a blue triange moving downwards on white", _scene("white", ("blue", "triangle", "down"))),
    ("teal square scaling up on a black background", _scene("black", ("cyan", "square", "growing"))),
    ("a red star gliding left over a green background", _scene("green", ("red", "star", "left"))),
    ("a white square that doesn't move, on red", _scene("red", ("white", "square", "still"))),
    ("green circle floating upwards on a purple background", _scene("purple", ("green", "circle", "up"))),
    ("a gray star becoming bigger on a pink background", _scene("pink", ("gray", "star", "growing"))),
    ("black background, an orange square heading to the right", _scene("black", ("orange", "square", "right"))),
    ("a purple circle sliding rightwards on cyan", _scene("cyan", ("purple", "circle", "right"))),
    ("yellow square, moving up, on a blue bg", _scene("blue", ("yellow", "square", "up"))),
    ("a cyan star shrinking away on an orange background", _scene("orange", ("cyan", "star", "shrinking"))),
    (
        "a pink triangle that moves to the left side on a black background",
        _scene("black", ("pink", "triangle", "left")),
    ),
    (
        "a red square going up while a blue circle goes down on a white background",
        _scene("white", ("red", "square", "up"), ("blue", "circle", "down")),
    ),
    (
        "the background is black; a yellow star grows and a green ball stays still",
        _scene("black", ("yellow", "star", "growing"), ("green", "circle", "still")),
    ),
    (
        "two shapes on gray: an orange triangle moving leftwards and a white square moving rightwards",
        _scene("gray", ("orange", "triangle", "left"), ("white", "square", "right")),
    ),
    (
        "pink circle falling + cyan square rising, purple bg",
        _scene("purple", ("pink", "circle", "down"), ("cyan", "square", "up")),
    ),
    (
        "a blue star shrinking next to a red triangle that is not moving, on yellow",
        _scene("yellow", ("blue", "star", "shrinking"), ("red", "triangle", "still")),
    ),
    (
        "green background with a black circle going left and a white star going right",
        _scene("green", ("black", "circle", "left"), ("white", "star", "right")),
    ),
    (
        "an orange box getting bigger and a purple ball moving down on a cyan background",
        _scene("cyan", ("orange", "square", "growing"), ("purple", "circle", "down")),
    ),
    (
        "a grey triangle travelling upward, a yellow circle travelling downward, blue background",
        _scene("blue", ("gray", "triangle", "up"), ("yellow", "circle", "down")),
    ),
    (
        "on a white backround a red star moving rigth and a green sqaure moving left",
        _scene("white", ("red", "star", "right"), ("green", "square", "left")),
    ),
    (
        "a cyan circle sitting still beside a pink star that shrinks, black background",
        _scene("black", ("cyan", "circle", "still"), ("pink", "star", "shrinking")),
    ),
    (
        "Yellow square moving left. Blue triangle growing. Red background.",
        _scene("red", ("yellow", "square", "left"), ("blue", "triangle", "growing")),
    ),
    (
        "a white circle rises while a black square falls, on an orange backdrop",
        _scene("orange", ("white", "circle", "up"), ("black", "square", "down")),
    ),
    (
        "purple star expanding and teal triangle contracting on grey",
        _scene("gray", ("purple", "star", "growing"), ("cyan", "triangle", "shrinking")),
    ),
    (
        "a green triangle moving from left to right with a red circle that stays put, on a white background",
        _scene("white", ("green", "triangle", "right"), ("red", "circle", "still")),
    ),
    (
        "pink square drifting downwards and orange star floating up over a blue background",
        _scene("blue", ("pink", "square", "down"), ("orange", "star", "up")),
    ),
    (
        "black star moving left and a yellow ball getting smaller, the background is green",
        _scene("green", ("black", "star", "left"), ("yellow", "circle", "shrinking")),
    ),
    # With words that say nothing the world can show (requests, style, other nouns).
    (
        "a pink cirlce shrinking on a gray backround, slowly, like a magenta balloon",
        _scene("gray", ("pink", "circle", "shrinking")),
    ),
    ("make me a video of a red circle moving left on a blue background", _scene("blue", ("red", "circle", "left"))),
    ("cinematic shot: a yellow star growing on black, 4k", _scene("black", ("yellow", "star", "growing"))),
    ("pls show a green square going up on white thx", _scene("white", ("green", "square", "up"))),
    (
        "a cute blue triangle moving right on an orange background, high quality",
        _scene("orange", ("blue", "triangle", "right")),
    ),
    ("I want a white star falling on a purple background", _scene("purple", ("white", "star", "down"))),
    ("animation of a black circle shrinking on a cyan background", _scene("cyan", ("black", "circle", "shrinking"))),
    (
        "simple clip - orange square standing still, pink background, no text",
        _scene("pink", ("orange", "square", "still")),
    ),
    ("a red ball bouncing to the right on a green background", _scene("green", ("red", "circle", "right"))),
    (
        "hey! can you do a purple star moving down and a yellow circle moving up on gray",
        _scene("gray", ("purple", "star", "down"), ("yellow", "circle", "up")),
    ),
)


def typed_prompts() -> list[EvalItem]:
    return [EvalItem(p, s) for p, s in TYPED]


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
    # ... and after an autoencoder round trip: the most this engine's latent space lets any
    # generator score (a generator that made perfect latents could do no better).
    tae = getattr(getattr(engine, "models", None), "tae", None)  # an engine without a TAE: no ceiling
    ceiling = {"shape": [], "satisfied": [], 1: [], 2: []}
    read = []  # the prompt rewriter read the prompt exactly (when the engine rewrites)
    rewrite = getattr(engine, "rewrite", lambda req: None)
    for i, item in enumerate(items):
        req = replace(base, prompt=item.prompt, seed=i)
        reading = rewrite(req)
        if reading is not None:
            want = [c[k] for (_, c), k in zip(SLOTS, caption_labels(item.scene, req.frames == 1), strict=True)]
            read.append(reading.sure and list(reading.read.values()) == want)
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
        if tae is not None:
            best = score(analyse(roundtrip(tae, true_clip)), item.scene, image=req.frames == 1)
            ceiling["shape"] += best.shape
            ceiling["satisfied"].append(best.satisfied)
            ceiling[len(item.scene.objects)].append(best.satisfied)
        log(f"ok  {item.prompt!r}" if sc.satisfied else f"BAD {item.prompt!r}  [{explain(analysis, item.scene)}]")
    out = {k: float(np.mean(v)) for k, v in totals.items()}
    out |= {f"satisfied_{k}obj": float(np.mean(v)) for k, v in by_n.items() if v}
    out["truth_satisfied"] = float(np.mean(truth))
    if tae is not None:
        out["roundtrip_shape"] = float(np.mean(ceiling["shape"]))
        out["roundtrip_satisfied"] = float(np.mean(ceiling["satisfied"]))
        out |= {f"roundtrip_satisfied_{k}obj": float(np.mean(ceiling[k])) for k in (1, 2) if ceiling[k]}
    if read:
        out["read_exactly"] = float(np.mean(read))
    return out
