"""Continuing a clip (docs/world.md, extension): the ground truth that trains and measures a model
that continues clips and animates pictures.

N new frames follow the source's last frame. Each object starts from its state there (centre and
size) and moves as the continuation's prompt says, at the world's speed: a linear move travels
TRAVEL per FRAME_STEPS frame steps, growing and shrinking change r by (hi - lo) per FRAME_STEPS
steps and stop at the size limits, "still" keeps the state. New frame k (k = 1..N) is k steps after
the source's last frame, which is not repeated. Colours, shapes, patterns and the background stay.

States are plain numbers rather than scenes because a continued object is generally off the
canonical paths a Scene describes (a circle that moved right and now moves up). `advance` still
computes with ShapeObject's own expressions, so a state taken at frame 0 of a canonical clip
reproduces `render` bit for bit: the two descriptions cannot drift apart unnoticed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .captions import canonical_caption
from .palette import COLORS, DIRECTIONS, MOTIONS
from .render import _draw_object, clip_times
from .scene import CHARACTER_SCALE, GROW_RANGE, TRAVEL, Scene, ShapeObject, is_held_out, sample_scene

FRAME_STEPS = 31  # frame steps over which the canonical 32-frame clip does its whole motion
# Redraws before a sampler gives up on keeping every object on the canvas (it then falls back to
# all "still", which always stays on: see sample_continuation). Acceptance is ~20% or better
# for 32 new frames, so the fallback is practically never taken.
MAX_TRIES = 200


@dataclass(frozen=True)
class ObjectState:
    """Where an object is and how big: centre (cx, cy) normalised to [0, 1], half box side r."""

    cx: float
    cy: float
    r: float


def _size_limits(obj: ShapeObject) -> tuple[float, float]:
    """(lo, hi) of growing and shrinking, as ShapeObject.size computes them (characters: x1.5)."""
    k = CHARACTER_SCALE if obj.pattern is not None else 1.0
    return GROW_RANGE[0] * k, GROW_RANGE[1] * k


def state_at(obj: ShapeObject, frame: int, frames: int = 32) -> ObjectState:
    """The object's state at a frame of its canonical clip of `frames` frames (what render draws)."""
    assert 0 <= frame < frames, f"frame {frame} outside a clip of {frames}"
    s = clip_times(frames)  # the whole array, as render evaluates it, so the numbers are the same
    xs, ys = obj.centre(s)
    return ObjectState(float(xs[frame]), float(ys[frame]), float(obj.size(s)[frame]))


def advance(obj: ShapeObject, state: ObjectState, steps: float) -> ObjectState:
    """The state `steps` frame steps after `state` under obj.motion, at the world's speed.

    Each moving quantity is continued along the object's canonical path from the clip time s0 at
    which that path passes the start, with ShapeObject's expressions and clip_times' sampling
    (k * (1 / 31)), so that starting at frame 0 gives render's numbers exactly. Growing and
    shrinking stop at the size limits (a start already past a limit stays where it is); linear
    moves are not clamped: whether they leave the canvas is for on_canvas to say.
    """
    ds = steps * (1.0 / FRAME_STEPS)  # clip time; linspace(0, 1, 32)[k] is k * (1 / 31) bit for bit
    if obj.motion in DIRECTIONS:
        dx, dy = DIRECTIONS[obj.motion]
        cx, cy = state.cx, state.cy
        if dx:
            s = (cx - 0.5) / (dx * TRAVEL) + 0.5 + ds
            cx = 0.5 + dx * TRAVEL * (s - 0.5)
        if dy:
            s = (cy - 0.5) / (dy * TRAVEL) + 0.5 + ds
            cy = 0.5 + dy * TRAVEL * (s - 0.5)
        return ObjectState(cx, cy, state.r)
    if obj.motion in ("growing", "shrinking"):
        lo, hi = _size_limits(obj)
        if obj.motion == "growing":
            path = lambda s: lo + (hi - lo) * s  # noqa: E731 - ShapeObject.size's expression
            s0 = (state.r - lo) / (hi - lo)
        else:
            path = lambda s: hi - (hi - lo) * s  # noqa: E731
            s0 = (hi - state.r) / (hi - lo)
        # The limits are the path's own ends (lo + (hi - lo) * 1.0 need not be hi to the last bit).
        a, b = sorted((path(0.0), path(1.0)))
        r = min(max(path(s0 + ds), min(a, state.r)), max(b, state.r))
        return ObjectState(state.cx, state.cy, r)
    return state  # still


