"""Continuing a clip (docs/world.md, extension): states, speeds, exact agreement with render(),
the canvas rule, and the samplers that train and measure continuation."""

import numpy as np
import pytest

from engine.world.analyse import analyse
from engine.world.continuation import (
    FRAME_STEPS,
    Continuation,
    ObjectState,
    advance,
    continuation_frames,
    continuation_ok,
    continue_scene,
    handoff,
    on_canvas,
    render_states,
    sample_continuation,
    sample_window,
    sample_window_plan,
    state_at,
    window_frames,
)
from engine.world.palette import DIRECTIONS, MOTIONS
from engine.world.render import render
from engine.world.scene import Pattern, Scene, ShapeObject, is_held_out, scene_is_held_out

STEP = 0.5 / 31  # the world's speed: TRAVEL per 31 frame steps
BALL = ShapeObject("red", "circle", "still")


def _placed(scene: Scene, frame: int = 0, frames: int = 32):
    return [(o, state_at(o, frame, frames)) for o in scene.objects]


@pytest.mark.parametrize("motion", MOTIONS)
def test_render_states_reproduces_render_exactly(motion):
    # A plain object and a character with a pattern, off-centre fixed coordinates.
    scene = Scene(
        "blue",
        (
            ShapeObject("red", "star", motion, 0.37, 0.61),
            ShapeObject("green", "triangle", motion, 0.58, 0.43, Pattern("checker", "white")),
        ),
    )
    assert np.array_equal(render_states("blue", _placed(scene), 32), render(scene, 64, 32))


def test_render_states_reproduces_render_for_every_pattern_and_shape():
    for i, (kind, shape) in enumerate(
        zip(("hstripes", "vstripes", "diagonal", "dots"), ("circle", "square", "star", "triangle"), strict=True)
    ):
        motion = MOTIONS[i * 2 % len(MOTIONS)]
        scene = Scene("black", (ShapeObject("yellow", shape, motion, 0.45, 0.52, Pattern(kind, "purple")),))
        assert np.array_equal(render_states("black", _placed(scene), 32, size=48), render(scene, 48, 32)), kind


def test_state_at_is_the_canonical_path():
    o = ShapeObject("red", "circle", "left", 0.5, 0.4)
    assert state_at(o, 0) == ObjectState(0.75, 0.4, 0.14)
    assert state_at(o, 31) == ObjectState(0.25, 0.4, 0.14)
    g = ShapeObject("red", "circle", "growing", 0.3, 0.6, Pattern("dots", "white"))
    assert state_at(g, 0).r == pytest.approx(0.12) and state_at(g, 31).r == pytest.approx(0.33)
    with pytest.raises(AssertionError):
        state_at(o, 32)


@pytest.mark.parametrize("motion", ["left", "right", "up", "down"])
def test_a_linear_move_travels_half_the_canvas_in_31_steps(motion):
    o = ShapeObject("red", "circle", motion)
    start = ObjectState(0.4, 0.55, 0.1)
    end = advance(o, start, 31)
    dx, dy = DIRECTIONS[motion]
    assert end.cx - start.cx == pytest.approx(0.5 * dx, abs=1e-12)
    assert end.cy - start.cy == pytest.approx(0.5 * dy, abs=1e-12)
    assert end.r == start.r
    one = advance(o, start, 1)
    assert abs(one.cx - start.cx) + abs(one.cy - start.cy) == pytest.approx(STEP, abs=1e-12)
    # Not clamped: 62 steps from 0.4 carries it 1.0, off the canvas (on_canvas says so).
    far = advance(o, start, 62)
    assert abs(far.cx - start.cx) + abs(far.cy - start.cy) == pytest.approx(1.0, abs=1e-12)
    assert not on_canvas(o, far)


def test_growing_and_shrinking_stop_at_the_limits():
    grow = ShapeObject("red", "circle", "growing")
    start = ObjectState(0.5, 0.5, 0.14)
    assert advance(grow, start, 10).r == pytest.approx(0.14 + 10 * 0.14 / FRAME_STEPS)
    assert advance(grow, start, 31).r == pytest.approx(0.22)  # reached after 0.08 / (0.14 / 31) ~ 17.7 steps
    assert advance(grow, start, 1000).r == pytest.approx(0.22)
    shrink = ShapeObject("red", "circle", "shrinking")
    assert advance(shrink, start, 5).r == pytest.approx(0.14 - 5 * 0.14 / 31)
    assert advance(shrink, start, 40).r == pytest.approx(0.08)
    # A character's limits are 1.5 times: 0.12 .. 0.33.
    char = ShapeObject("red", "circle", "growing", pattern=Pattern("dots", "white"))
    assert advance(char, ObjectState(0.5, 0.5, 0.21), 100).r == pytest.approx(0.33)
    assert advance(char, ObjectState(0.5, 0.5, 0.21), 3).r == pytest.approx(0.21 + 3 * 0.21 / 31)
    # Centres never move while the size changes; still keeps everything.
    grown = advance(grow, start, 7)
    assert (grown.cx, grown.cy) == (0.5, 0.5)
    still = ShapeObject("red", "circle", "still")
    assert advance(still, ObjectState(0.3, 0.7, 0.11), 25) == ObjectState(0.3, 0.7, 0.11)


