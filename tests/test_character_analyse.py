import numpy as np
import pytest

from engine.world.character_analyse import (
    CharacterReading,
    analyse_character,
    analyser_accuracy,
    score_character,
)
from engine.world.characters import Character
from engine.world.palette import COLORS
from engine.world.render import render
from engine.world.scene import Scene, ShapeObject


def _blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over H and W (a soft decoder)."""
    taps = np.arange(-8, 9)
    k = np.exp(-0.5 * (taps / sigma) ** 2)
    x = frames.astype(np.float32)
    for axis in (1, 2):
        x = sum(np.roll(x, int(i), axis) * w for i, w in zip(taps, k / k.sum(), strict=True))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# Every pattern and shape, held-out colour pairs, and the hard backgrounds: gray lies on the
# red-cyan segment (their blends look like it), white and black bracket gray.
CASES = [
    (Character("circle", "red", "cyan", "hstripes"), "left", "gray"),
    (Character("square", "yellow", "blue", "vstripes"), "up", "black"),
    (Character("triangle", "green", "pink", "diagonal"), "growing", "white"),
    (Character("star", "white", "gray", "checker"), "shrinking", "black"),
    (Character("star", "orange", "purple", "dots"), "still", "blue"),
    (Character("triangle", "pink", "orange", "dots"), "right", "green"),
    (Character("square", "cyan", "white", "checker"), "down", "red"),
]


@pytest.mark.parametrize("ch,motion,background", CASES)
def test_reads_rendered_characters_exactly(ch, motion, background):
    clip = render(ch.scene(motion, background, 0.45, 0.55), 64, 32)
    r = analyse_character(clip)
    assert r.found
    assert (r.shape, set(r.colors), r.pattern, r.motion, r.background) == (
        ch.shape,
        {ch.color, ch.color2},
        ch.pattern,
        motion,
        background,
    )
    assert r.centres.shape == (32, 2) and r.sizes.shape == (32,)
    # Dots cover 28% of the character: the fill is the more frequent colour.
    if ch.pattern == "dots":
        assert r.colors == (ch.color, ch.color2)
    assert score_character(r, ch, motion, background).both


def test_reads_images_and_references():
    ch = Character("star", "black", "yellow", "diagonal")
    image = render(ch.scene("still", "cyan", 0.4, 0.6), 64, 1)
    r = analyse_character(image)
    assert (r.shape, set(r.colors), r.pattern, r.motion, r.found) == (
        "star",
        {"black", "yellow"},
        "diagonal",
        "still",
        True,
    )
    assert r.sizes[0] == pytest.approx(0.21 * 0.951, abs=1.5 / 64)  # a star's box is 0.95 r wide
    ref = analyse_character(Character("circle", "white", "gray", "dots").reference("pink", 64))  # (H, W, 3)
    assert (ref.shape, set(ref.colors), ref.pattern, ref.background) == ("circle", {"white", "gray"}, "dots", "pink")
    assert ref.centres[0] == pytest.approx([0.5, 0.5], abs=1 / 64) and ref.sizes[0] == pytest.approx(0.3, abs=1 / 64)


@pytest.mark.slow
def test_accuracy_on_random_truth():
    acc = analyser_accuracy(n=60, seed=1, held_out=True, frames=8)
    assert min(acc.values()) > 0.95, acc


def test_blurred_away_pattern_is_not_read():
    # What a bad autoencoder returns: the two colours averaged over the character.
    for pattern in ("hstripes", "vstripes", "diagonal", "checker", "dots"):
        ch = Character("circle", "red", "cyan", pattern)
        clip = render(ch.scene("still", "black"), 64, 2).astype(np.float32)
        inside = np.linalg.norm(clip - np.array(COLORS["black"], np.float32), axis=-1) > 60
        clip[inside] = clip[inside].mean(0)
        assert analyse_character(clip.astype(np.uint8)).pattern == "unclear", pattern
    # A Gaussian blur of 2 px washes out dots and checks (stripes keep about half their contrast
    # and still read); a mild one (1 px, a soft decoder) leaves every pattern readable.
    for shape, pattern, colours in (("square", "checker", ("yellow", "blue")), ("star", "dots", ("green", "pink"))):
        clip = render(Character(shape, *colours, pattern).scene("still", "white"), 64, 2)
        blurred = analyse_character(_blur(clip, 2.0))
        assert blurred.pattern == "unclear" and blurred.pattern_contrast < 0.4, (pattern, blurred.pattern_contrast)
        soft = analyse_character(_blur(clip, 1.0))
        assert soft.pattern == pattern and soft.shape == shape, soft


def test_plain_object_has_one_colour_and_no_pattern():
    for shape, motion in (("circle", "still"), ("star", "left"), ("square", "growing")):
        clip = render(Scene("blue", (ShapeObject("red", shape, motion, 0.5, 0.5),)), 64, 32)
        r = analyse_character(clip)
        assert (r.colors, r.pattern, r.shape, r.motion, r.found) == (("red",), "unclear", shape, motion, True)
        sc = score_character(r, Character(shape, "red", "cyan", "dots"), motion, "blue")
        assert sc.shape and not sc.colors and not sc.pattern and not sc.identity and sc.prompt


def test_nothing_to_read():
    blank = np.zeros((4, 64, 64, 3), np.uint8) + np.array(COLORS["white"], np.uint8)
    r = analyse_character(blank)
    assert not r.found and r.background == "white" and r.colors == () and r.pattern == "unclear"


def test_score_character_right_and_wrong():
    ch = Character("triangle", "red", "cyan", "checker")
    r = analyse_character(render(ch.scene("up", "black"), 64, 16))
    sc = score_character(r, ch, "up", "black")
    assert sc.identity and sc.prompt and sc.both
    # Colours compare as a set: the fill may come first or second.
    assert score_character(r, Character("triangle", "cyan", "red", "checker"), "up", "black").identity
    wrong = score_character(r, Character("star", "red", "green", "dots"), "left", "white")
    assert not (wrong.shape or wrong.colors or wrong.pattern or wrong.motion or wrong.background)
    assert not (wrong.identity or wrong.prompt or wrong.both)
    half = score_character(r, Character("triangle", "red", "cyan", "hstripes"), "up", "gray")
    assert (half.shape, half.colors, half.pattern, half.motion, half.background) == (True, True, False, True, False)
    # An image asks no motion; a clip where no single character was found matches nothing of it.
    assert score_character(r, ch, "left", "black", image=True).prompt
    lost = CharacterReading("black", "triangle", ("red", "cyan"), "checker", "up", r.centres, r.sizes, False)
    assert not score_character(lost, ch, "up", "black").identity