def on_canvas(obj: ShapeObject, state: ObjectState, margin: float = 0.0) -> bool:
    """The object's bounding box (centre +- r, the world's size for every shape) lies within
    [margin, 1 - margin] on both axes. obj is taken so callers pass their (object, state) pairs."""
    lo, hi = margin, 1.0 - margin
    return (
        lo <= state.cx - state.r and state.cx + state.r <= hi and lo <= state.cy - state.r and state.cy + state.r <= hi
    )


def render_states(
    background: str,
    placed: Sequence[tuple[ShapeObject, ObjectState]],
    frames: int,
    size: int = 64,
    step: float = 1.0,
    first: float = 0.0,
) -> np.ndarray:
    """Frames (T, R, R, 3) uint8: frame k draws each object at advance(obj, start, first + k * step),
    later objects over earlier ones, with render's own drawing.

    With every start at state_at(obj, 0, 32), step 1 and 32 frames this is render(scene) exactly;
    first = 1 gives a continuation's new frames, a non-integer step a finer (interpolated) sampling.
    """
    placed = tuple(placed)
    bg = np.array(COLORS[background], np.float32)
    out = np.empty((frames, size, size, 3), np.uint8)
    for k in range(frames):
        canvas = np.broadcast_to(bg, (size, size, 3)).copy()
        for obj, start in placed:
            st = advance(obj, start, first + k * step)
            _draw_object(canvas, obj, st.cx, st.cy, st.r)
        out[k] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return out


def _stays_on(placed: Sequence[tuple[ShapeObject, ObjectState]], steps: range) -> bool:
    """Every object on the canvas at every one of these steps."""
    return all(on_canvas(obj, advance(obj, start, k)) for obj, start in placed for k in steps)


@dataclass(frozen=True)
class Continuation:
    """A source clip and how it goes on.

    `after` holds the same objects with the continuation's motions (their x, y fields are the
    source's; where they are comes from `starts`); its canonical caption is the prompt.
    """

    source: Scene  # the canonical source clip's scene
    source_frames: int
    after: Scene
    starts: tuple[ObjectState, ...]  # each object's state at the source's last frame

    def __post_init__(self) -> None:
        assert self.source.background == self.after.background, "a continuation keeps the background"
        assert len(self.source.objects) == len(self.after.objects) == len(self.starts), "one start per object"
        for a, b in zip(self.source.objects, self.after.objects, strict=True):
            assert (a.color, a.shape, a.pattern) == (b.color, b.shape, b.pattern), "objects keep their looks"

    @property
    def prompt(self) -> str:
        return canonical_caption(self.after)


def continue_scene(source: Scene, motions: Sequence[str | None], source_frames: int = 32) -> Continuation:
    """The continuation of source's canonical clip in which object i takes motions[i] (None: it
    keeps its motion, as an object the prompt does not name does)."""
    assert len(motions) == len(source.objects), "one motion (or None) per object"
    objs = tuple(o if m is None else replace(o, motion=m) for o, m in zip(source.objects, motions, strict=True))
    starts = tuple(state_at(o, source_frames - 1, source_frames) for o in source.objects)
    return Continuation(source, source_frames, replace(source, objects=objs), starts)


def continuation_frames(c: Continuation, n: int, size: int = 64) -> np.ndarray:
    """The n new frames (T, R, R, 3) uint8: frame k (k = 1..n) is k steps after the source's last."""
    return render_states(c.after.background, tuple(zip(c.after.objects, c.starts, strict=True)), n, size, first=1.0)


def continuation_ok(c: Continuation, n: int) -> bool:
    """No object leaves the canvas during the n new frames: only such continuations measure a
    model, since the truth of an object beyond the edge cannot be read back from its frames."""
    return _stays_on(tuple(zip(c.after.objects, c.starts, strict=True)), range(1, n + 1))


def _new_motions(
    rng: np.random.Generator, scene: Scene, change: Sequence[bool], held_out: bool | None
) -> tuple[ShapeObject, ...]:
    """The scene's objects, each flagged one with a motion other than its own.

    held_out=False also keeps the new (colour, shape, motion, background) combinations out of the
    held-out set, so training never shows one, in the source frames or in the prompt.
    """
    objs = []
    for o, flag in zip(scene.objects, change, strict=True):
        options = [m for m in MOTIONS if m != o.motion]
        if held_out is False:
            options = [m for m in options if not is_held_out(replace(o, motion=m), scene.background)]
        objs.append(replace(o, motion=options[int(rng.integers(len(options)))]) if flag and options else o)
    return tuple(objs)