def test_advance_from_frame_zero_follows_the_canonical_clip():
    for motion in MOTIONS:
        o = ShapeObject("red", "square", motion, 0.42, 0.57)
        s0 = state_at(o, 0)
        for f in (1, 9, 18, 31):
            assert advance(o, s0, f) == state_at(o, f), (motion, f)


def _one(motion: str, after: str | None, x: float = 0.5, y: float = 0.5) -> Continuation:
    return continue_scene(Scene("blue", (ShapeObject("red", "circle", motion, x, y),)), [after])


def test_continuation_starts_at_the_last_frame_and_moves_from_it():
    c = _one("right", "left")
    assert c.starts == (ObjectState(0.75, 0.5, 0.14),)
    assert c.prompt == "a red circle moving left on a blue background"
    new = continuation_frames(c, 8)
    assert new.shape == (8, 64, 64, 3) and new.dtype == np.uint8
    obj = c.after.objects[0]
    first = render_states("blue", [(obj, advance(obj, c.starts[0], 1))], 1)
    assert np.array_equal(new[0], first[0])
    last_source = render(c.source, 64, 32)[-1]
    changed = (np.abs(new[0].astype(int) - last_source.astype(int)).max(-1) > 30).sum()
    assert changed >= 15, changed  # a 1-pixel shift of a 9-pixel-radius circle moves its two sides
    # Read back: after 8 steps the centre has come 8/62 of the canvas back to the left.
    xs = analyse(new).objects[0].centres[:, 0]
    assert xs[-1] - 0.75 == pytest.approx(-8 * STEP, abs=1.5 / 64)
    assert np.polyfit(np.arange(8), xs, 1)[0] == pytest.approx(-STEP, rel=0.25)


def test_a_still_or_fully_grown_object_stays_exactly():
    source_last = render(Scene("blue", (ShapeObject("red", "circle", "right", 0.5, 0.4),)), 64, 32)[-1]
    new = continuation_frames(_one("right", "still", y=0.4), 6)
    assert all(np.array_equal(f, source_last) for f in new)
    # A grown object that keeps growing is already at its limit: nothing changes.
    grown = continue_scene(Scene("gray", (ShapeObject("pink", "star", "growing", 0.4, 0.6),)), [None], 32)
    assert grown.after.objects[0].motion == "growing" and grown.starts[0].r == pytest.approx(0.22)
    frames = continuation_frames(grown, 5)
    assert all(np.array_equal(f, render(grown.source, 64, 32)[-1]) for f in frames)


def test_unnamed_objects_keep_their_motion_and_looks():
    src = Scene("black", (ShapeObject("red", "circle", "still", 0.4, 0.4), ShapeObject("cyan", "star", "down", 0.6)))
    c = continue_scene(src, [None, "up"])
    assert [o.motion for o in c.after.objects] == ["still", "up"]
    assert [(o.color, o.shape) for o in c.after.objects] == [("red", "circle"), ("cyan", "star")]
    with pytest.raises(AssertionError):
        Continuation(src, 32, Scene("white", src.objects), c.starts)


def test_continuation_ok_rejects_a_move_off_the_canvas():
    # Right edge at 0.75 + 0.14 = 0.89: still on after 6 steps (0.987), off after 8 (1.019).
    c = _one("right", None)
    assert continuation_ok(c, 6) and not continuation_ok(c, 8)
    assert continuation_ok(_one("right", "left"), 32)  # back to 0.234, its box from 0.094
    assert continuation_ok(_one("right", "still"), 1000)
    assert on_canvas(BALL, ObjectState(0.5, 0.5, 0.5)) and not on_canvas(BALL, ObjectState(0.5, 0.5, 0.5), margin=0.01)
    assert not on_canvas(BALL, ObjectState(0.1, 0.5, 0.14)) and not on_canvas(BALL, ObjectState(0.5, 0.9, 0.14))


def test_sample_continuation_is_deterministic_on_canvas_and_changes_at_its_rate():
    a = [sample_continuation(np.random.default_rng(s)) for s in range(5)]
    assert a == [sample_continuation(np.random.default_rng(s)) for s in range(5)]
    rng = np.random.default_rng(7)
    for change, (low, high) in ((0.5, (0.43, 0.57)), (0.2, (0.14, 0.26)), (0.0, (0.0, 0.0)), (1.0, (1.0, 1.0))):
        cs = [sample_continuation(rng, change=change) for _ in range(250)]
        assert all(continuation_ok(c, 32) for c in cs)
        changed = [a.motion != b.motion for c in cs for a, b in zip(c.source.objects, c.after.objects, strict=True)]
        assert low <= np.mean(changed) <= high, (change, np.mean(changed))
        assert all(c.starts == tuple(state_at(o, 31) for o in c.source.objects) for c in cs)
    # Shorter continuations admit more: and a kept move is then possible.
    short = [sample_continuation(rng, n=4, change=0.0) for _ in range(100)]
    assert any(o.motion in DIRECTIONS for c in short for o in c.after.objects)
    assert all(continuation_ok(c, 4) for c in short)


