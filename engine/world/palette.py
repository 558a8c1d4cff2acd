"""The shapes world's vocabulary: palette, shapes, motions and the words people type for them.

Everything here follows docs/world.md; the order of each tuple is the class index used by
the text encoder's parse head and by the analyser, so append, never reorder.
"""

from __future__ import annotations

import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 220, 40),
    "green": (40, 180, 70),
    "cyan": (40, 200, 220),
    "blue": (40, 80, 230),
    "purple": (150, 60, 200),
    "pink": (245, 120, 180),
    "white": (240, 240, 240),
    "gray": (128, 128, 128),
    "black": (15, 15, 15),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
PALETTE = np.array([COLORS[c] for c in COLOR_NAMES], dtype=np.float32)  # (11, 3) in 0..255

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "still", "growing", "shrinking")
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
PATTERNS: tuple[str, ...] = ("hstripes", "vstripes", "diagonal", "checker", "dots")

# Words a user may type for each canonical name (the canonical word comes first).
COLOR_WORDS: dict[str, tuple[str, ...]] = {c: (c,) for c in COLOR_NAMES} | {
    "cyan": ("cyan", "teal"),
    "purple": ("purple", "violet"),
    "gray": ("gray", "grey"),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
}
MOTION_WORDS: dict[str, tuple[str, ...]] = {
    "left": (
        "moving left",
        "going left",
        "sliding left",
        "moves to the left",
        "moving to the left",
        "moves left",
        "heading left",
        "travelling left",
        "goes left",
    ),
    "right": (
        "moving right",
        "going right",
        "sliding right",
        "moves to the right",
        "moving to the right",
        "moves right",
        "heading right",
        "travelling right",
        "goes right",
    ),
    "up": ("moving up", "going up", "sliding up", "moves up", "moving upwards", "rising", "goes up", "heading up"),
    "down": (
        "moving down",
        "going down",
        "sliding down",
        "moves down",
        "moving downwards",
        "falling",
        "goes down",
        "heading down",
    ),
    "still": ("standing still", "still", "resting", "not moving", "stationary", "staying still", "sitting still"),
    "growing": ("growing", "getting bigger", "expanding", "grows", "gets bigger", "getting larger"),
    "shrinking": ("shrinking", "getting smaller", "contracting", "shrinks", "gets smaller"),
}


def nearest_color_index(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest palette entry for each RGB value (..., 3) in 0..255: (index, distance)."""
    d = np.linalg.norm(rgb[..., None, :].astype(np.float32) - PALETTE, axis=-1)  # (..., 11)
    idx = d.argmin(-1)
    return idx, np.take_along_axis(d, idx[..., None], -1)[..., 0]