def sample_continuation(
    rng: np.random.Generator, held_out: bool | None = None, n: int = 32, frames: int = 32, change: float = 0.5
) -> Continuation:
    """A source scene (scene.sample_scene with this held_out) and, with probability `change` per
    object, a new motion, redrawn until no object leaves the canvas during the n new frames.

    Which objects change is drawn once, before the redraws: the canvas rejects far more kept
    motions than changed ones (a mover that goes on past frame 31 mostly leaves the canvas), so
    redrawing the flags too would make the change rate drift above `change`. The source scene and
    the new motions are redrawn. After MAX_TRIES the last source is continued with every object
    "still", which always stays on the canvas, so the sampler always returns.
    """
    flags = rng.random(2) < change  # at most two objects in a scene
    for _ in range(MAX_TRIES):
        source = sample_scene(rng, held_out=held_out)
        after = _new_motions(rng, source, flags[: len(source.objects)], held_out)
        c = continue_scene(source, [o.motion for o in after], frames)
        if continuation_ok(c, n):
            return c
    return continue_scene(source, ["still"] * len(source.objects), frames)


@dataclass(frozen=True)
class Window:
    """A training clip for continuation: `given` frames under the `before` motions from random
    starts, then frames - given more continuing from frame given - 1 under the `after` motions."""

    before: Scene
    after: Scene  # its canonical caption describes the frames after the given ones
    starts: tuple[ObjectState, ...]  # each object's state at frame 0
    given: int
    frames: int


def handoff(w: Window) -> tuple[ObjectState, ...]:
    """Each object's state at frame given - 1, where the after motions take over."""
    return tuple(advance(o, s, w.given - 1) for o, s in zip(w.before.objects, w.starts, strict=True))


def window_frames(w: Window, size: int = 64) -> np.ndarray:
    """The window's frames (frames, R, R, 3) uint8; frame given is one step after frame given - 1."""
    head = render_states(w.before.background, tuple(zip(w.before.objects, w.starts, strict=True)), w.given, size)
    tail = render_states(
        w.after.background, tuple(zip(w.after.objects, handoff(w), strict=True)), w.frames - w.given, size, first=1.0
    )
    return np.concatenate([head, tail])


def _random_state(rng: np.random.Generator, obj: ShapeObject) -> ObjectState:
    """Any size in the object's range and any centre that keeps it on the canvas, so a model learns
    to continue objects anywhere, not only on the canonical paths."""
    lo, hi = _size_limits(obj)
    r = float(rng.uniform(lo, hi))
    cx, cy = rng.uniform(r, 1.0 - r, size=2)
    return ObjectState(float(cx), float(cy), r)


def sample_window_plan(rng: np.random.Generator, given: int, frames: int = 32, held_out: bool | None = None) -> Window:
    """The plan behind sample_window: a scene (sample_scene with this held_out), random starts,
    and each object's after motion changed with probability 0.5, redrawn until every object stays
    on the canvas in every frame. As in sample_continuation the change flags are drawn once, and
    after MAX_TRIES the last draw is used with every motion "still" (always on the canvas)."""
    assert 1 <= given < frames, f"given {given} must leave frames to continue in a clip of {frames}"
    flags = rng.random(2) < 0.5
    for _ in range(MAX_TRIES):
        before = sample_scene(rng, held_out=held_out)
        starts = tuple(_random_state(rng, o) for o in before.objects)
        after = replace(before, objects=_new_motions(rng, before, flags[: len(before.objects)], held_out))
        w = Window(before, after, starts, given, frames)
        if _stays_on(tuple(zip(before.objects, starts, strict=True)), range(given)) and _stays_on(
            tuple(zip(after.objects, handoff(w), strict=True)), range(1, frames - given + 1)
        ):
            return w
    return Window(before.still(), before.still(), starts, given, frames)


def sample_window(
    rng: np.random.Generator, given: int, frames: int = 32, size: int = 64, held_out: bool | None = None
) -> tuple[np.ndarray, Scene]:
    """(frames (T, R, R, 3) uint8, the scene whose canonical caption describes the frames after
    the given ones): one training example for continuing a clip."""
    w = sample_window_plan(rng, given, frames, held_out)
    return window_frames(w, size), w.after
