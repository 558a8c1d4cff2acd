"""Prompts as people type them, beyond the caption generator's phrase lists: other word forms
("leftwards", "from left to right"), other verbs ("falling", "sitting"), other sentence shapes
("the background is blue", "bg"), words that add nothing ("slowly", "make me a video of", "4k",
made-up words) and typos.

This text trains the prompt rewriter (engine/models/rewrite.py), which reads a prompt into what it
says and hands the generator the canonical caption. It is kept apart from `free_caption` on
purpose: the generator's training captions and the held-out eval prompts stay exactly as they
were, so their figures stay comparable.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np

from .captions import FINITE_VERBS, Caption, _article, _case, _pick, caption_labels, free_caption
from .palette import COLOR_WORDS, MOTION_WORDS, SHAPE_WORDS
from .scene import Scene, ShapeObject

TYPED_SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": SHAPE_WORDS["circle"] + ("disc", "disk", "dot", "round shape"),
    "square": SHAPE_WORDS["square"] + ("block", "cube", "tile"),
    "triangle": SHAPE_WORDS["triangle"],
    "star": SHAPE_WORDS["star"] + ("five pointed star", "5-pointed star"),
}

_MOVE_VERBS = ("moving", "going", "sliding", "heading", "travelling", "traveling", "drifting", "gliding", "rolling")
_MOVE_VERBS += ("floating", "flying", "racing", "running", "zooming", "shifting", "panning", "scrolling")
_FINITE_MOVE = ("moves", "goes", "slides", "heads", "travels", "drifts", "glides", "rolls", "floats", "flies")
_WAYS: dict[str, tuple[str, ...]] = {
    "left": ("left", "leftwards", "leftward", "to the left", "towards the left", "toward the left"),
    "right": ("right", "rightwards", "rightward", "to the right", "towards the right", "toward the right"),
    "up": ("up", "upwards", "upward", "to the top", "towards the top", "skyward"),
    "down": ("down", "downwards", "downward", "to the bottom", "towards the bottom"),
}
_ACROSS: dict[str, tuple[str, ...]] = {
    "left": ("from right to left", "from the right to the left", "across to the left", "to the left side"),
    "right": ("from left to right", "from the left to the right", "across to the right", "to the right side"),
    "up": ("from bottom to top", "from the bottom to the top", "to the top of the frame"),
    "down": ("from top to bottom", "from the top to the bottom", "to the bottom of the frame"),
}
_OWN_VERBS: dict[str, tuple[str, ...]] = {
    "left": (),
    "right": (),
    "up": ("rising", "rises", "climbing", "climbs", "ascending", "ascends", "lifting off"),
    "down": ("falling", "falls", "dropping", "drops", "sinking", "sinks", "descending", "descends"),
    "still": (
        "sitting",
        "sits",
        "static",
        "motionless",
        "stays still",
        "stays put",
        "staying put",
        "doesn't move",
        "does not move",
        "not moving at all",
        "frozen",
        "idle",
        "standing",
        "in place",
        "fixed in place",
        "holding still",
        "stopped",
    ),
    "growing": (
        "becoming bigger",
        "becoming larger",
        "gets larger",
        "expands",
        "enlarging",
        "scaling up",
        "swelling",
        "inflating",
        "zooming in",
        "increasing in size",
        "growing bigger",
        "getting big",
    ),
    "shrinking": (
        "becoming smaller",
        "contracts",
        "scaling down",
        "deflating",
        "getting tiny",
        "shrinking away",
        "decreasing in size",
        "zooming out",
        "getting little",
        "shrinking down",
    ),
}
_FINITE = set(FINITE_VERBS + _FINITE_MOVE) | {"rises", "climbs", "ascends", "falls", "drops", "sinks", "descends"}
_FINITE |= {"sits", "stays", "doesn't", "does", "expands", "contracts"}
_ADVERBS = ("slowly", "quickly", "steadily", "gradually", "smoothly", "fast")
_ADJECTIVES = ("little", "small", "big", "bright", "solid", "plain", "single", "simple", "flat")
_JOINS = (" and ", ", ", " with ", " plus ", " + ", " while ", " as ", " next to ", " beside ", " alongside ")
_JOINS += (". ", "; ", " and also ", " & ")
# Words people add that say nothing the world can show: requests, media words, style, mood, other
# nouns. Words the model is taught, or one slip away from one, are left out when used ("object" is
# "objects" mistyped); so are size and negation words, which could change what a prompt means.
_FILLER = """video clip animation gif scene shot image picture render frame please pls make me show want i can
you do create generate draw give hey hi ok so nice cute cool pretty beautiful lovely high quality hd 4k 8k
cinematic realistic style simple minimal clean fun happy sad funny weird like balloon bubble sun moon sky sea
my for presentation kid kids logo icon cartoon pixel art retro neon glowing shiny soft sharp very really just
some kind of thing object shape shapes thingy now then here there again this one please thanks thx wow
lol seconds long loop looping music sound dancing bouncing spinning rotating wobbling jumping happily""".split()
_NOT_FILLER = {"big", "small", "little", "tiny", "large", "huge", "no", "not", "none", "without"}


@cache
def _filler_words() -> tuple[str, ...]:
    return tuple(w for w in dict.fromkeys(_FILLER) if unknown_words(w) and w not in _NOT_FILLER)


def _babble(rng: np.random.Generator, n: int) -> str:
    """n filler words; now and then a made-up one, so that any unseen word reads as filler."""
    words = _filler_words()
    out = []
    for _ in range(n):
        if rng.random() < 0.15:
            out.append("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), int(rng.integers(3, 9)))))
        else:
            out.append(_pick(rng, words))
    return " ".join(out)


def add_filler(rng: np.random.Generator, text: str) -> str:
    """Filler before, after or inside the prompt; what it says is unchanged."""
    r = rng.random()
    if r < 0.4:
        return _babble(rng, int(rng.integers(1, 5))) + _pick(rng, (" ", ": ", ", ", " - ")) + text
    if r < 0.8:
        return text + _pick(rng, (" ", ", ", ". ", " - ", " (")) + _babble(rng, int(rng.integers(1, 5)))
    words = text.split(" ")
    k = int(rng.integers(len(words) + 1))
    return " ".join(words[:k] + [_babble(rng, int(rng.integers(1, 3)))] + words[k:])


_BG_NOUNS = ("background", "background", "background", "backdrop", "bg", "backround", "backgound")


def motion_phrase(rng: np.random.Generator, motion: str) -> str:
    """One of the many ways to say a motion, sometimes with an adverb."""
    r = rng.random()
    if motion in _WAYS and r < 0.5:
        phrase = f"{_pick(rng, _MOVE_VERBS + _FINITE_MOVE)} {_pick(rng, _WAYS[motion])}"
    elif motion in _ACROSS and r < 0.7:
        phrase = f"{_pick(rng, _MOVE_VERBS + _FINITE_MOVE)} {_pick(rng, _ACROSS[motion])}"
    elif _OWN_VERBS[motion] and r < 0.85:
        phrase = _pick(rng, _OWN_VERBS[motion])
    else:
        phrase = _pick(rng, MOTION_WORDS[motion])
    if rng.random() < 0.15:
        adverb = _pick(rng, _ADVERBS)
        phrase = f"{adverb} {phrase}" if rng.random() < 0.5 else f"{phrase} {adverb}"
    return phrase


def _object(rng: np.random.Generator, obj: ShapeObject, say_motion: bool) -> str:
    color = _pick(rng, COLOR_WORDS[obj.color])
    shape = _pick(rng, TYPED_SHAPE_WORDS[obj.shape])
    if rng.random() < 0.1:
        color = f"{_pick(rng, _ADJECTIVES)} {color}"
    noun = _article(rng, f"{color} {shape}")
    if not say_motion:
        return noun
    motion = motion_phrase(rng, obj.motion)
    finite = any(w in _FINITE for w in motion.split()[:2])  # "that falls", but "that is falling"
    r = rng.random()
    if r < 0.45:
        return f"{noun} {motion}"
    if r < 0.6:
        return f"{noun} {'that' if finite else 'that is'} {motion}"
    if r < 0.7:
        return f"{noun}, {motion}"
    if r < 0.8:
        return f"{noun} ({motion})"
    if r < 0.9 and not finite:
        return f"{noun} is {motion}"
    return f"{noun} which {'' if finite else 'is '}{motion}".replace("  ", " ")


def _background(rng: np.random.Generator, color: str) -> tuple[str, str]:
    """(phrase, how it joins the objects): 'after' (a prepositional phrase after them), 'tail'
    (its own clause after them), 'head' (its own clause before them) or 'with' ('blue bg with')."""
    word = _pick(rng, COLOR_WORDS[color])
    noun = _pick(rng, _BG_NOUNS)
    r = rng.random()
    if r < 0.35:
        prep = _pick(rng, ("on", "on", "against", "over", "in front of", "on top of", "with"))
        return f"{prep} {_article(rng, f'{word} {noun}')}", "after"
    if r < 0.45:
        return f"on {word}", "after"
    if r < 0.55:
        return f"{word} {noun}", _pick(rng, ("head", "tail"))
    if r < 0.65:
        return f"the {noun} is {word}", _pick(rng, ("head", "tail"))
    if r < 0.75:
        return f"{noun}: {word}", _pick(rng, ("head", "tail"))
    if r < 0.85:
        return f"{word} {noun} with", "with"
    return f"on a {word} {noun}", "head"


def _join(objects: str, phrase: str, how: str, rng: np.random.Generator) -> str:
    if how == "after":
        return f"{objects} {phrase}"
    if how == "tail":
        return objects + _pick(rng, (", ", ". ", "; ", " - ")) + phrase
    if how == "with":
        return f"{phrase} {objects}"
    return phrase + _pick(rng, (", ", ". ", "; ", ": ")) + objects


def typo(rng: np.random.Generator, word: str) -> str:
    """One slip of the keyboard: swap, drop, double or replace a letter (words of 4+ letters)."""
    if len(word) < 4 or not word.isalpha():
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = rng.integers(4)
    if kind == 0 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    if kind == 3:
        others = [c for c in "abcdefghijklmnopqrstuvwxyz" if c != word[i]]
        return word[:i] + others[int(rng.integers(len(others)))] + word[i + 1 :]
    return word[:i] + word[i + 1 :]


def typed_caption(
    rng: np.random.Generator,
    scene: Scene,
    image: bool = False,
    omit: float = 0.1,
    typos: float = 0.25,
    fillers: float = 0.35,
) -> Caption:
    """A prompt as someone might type it, with its parse labels (same labels as free_caption)."""
    if rng.random() < 0.3:  # the generator's own phrasings stay part of what the rewriter reads
        return free_caption(rng, scene, image=image, omit=omit)
    say_bg = rng.random() >= omit
    say_motion = [not image and rng.random() >= omit for _ in scene.objects]
    objs = [_object(rng, o, m) for o, m in zip(scene.objects, say_motion, strict=True)]
    text = objs[0]
    if len(objs) == 2:
        text += _pick(rng, _JOINS) + objs[1]
        if rng.random() < 0.1:
            text = _pick(rng, ("two shapes: ", "2 shapes: ", "two objects: ")) + text
    if say_bg:
        phrase, how = _background(rng, scene.background)
        text = _join(text, phrase, how, rng)
    for _ in range(int(rng.random() < fillers) + int(rng.random() < fillers / 4)):
        text = add_filler(rng, text)
    words = text.split(" ")
    for _ in range(int(rng.random() < typos) + int(rng.random() < typos / 5)):
        k = int(rng.integers(len(words)))
        words[k] = typo(rng, words[k])
    text = _case(rng, " ".join(words))
    if rng.random() < 0.15:
        text += _pick(rng, (".", "!", "..."))
    return Caption(text=text, labels=caption_labels(scene, image, say_bg, say_motion))


# Words that carry no scene content in either caption generator.
_GLUE = "a an the that is which and also with plus on against over in front of top two shapes objects it".split()
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@cache
def known_words() -> frozenset[str]:
    """Every word either caption generator can produce (without typos)."""
    phrases = [*_GLUE, *_ADVERBS, *_ADJECTIVES, *_JOINS, *_BG_NOUNS, *_MOVE_VERBS, *_FINITE_MOVE, "backdrop"]
    for table in (COLOR_WORDS, TYPED_SHAPE_WORDS, MOTION_WORDS, _WAYS, _ACROSS, _OWN_VERBS):
        phrases += [p for options in table.values() for p in options]
    phrases += [*FINITE_VERBS, "frame", "2", "5"]
    return frozenset(w for p in phrases for w in _words(p))


def _one_slip(a: str, b: str) -> bool:
    """True when a is b with one letter swapped with its neighbour, dropped, added or replaced."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return a == b
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        swap = len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
        return len(diff) == 1 or swap
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def unknown_words(prompt: str) -> list[str]:
    """Words of the prompt the default model was never taught (a slip of one letter in a known
    word of 4+ letters counts as known), in order, without repeats."""
    known = known_words()
    out: list[str] = []
    for w in _words(prompt):
        if w in known or w in out or (len(w) >= 4 and any(len(k) >= 4 and _one_slip(w, k) for k in known)):
            continue
        out.append(w)
    return out