def test_sample_continuation_held_out():
    rng = np.random.default_rng(3)
    for _ in range(60):
        c = sample_continuation(rng, held_out=False)
        assert not scene_is_held_out(c.source) and not scene_is_held_out(c.after)
    assert all(scene_is_held_out(sample_continuation(rng, held_out=True).source) for _ in range(10))
    c = sample_continuation(rng, held_out=True)
    assert all(is_held_out(o, c.source.background) for o in c.source.objects)


def test_sample_window_hands_over_one_step_later():
    for seed in range(4):
        w = sample_window_plan(np.random.default_rng(seed), given=10)
        frames, scene = sample_window(np.random.default_rng(seed), given=10)
        assert frames.shape == (32, 64, 64, 3) and scene == w.after
        assert np.array_equal(frames, window_frames(w))
        bg = w.before.background
        # The given part follows the before motions from the random starts...
        assert np.array_equal(frames[:10], render_states(bg, list(zip(w.before.objects, w.starts, strict=True)), 10))
        # ...and frame 10 is the after motions one step from frame 9's state.
        mid = handoff(w)
        assert mid == tuple(advance(o, s, 9) for o, s in zip(w.before.objects, w.starts, strict=True))
        nxt = [(o, advance(o, s, 1)) for o, s in zip(w.after.objects, mid, strict=True)]
        assert np.array_equal(frames[10], render_states(bg, nxt, 1)[0])
        for k in range(32):  # all on the canvas
            states = (
                [advance(o, s, k) for o, s in zip(w.before.objects, w.starts, strict=True)]
                if k < 10
                else [advance(o, s, k - 9) for o, s in zip(w.after.objects, mid, strict=True)]
            )
            assert all(on_canvas(o, s) for o, s in zip(w.before.objects, states, strict=True))


def test_sample_window_starts_anywhere_and_changes_half_the_motions():
    rng = np.random.default_rng(11)
    ws = [sample_window_plan(rng, given=12) for _ in range(300)]
    xs = np.array([s.cx for w in ws for s in w.starts])
    # Not only the canonical places (0.25, 0.75 and [0.3, 0.7]): the whole canvas.
    assert xs.min() < 0.2 and xs.max() > 0.8
    rs = np.array([s.r for w in ws for s in w.starts])
    assert rs.min() < 0.09 and rs.max() > 0.21
    changed = [a.motion != b.motion for w in ws for a, b in zip(w.before.objects, w.after.objects, strict=True)]
    assert 0.42 <= np.mean(changed) <= 0.58


def _clear(w, tail: int) -> bool:
    """True when the after part is unambiguous to read: sizes change by most of a growth (not
    stopped at a limit early), no object is so small that the analyser's erosion loses it (a star
    at r < 0.1 keeps only a few core pixels), and the objects' boxes never touch."""
    starts = handoff(w)
    for o, s in zip(w.after.objects, starts, strict=True):
        if o.motion in ("growing", "shrinking") and abs(advance(o, s, tail - 1).r - s.r) < 0.09:
            return False
        if min(s.r, advance(o, s, tail).r) < 0.1:
            return False
    if len(starts) == 2:
        for k in range(tail):
            a, b = (advance(o, s, k + 1) for o, s in zip(w.after.objects, starts, strict=True))
            if abs(a.cx - b.cx) < a.r + b.r + 0.03 and abs(a.cy - b.cy) < a.r + b.r + 0.03:
                return False
    return True


def test_the_analyser_reads_the_after_motions_from_the_frames_after_the_given_ones():
    given, checked, moving, sized = 8, 0, 0, 0
    # Seeds 90 and 102 are clear growing and shrinking cases (rarer: the size must change by 0.09
    # before it stops at a limit); the first seeds give still objects and linear moves.
    for seed in [90, 102, *range(40)]:
        w = sample_window_plan(np.random.default_rng(seed), given=given)
        if not _clear(w, 32 - given):
            continue
        frames, scene = sample_window(np.random.default_rng(seed), given=given)
        read = {o.color: o for o in analyse(frames[given:]).objects}
        for o in scene.objects:
            assert read[o.color].motion == o.motion, (seed, o)
            if o.motion in DIRECTIONS:  # the read speed is the world's: 1/62 of the canvas a frame
                c = read[o.color].centres
                axis = 0 if DIRECTIONS[o.motion][0] else 1
                slope = np.polyfit(np.arange(len(c)), c[:, axis], 1)[0]
                assert slope == pytest.approx(sum(DIRECTIONS[o.motion]) * STEP, rel=0.15), (seed, o, slope)
                moving += 1
            sized += o.motion in ("growing", "shrinking")
        checked += 1
        if checked >= 8 and moving >= 3:
            break
    assert checked >= 8 and moving >= 3 and sized >= 2, (checked, moving, sized)
