"""Characters as docs/world.md describes them (Characters): the pattern's period and anchoring, the
size a character is drawn at, the held-out colour pairs and the prompts that name it."""

import re

import numpy as np
import pytest

from engine.world.characters import (
    CHARACTER_NAMES,
    HELD_OUT_PAIRS,
    Character,
    all_characters,
    character_prompt,
    sample_character,
)
from engine.world.palette import COLOR_NAMES, COLOR_WORDS, COLORS, MOTION_WORDS, MOTIONS, PATTERNS, SHAPES
from engine.world.render import _draw_object, render, render_reference
from engine.world.scene import ShapeObject

N = 512  # large renders, so periods are measured to a pixel


def draw(ch: Character, cx: float, cy: float, r: float, bg: str = "black", n: int = N) -> np.ndarray:
    canvas = np.broadcast_to(np.array(COLORS[bg], np.float32), (n, n, 3)).copy()
    _draw_object(canvas, ch.object(), cx, cy, r)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def pattern_share(line: np.ndarray, ch: Character) -> np.ndarray:
    """How much of each pixel along a line (L, 3) is the pattern colour rather than the fill
    (anti-aliased pixels are blends of the two)."""
    a, b = np.array(COLORS[ch.color], float), np.array(COLORS[ch.color2], float)
    return np.clip((line.astype(float) - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)


def runs(share: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) of each stretch of the pattern colour, to sub-pixel precision: a run's length
    is its coverage summed, counting the blended pixels either side."""
    on = share > 0.5
    out, i = [], 0
    while i < len(on):
        if on[i]:
            j = i
            while j < len(on) and on[j]:
                j += 1
            lo, hi = max(i - 1, 0), min(j + 1, len(on))
            length = float(share[lo:hi].sum())
            # The run's start: where its coverage begins (a blended first pixel counts partly).
            start = i - (float(share[i - 1]) if i > 0 else 0.0)
            out.append((start, start + length))
            i = j
        else:
            i += 1
    return out


def interior_runs(share: np.ndarray, inside: tuple[float, float]) -> list[tuple[float, float]]:
    """The runs that lie inside the shape (not cut by its edge)."""
    return [(a, b) for a, b in runs(share) if a > inside[0] + 1 and b < inside[1] - 1]


# A square character fills its box, so its pattern is seen whole: centred in a 512 px picture
# at r = 0.3, r is 153.6 px, p = r / 2 = 76.8 px and the square spans 102.4 .. 409.6.
R = 0.3
P = R * N / 2
C = N / 2
INSIDE = (C - R * N, C + R * N)


def square(pattern: str) -> Character:
    return Character("square", "white", "blue", pattern)


@pytest.mark.parametrize("pattern", ["vstripes", "checker"])
def test_vertical_stripes_and_checker_cells_are_p_wide_along_a_row(pattern):
    img = render_reference(square(pattern).object(), "black", N)
    row = int(C + P / 2)  # the middle of the first cell row below the centre
    found = interior_runs(pattern_share(img[row], square(pattern)), INSIDE)
    assert found, "no whole stripe along the row"
    for a, b in found:
        assert abs((b - a) - P) <= 1.0, (a, b, P)
    # Anchored at the centre: a boundary of the pattern lies on the centre column.
    assert min(min(abs(a - C), abs(b - C)) for a, b in runs(pattern_share(img[row], square(pattern)))) <= 1.0


@pytest.mark.parametrize("pattern", ["hstripes", "checker"])
def test_horizontal_stripes_and_checker_cells_are_p_tall_down_a_column(pattern):
    img = render_reference(square(pattern).object(), "black", N)
    col = int(C + P / 2)
    share = pattern_share(img[:, col], square(pattern))
    found = interior_runs(share, INSIDE)
    assert found
    for a, b in found:
        assert abs((b - a) - P) <= 1.0, (a, b, P)
    assert min(min(abs(a - C), abs(b - C)) for a, b in runs(share)) <= 1.0


def test_vertical_stripes_run_the_whole_height_and_horizontal_ones_the_whole_width():
    v = render_reference(square("vstripes").object(), "black", N)
    h = render_reference(square("hstripes").object(), "black", N)
    lo, hi = int(INSIDE[0]) + 2, int(INSIDE[1]) - 2
    col = int(C + 1.5 * P)  # the middle of a pattern stripe (u in [1, 2): the second colour)
    assert (v[lo:hi, col] == COLORS["blue"]).all() and (h[col, lo:hi] == COLORS["blue"]).all()


def test_diagonal_stripes_are_p_wide_measured_across():
    # Across the stripes is along the main diagonal: a run of k pixels there is k * sqrt(2) long.
    ch = square("diagonal")
    img = render_reference(ch.object(), "black", N)
    idx = np.arange(N)
    share = pattern_share(img[idx, idx], ch)
    inside = (INSIDE[0], INSIDE[1])
    found = interior_runs(share, inside)
    assert found
    for a, b in found:
        assert abs((b - a) * np.sqrt(2) - P) <= 1.5, ((b - a) * np.sqrt(2), P)
    # The stripes are diagonal: along a row, a stripe is p * sqrt(2) long.
    row_runs = interior_runs(pattern_share(img[int(C) + 10], ch), INSIDE)
    assert row_runs and all(abs((b - a) - P * np.sqrt(2)) <= 1.5 for a, b in row_runs)


def test_dots_have_radius_0_3_p_on_a_grid_of_step_p():
    ch = square("dots")
    img = render_reference(ch.object(), "black", N)
    row = int(C + P / 2)  # through a row of dot centres (at (k + 0.5) p from the centre)
    found = interior_runs(pattern_share(img[row], ch), INSIDE)  # the black outside is not a dot
    assert len(found) == 4, found  # 4 cells across the square
    for a, b in found:
        assert abs((b - a) - 0.6 * P) <= 1.0, (b - a, 0.6 * P)
    centres = np.array([(a + b) / 2 for a, b in found])
    assert np.allclose(np.diff(centres), P, atol=1.0), centres
    assert np.allclose(centres - C, (np.arange(4) - 1.5) * P, atol=1.0), centres  # anchored at the centre
    # Between dot rows there is only the fill.
    between = img[int(C), int(INSIDE[0]) + 2 : int(INSIDE[1]) - 2]
    assert (between == COLORS["white"]).all()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_pattern_moves_with_the_character(pattern):
    # Two positions a whole number of pixels apart: the crops around the centres are identical.
    ch = Character("circle", "red", "green", pattern)
    r = 0.2
    half = int(np.ceil(r * N)) + 2
    crops = []
    for px, py in ((200, 230), (290, 262)):
        img = draw(ch, px / N, py / N, r)
        crops.append(img[py - half : py + half, px - half : px + half])
    assert np.array_equal(crops[0], crops[1])
    assert len(np.unique(crops[0].reshape(-1, 3), axis=0)) > 3  # both colours and blends are there


@pytest.mark.parametrize("r", [0.15, 0.2, 0.3, 0.4])
def test_the_period_scales_with_r(r):
    ch = square("vstripes")
    img = draw(ch, 0.5, 0.5, r)
    row = int(C + 3)
    found = interior_runs(pattern_share(img[row], ch), (C - r * N, C + r * N))
    assert found
    for a, b in found:
        assert abs((b - a) - r * N / 2) <= 1.0, (b - a, r * N / 2)


def test_the_pattern_colours_are_the_characters():
    ch = Character("triangle", "orange", "purple", "checker")
    img = render_reference(ch.object(), "gray", 256)
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert {COLORS["orange"], COLORS["purple"], COLORS["gray"]} <= colours


# ---------------------------------------------------------------------------------------------
# Size in clips


def test_a_character_is_drawn_one_and_a_half_times_a_plain_objects_size():
    plain, char = ShapeObject("red", "square", "still"), Character("square", "red", "blue", "dots")
    s = np.array([0.0, 0.5, 1.0])
    assert np.allclose(plain.size(s), 0.14) and np.allclose(char.object("still").size(s), 0.21)
    assert np.allclose(char.object("growing").size(s), [0.12, 0.225, 0.33])
    assert np.allclose(char.object("shrinking").size(s), [0.33, 0.225, 0.12])
    assert np.allclose(ShapeObject("red", "square", "growing").size(s), [0.08, 0.15, 0.22])
    for motion in MOTIONS:
        k = char.object(motion).size(s) / ShapeObject("red", "square", motion).size(s)
        assert np.allclose(k, 1.5), motion


def test_a_character_in_a_clip_measures_r_0_21():
    ch = Character("square", "yellow", "black", "hstripes")
    frame = render(ch.scene("still", "blue"), 256, 1)[0]
    fg = np.linalg.norm(frame.astype(float) - COLORS["blue"], axis=-1) > 128  # at least half covered
    ys, xs = np.nonzero(fg)
    assert abs((xs.max() + 1 - xs.min()) / 2 - 0.21 * 256) <= 1.0
    assert abs((ys.max() + 1 - ys.min()) / 2 - 0.21 * 256) <= 1.0
    # Its pattern's period follows its size: p = 0.105 * 256 = 26.9 px.
    col = int(128 + 3)
    found = interior_runs(pattern_share(frame[:, col], ch), (128 - 0.21 * 256, 128 + 0.21 * 256))
    assert found and all(abs((b - a) - 0.105 * 256) <= 1.0 for a, b in found)


def test_growing_character_in_a_clip():
    ch = Character("circle", "green", "white", "vstripes")
    frames = render(ch.scene("growing", "black"), 128, 3)

    def half_width(f):
        xs = np.nonzero((np.linalg.norm(f.astype(float) - COLORS["black"], axis=-1) > 100).any(0))[0]
        return (xs.max() + 1 - xs.min()) / 2

    assert [round(half_width(f) / 128, 2) for f in frames] == pytest.approx([0.12, 0.225, 0.33], abs=0.01)


# ---------------------------------------------------------------------------------------------
# Held-out colour pairs


def test_held_out_pairs_in_either_order():
    assert len(HELD_OUT_PAIRS) == 8
    for a, b in (("red", "cyan"), ("orange", "purple"), ("white", "gray"), ("cyan", "white")):
        assert Character("star", a, b, "dots").held_out and Character("star", b, a, "checker").held_out
    assert not Character("star", "red", "blue", "dots").held_out
    assert not Character("circle", "cyan", "blue", "hstripes").held_out


def test_all_characters_counts():
    everyone = all_characters()
    n_pairs = len(COLOR_NAMES) * (len(COLOR_NAMES) - 1)  # ordered: fill and pattern colour
    assert len(everyone) == len(SHAPES) * len(PATTERNS) * n_pairs == 2200
    held = all_characters(held_out=True)
    assert len(held) == 8 * 2 * len(SHAPES) * len(PATTERNS) == 320
    assert all(c.held_out for c in held)
    train = all_characters(held_out=False)
    assert len(train) == len(everyone) - len(held) and not any(c.held_out for c in train)
    assert len(set(everyone)) == len(everyone)


def test_sampling_keeps_held_out_characters_out_of_training():
    rng = np.random.default_rng(0)
    train = [sample_character(rng, held_out=False) for _ in range(500)]
    assert not any(c.held_out for c in train)
    assert len({(c.shape, c.pattern) for c in train}) == len(SHAPES) * len(PATTERNS)  # all kinds drawn
    held = [sample_character(rng, held_out=True) for _ in range(100)]
    assert all(c.held_out for c in held)
    assert any(sample_character(rng, held_out=None).held_out for _ in range(300))


def test_the_reference_image():
    ch = Character("triangle", "red", "cyan", "diagonal")
    ref = ch.reference("yellow", 64)
    assert ref.shape == (64, 64, 3) and ref.dtype == np.uint8
    assert tuple(ref[0, 0]) == COLORS["yellow"] and tuple(ref[63, 63]) == COLORS["yellow"]
    fg = np.linalg.norm(ref.astype(float) - COLORS["yellow"], axis=-1) > 100
    ys, xs = np.nonzero(fg)
    # A triangle fills its box: 0.3 * 64 = 19.2 px either side of the centre.
    assert abs((xs.min() + xs.max() + 1) / 2 - 32) <= 0.5 and abs((ys.min() + ys.max() + 1) / 2 - 32) <= 0.5
    assert abs((xs.max() + 1 - xs.min()) / 2 - 19.2) <= 1.0


# ---------------------------------------------------------------------------------------------
# Prompts


def _has_word(text: str, phrase: str) -> bool:
    return re.search(rf"(^|\W){re.escape(phrase)}($|\W)", text) is not None


@pytest.mark.parametrize("motion", MOTIONS)
def test_prompts_name_the_character_the_motion_and_the_background(motion):
    rng = np.random.default_rng(MOTIONS.index(motion))
    names = set()
    for i in range(200):
        bg = COLOR_NAMES[i % len(COLOR_NAMES)]
        text = character_prompt(rng, motion, bg)
        low = text.lower()
        said = [n for n in CHARACTER_NAMES if _has_word(low, n)]
        assert said, text
        names.add("my character" if "my character" in said else said[0])
        assert any(_has_word(low, w) for w in MOTION_WORDS[motion]), text
        assert any(_has_word(low, w) for w in COLOR_WORDS[bg]), text
    assert names == {"the character", "it", "my character"}


def test_canonical_prompt():
    rng = np.random.default_rng(0)
    assert character_prompt(rng, "right", "green", free=False) == "the character moving right on a green background"
    assert character_prompt(rng, "growing", "blue", free=False) == "the character growing on a blue background"


def test_prompts_are_grammatical():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        for motion in ("growing", "shrinking"):
            text = character_prompt(rng, motion, "green").lower()
            assert not re.search(r"\bis (grows|shrinks|gets)\b", text), text
