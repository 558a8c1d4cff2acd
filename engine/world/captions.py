"""Captions: the canonical form of docs/world.md and free phrasings like the ones people type, plus
the parse labels (what each caption says) that pre-train the built-in text encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .palette import COLOR_NAMES, COLOR_WORDS, MOTION_WORDS, MOTIONS, SHAPE_WORDS, SHAPES
from .scene import Scene, ShapeObject

# Parse-label classes: the index of the name in its tuple, then these extra classes.
UNSPECIFIED = "unspecified"  # the caption does not say (a background or motion left out)
NONE = "none"  # there is no such object
BG_CLASSES = COLOR_NAMES + (UNSPECIFIED,)
COLOR_CLASSES = COLOR_NAMES + (NONE,)
SHAPE_CLASSES = SHAPES + (NONE,)
MOTION_CLASSES = MOTIONS + (UNSPECIFIED, NONE)
SLOTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("background", BG_CLASSES),
    ("color1", COLOR_CLASSES),
    ("shape1", SHAPE_CLASSES),
    ("motion1", MOTION_CLASSES),
    ("color2", COLOR_CLASSES),
    ("shape2", SHAPE_CLASSES),
    ("motion2", MOTION_CLASSES),
)
SLOT_CLASSES = tuple(len(classes) for _, classes in SLOTS)  # the parse heads' sizes


FINITE_VERBS = ("moves", "goes", "gets", "grows", "shrinks")


def _an(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def canonical_object(obj: ShapeObject, image: bool = False) -> str:
    if image:
        return f"{_an(obj.color)} {obj.color} {obj.shape}"
    motion = obj.motion if obj.motion in ("growing", "shrinking") else MOTION_WORDS[obj.motion][0]
    return f"{_an(obj.color)} {obj.color} {obj.shape} {motion}"


def canonical_caption(scene: Scene, image: bool = False) -> str:
    """`a red circle moving left and a green star growing on a black background`."""
    objs = " and ".join(canonical_object(o, image) for o in scene.objects)
    return f"{objs} on {_an(scene.background)} {scene.background} background"


@dataclass(frozen=True)
class Caption:
    text: str
    labels: tuple[int, ...]  # one class index per slot in SLOTS


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(rng: np.random.Generator, word: str) -> str:
    r = rng.random()
    if r < 0.6:
        return ("an " if word[0] in "aeiou" else "a ") + word
    if r < 0.75:
        return "the " + word
    if r < 0.85:
        return "a " + word  # people do type "a orange ..."
    return word


def _object_phrase(rng: np.random.Generator, obj: ShapeObject, say_motion: bool) -> str:
    color = _pick(rng, COLOR_WORDS[obj.color])
    shape = _pick(rng, SHAPE_WORDS[obj.shape])
    phrase = _article(rng, f"{color} {shape}")
    if say_motion:
        motion = _pick(rng, MOTION_WORDS[obj.motion])
        glue = _pick(rng, (" ", " ", " ", " that is ", ", ", " which is "))
        if motion.split()[0] in FINITE_VERBS:  # "that moves left", never "that is moves left"
            glue = glue.replace(" is ", " ")
        phrase += glue + motion
    return phrase


def _background_phrase(rng: np.random.Generator, color: str) -> tuple[str, bool]:
    """(phrase, goes first)."""
    word = _pick(rng, COLOR_WORDS[color])
    noun = "background" if rng.random() < 0.9 else "backdrop"
    r = rng.random()
    if r < 0.55:
        return f"on {_article(rng, f'{word} {noun}')}", False
    if r < 0.7:
        return f"{_pick(rng, ('against', 'over', 'with', 'in front of'))} {_article(rng, f'{word} {noun}')}", False
    if r < 0.8:
        return f"on {word}", False
    return _pick(rng, (f"{word} {noun}", f"on {_article(rng, f'{word} {noun}')}", f"{noun} {word}")), True


def _case(rng: np.random.Generator, text: str) -> str:
    r = rng.random()
    if r < 0.7:
        return text
    if r < 0.85:
        return text[0].upper() + text[1:]
    if r < 0.93:
        return text.title()
    return text.upper()


def free_caption(rng: np.random.Generator, scene: Scene, image: bool = False, omit: float = 0.1) -> Caption:
    """A random phrasing of the scene, with its parse labels.

    With probability `omit` the background (and, for videos, each motion) is left out, as people
    do; the labels then say `unspecified` and the model learns to choose for itself.
    """
    say_bg = rng.random() >= omit
    say_motion = [not image and rng.random() >= omit for _ in scene.objects]
    objs = [_object_phrase(rng, o, m) for o, m in zip(scene.objects, say_motion, strict=True)]
    text = objs[0]
    if len(objs) == 2:
        text += _pick(rng, (" and ", " and ", ", ", " and also ", " with ", ", and ", " plus ")) + objs[1]
    if say_bg:
        phrase, first = _background_phrase(rng, scene.background)
        text = f"{phrase}, {text}" if first else f"{text} {phrase}"
    text = _case(rng, text)
    if rng.random() < 0.15:
        text += "."
    return Caption(text=text, labels=caption_labels(scene, image, say_bg, say_motion))


def caption_labels(
    scene: Scene, image: bool, say_bg: bool = True, say_motion: list[bool] | None = None
) -> tuple[int, ...]:
    say_motion = say_motion or [not image] * len(scene.objects)
    labels = [BG_CLASSES.index(scene.background if say_bg else UNSPECIFIED)]
    for k in range(2):
        if k < len(scene.objects):
            o = scene.objects[k]
            motion = o.motion if say_motion[k] else UNSPECIFIED
            labels += [COLOR_CLASSES.index(o.color), SHAPE_CLASSES.index(o.shape), MOTION_CLASSES.index(motion)]
        else:
            labels += [COLOR_CLASSES.index(NONE), SHAPE_CLASSES.index(NONE), MOTION_CLASSES.index(NONE)]
    return tuple(labels)


def caption_from_labels(labels: tuple[int, ...] | list[int], image: bool = False) -> str:
    """The canonical caption of a parse (inverse of caption_labels): what is unspecified is left
    out ('a red circle moving left', 'a red circle on a blue background'), as in training."""
    names = [classes[i] for (_, classes), i in zip(SLOTS, labels, strict=True)]
    bg, objs = names[0], []
    for color, shape, motion in (names[1:4], names[4:7]):
        if NONE in (color, shape):
            continue
        phrase = f"{_an(color)} {color} {shape}"
        if not image and motion not in (UNSPECIFIED, NONE):
            phrase += " " + (motion if motion in ("growing", "shrinking") else MOTION_WORDS[motion][0])
        objs.append(phrase)
    text = " and ".join(objs)
    return text if bg == UNSPECIFIED else f"{text} on {_an(bg)} {bg} background"
