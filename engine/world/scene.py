"""Scene descriptions of the shapes world and the sampler that draws them.

A scene is pure data (frozen dataclasses): the renderer draws it at any size and length, the
captioner describes it, edits and characters derive new scenes from it with `dataclasses.replace`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from .palette import COLOR_NAMES, DIRECTIONS, MOTIONS, PATTERNS, SHAPES

DEFAULT_SIZE = 0.14
GROW_RANGE = (0.08, 0.22)  # r at the first and last frame of a growing clip
TRAVEL = 0.5  # how far a moving centre travels over the clip
CHARACTER_SCALE = 1.5  # characters are drawn 1.5 times a plain object's size (docs/world.md): r = 0.21


@dataclass(frozen=True)
class Pattern:
    """A two-colour fill for characters; the object's own colour is the first colour."""

    kind: str  # one of PATTERNS
    color2: str
    period: float = 0.5  # in units of the object's size r (docs/world.md: about r/2)

    def __post_init__(self) -> None:
        assert self.kind in PATTERNS, f"unknown pattern {self.kind!r}"
        assert self.color2 in COLOR_NAMES, f"unknown colour {self.color2!r}"


@dataclass(frozen=True)
class ShapeObject:
    color: str
    shape: str
    motion: str
    # The fixed coordinates: for moving objects only the axis that does not move is used.
    x: float = 0.5
    y: float = 0.5
    pattern: Pattern | None = None

    def __post_init__(self) -> None:
        assert self.color in COLOR_NAMES, f"unknown colour {self.color!r}"
        assert self.shape in SHAPES, f"unknown shape {self.shape!r}"
        assert self.motion in MOTIONS, f"unknown motion {self.motion!r}"

    def centre(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centre (x, y) at clip times s in [0, 1]."""
        s = np.asarray(s, dtype=np.float64)
        if self.motion in DIRECTIONS:
            dx, dy = DIRECTIONS[self.motion]
            # Travel 0.5 centred on the canvas: left goes 0.75 -> 0.25, and so on.
            x = 0.5 + dx * TRAVEL * (s - 0.5) if dx else np.full_like(s, self.x)
            y = 0.5 + dy * TRAVEL * (s - 0.5) if dy else np.full_like(s, self.y)
            return x, y
        return np.full_like(s, self.x), np.full_like(s, self.y)

    def size(self, s: np.ndarray) -> np.ndarray:
        """Half side r of the bounding box at clip times s."""
        s = np.asarray(s, dtype=np.float64)
        k = CHARACTER_SCALE if self.pattern is not None else 1.0  # a character: 0.12 -> 0.33
        lo, hi = GROW_RANGE[0] * k, GROW_RANGE[1] * k
        if self.motion == "growing":
            return lo + (hi - lo) * s
        if self.motion == "shrinking":
            return hi - (hi - lo) * s
        return np.full_like(s, DEFAULT_SIZE * k)


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[ShapeObject, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        colors = [self.background] + [o.color for o in self.objects]
        colors += [o.pattern.color2 for o in self.objects if o.pattern is not None]
        assert len(set(colors)) == len(colors), f"colours in a scene must be distinct: {colors}"
        assert 0 <= len(self.objects) <= 2, "a scene has one or two objects"

    def still(self) -> Scene:
        """The same scene with nothing moving (what an image shows)."""
        return replace(self, objects=tuple(replace(o, motion="still") for o in self.objects))


def object_key(obj: ShapeObject, background: str) -> str:
    return f"{obj.color}|{obj.shape}|{obj.motion}|{background}"


def is_held_out(obj: ShapeObject, background: str, fraction: float = 0.1) -> bool:
    """True for the (colour, shape, motion, background) combinations kept out of training.

    A stable hash, so training, evaluation and every machine agree without a stored list.
    """
    h = hashlib.sha256(object_key(obj, background).encode()).digest()
    return int.from_bytes(h[:4], "little") / 2**32 < fraction


def scene_is_held_out(scene: Scene) -> bool:
    return any(is_held_out(o, scene.background) for o in scene.objects)


def sample_object(rng: np.random.Generator, color: str, motion: str | None = None) -> ShapeObject:
    motion = motion or MOTIONS[rng.integers(len(MOTIONS))]
    x, y = rng.uniform(0.3, 0.7, size=2)
    return ShapeObject(color=color, shape=SHAPES[rng.integers(len(SHAPES))], motion=motion, x=float(x), y=float(y))


def sample_scene(
    rng: np.random.Generator,
    n_objects: int | None = None,
    image: bool = False,
    held_out: bool | None = False,
) -> Scene:
    """Draw a scene. held_out=False: only training combinations; True: every object held out;
    None: anything."""
    while True:
        n = n_objects or int(rng.integers(1, 3))
        colors = rng.choice(len(COLOR_NAMES), size=n + 1, replace=False)
        objs = tuple(sample_object(rng, COLOR_NAMES[c], "still" if image else None) for c in colors[1:])
        scene = Scene(background=COLOR_NAMES[colors[0]], objects=objs)
        if held_out is None:
            return scene
        flags = [is_held_out(o, scene.background) for o in objs]
        if held_out and all(flags):
            return scene
        if not held_out and not any(flags):
            return scene
