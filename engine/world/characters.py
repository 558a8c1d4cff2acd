"""Characters for personalized generation (docs/world.md, Characters): one of the four shapes filled
with a two-colour pattern, drawn 1.5 times a plain object's size, named in prompts as "the
character" ("it", "my character"). Characters whose two colours are a held-out pair are never
trained on; personalization is measured on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .captions import FINITE_VERBS
from .palette import COLOR_NAMES, COLOR_WORDS, MOTION_WORDS, MOTIONS, PATTERNS, SHAPES
from .render import render_reference
from .scene import Pattern, Scene, ShapeObject

# docs/world.md's held-out colour pairs, in either order.
HELD_OUT_PAIRS: frozenset[frozenset[str]] = frozenset(
    frozenset(p)
    for p in (
        ("red", "cyan"),
        ("orange", "purple"),
        ("yellow", "blue"),
        ("green", "pink"),
        ("white", "gray"),
        ("black", "yellow"),
        ("pink", "orange"),
        ("cyan", "white"),
    )
)
REFERENCE_R = 0.3  # a reference shows the character alone, centred, at this half side
# What the prompt calls the character (docs/world.md); the engine reads all three as the reference.
CHARACTER_NAMES = ("the character", "it", "my character")
PATTERN_WORDS: dict[str, str] = {
    "hstripes": "horizontally striped",
    "vstripes": "vertically striped",
    "diagonal": "diagonally striped",
    "checker": "checkered",
    "dots": "dotted",
}


@dataclass(frozen=True)
class Character:
    shape: str
    color: str  # the fill
    color2: str  # the pattern's colour
    pattern: str  # one of PATTERNS

    def __post_init__(self) -> None:
        assert self.shape in SHAPES and self.pattern in PATTERNS, (self.shape, self.pattern)
        assert self.color in COLOR_NAMES and self.color2 in COLOR_NAMES and self.color != self.color2

    @property
    def held_out(self) -> bool:
        return frozenset((self.color, self.color2)) in HELD_OUT_PAIRS

    @property
    def name(self) -> str:
        """`a red and cyan striped star`: the character in words (the baseline's prompt)."""
        return f"a {self.color} and {self.color2} {PATTERN_WORDS[self.pattern]} {self.shape}"

    def to_dict(self) -> dict:
        return {"shape": self.shape, "color": self.color, "color2": self.color2, "pattern": self.pattern}

    def object(self, motion: str = "still", x: float = 0.5, y: float = 0.5) -> ShapeObject:
        return ShapeObject(self.color, self.shape, motion, x, y, Pattern(self.pattern, self.color2))

    def scene(self, motion: str, background: str, x: float = 0.5, y: float = 0.5) -> Scene:
        return Scene(background, (self.object(motion, x, y),))

    def reference(self, background: str, size: int = 64) -> np.ndarray:
        """The reference image docs/world.md describes: alone, centred, r = 0.3, plain background."""
        return render_reference(self.object(), background, size)


def all_characters(held_out: bool | None = None) -> list[Character]:
    """Every character (4 shapes x 5 patterns x ordered colour pairs), or only the held-out
    (True) or training (False) ones."""
    out = [
        Character(s, c1, c2, p)
        for s in SHAPES
        for p in PATTERNS
        for c1 in COLOR_NAMES
        for c2 in COLOR_NAMES
        if c1 != c2
    ]
    return out if held_out is None else [c for c in out if c.held_out == held_out]


def sample_character(rng: np.random.Generator, held_out: bool | None = False) -> Character:
    while True:
        c1, c2 = rng.choice(len(COLOR_NAMES), size=2, replace=False)
        ch = Character(
            SHAPES[rng.integers(len(SHAPES))], COLOR_NAMES[c1], COLOR_NAMES[c2], PATTERNS[rng.integers(len(PATTERNS))]
        )
        if held_out is None or ch.held_out == held_out:
            return ch


def other_background(rng: np.random.Generator, ch: Character, avoid: tuple[str, ...] = ()) -> str:
    """A palette colour that is neither of the character's (nor any in `avoid`)."""
    options = [c for c in COLOR_NAMES if c not in (ch.color, ch.color2, *avoid)]
    return options[int(rng.integers(len(options)))]


def sample_character_scene(
    rng: np.random.Generator, ch: Character, motion: str | None = None, background: str | None = None
) -> Scene:
    motion = motion or MOTIONS[rng.integers(len(MOTIONS))]
    background = background or other_background(rng, ch)
    x, y = rng.uniform(0.35, 0.65, size=2)
    return ch.scene(motion, background, float(x), float(y))


def character_prompt(rng: np.random.Generator, motion: str | None, background: str, free: bool = True) -> str:
    """`the character moving right on a green background`, or a free phrasing of it; motion None
    names none (an image)."""
    if not free:
        word = "" if motion is None else motion if motion in ("growing", "shrinking") else MOTION_WORDS[motion][0]
        return f"the character {word} on a {background} background".replace("  ", " ")
    name = CHARACTER_NAMES[int(rng.choice(3, p=[0.6, 0.2, 0.2]))]
    if motion is None:
        name = name if name != "it" else "the character"
    move = "" if motion is None else MOTION_WORDS[motion][int(rng.integers(len(MOTION_WORDS[motion])))]
    bg_word = COLOR_WORDS[background][int(rng.integers(len(COLOR_WORDS[background])))]
    finite = not move or move.split()[0] in FINITE_VERBS  # "it grows", never "it is grows"
    glue = " " if finite else (" ", " ", " is ", ", ")[int(rng.integers(4))]
    bg = (
        f"on a {bg_word} background",
        f"on {bg_word}",
        f"against a {bg_word} backdrop",
        f"over a {bg_word} background",
    )
    text = f"{name}{glue}{move} {bg[int(rng.integers(len(bg)))]}".replace("  ", " ")
    if rng.random() < 0.2:
        text = f"a {bg_word} background, {name} {move}".strip()
    return text[0].upper() + text[1:] if rng.random() < 0.3 else text


def describe_prompt(ch: Character, motion: str, background: str) -> str:
    """The same request in words, no reference: the baseline's T2V prompt."""
    word = motion if motion in ("growing", "shrinking") else MOTION_WORDS[motion][0]
    return f"{ch.name} {word} on a {background} background"
