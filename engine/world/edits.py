"""Edit pairs (docs/world.md, instruction editing): a source scene, one of six edits, the exact target
scene, and the instruction, in its canonical form and in the free phrasings people type.

Everything the instruction does not name stays as it was, frame by frame: edits derive the target
with `dataclasses.replace`, so positions, sizes and other colours are the source's own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .captions import canonical_object
from .palette import COLOR_NAMES, COLOR_WORDS, DIRECTIONS, MOTIONS, SHAPE_WORDS, SHAPES
from .scene import Scene, ShapeObject, sample_object, scene_is_held_out
from .typed import typo

EDIT_TASKS: tuple[str, ...] = ("recolor", "background", "reshape", "remove", "add", "motion")
# The task embedding's classes: 0 is plain generation (text to video, blank source, or an edit
# whose instruction was dropped for classifier-free guidance). Append, never reorder.
TASKS: tuple[str, ...] = ("generate",) + EDIT_TASKS


@dataclass(frozen=True)
class Edit:
    task: str  # one of EDIT_TASKS
    target: int | None = None  # index of the source object it acts on (recolor, reshape, remove, motion)
    value: str = ""  # the new colour (recolor, background), shape (reshape) or motion (motion)
    added: ShapeObject | None = None  # the new object (add)


@dataclass(frozen=True)
class EditPair:
    source: Scene
    target: Scene
    edit: Edit
    instruction: str  # canonical; free_instruction() gives the ways people type it


def applicable_tasks(scene: Scene, image: bool = False) -> tuple[str, ...]:
    """remove needs two objects, add needs room for one more; images have no motion to change."""
    tasks = ["recolor", "background", "reshape"]
    tasks.append("remove" if len(scene.objects) == 2 else "add")
    if not image:
        tasks.append("motion")
    return tuple(tasks)


def apply_edit(scene: Scene, edit: Edit) -> Scene:
    """The exact target scene of an edit."""
    objs = list(scene.objects)
    if edit.task == "background":
        return replace(scene, background=edit.value)
    if edit.task == "add":
        assert edit.added is not None, "an add edit needs its new object"
        return replace(scene, objects=(*objs, edit.added))
    assert edit.target is not None and 0 <= edit.target < len(objs), f"{edit.task} needs a target object"
    obj = objs[edit.target]
    if edit.task == "remove":
        return replace(scene, objects=tuple(o for i, o in enumerate(objs) if i != edit.target))
    if edit.task == "recolor":
        objs[edit.target] = replace(obj, color=edit.value)
    elif edit.task == "reshape":
        objs[edit.target] = replace(obj, shape=edit.value)
    elif edit.task == "motion":
        objs[edit.target] = _with_motion(obj, edit.value)
    else:
        raise ValueError(f"unknown edit task {edit.task!r}")
    return replace(scene, objects=tuple(objs))


def _with_motion(obj: ShapeObject, motion: str) -> ShapeObject:
    """A moving object that stops (or starts to grow) stays where the middle of its path was, the
    one place a viewer of the source can point to; a still one that starts moving keeps the
    coordinate its path does not change."""
    x, y = obj.x, obj.y
    if obj.motion in DIRECTIONS:
        dx, dy = DIRECTIONS[obj.motion]
        x, y = (0.5 if dx else x), (0.5 if dy else y)
    return replace(obj, motion=motion, x=x, y=y)


def sample_edit(
    rng: np.random.Generator, scene: Scene, task: str | None = None, image: bool = False, held_out: bool | None = False
) -> EditPair | None:
    """A random edit of `scene` (of `task` when given). held_out=False keeps targets to training
    combinations (None: anything). None when the task does not apply or no such edit exists."""
    tasks = applicable_tasks(scene, image)
    task = task or tasks[int(rng.integers(len(tasks)))]
    if task not in tasks:
        return None
    used = {scene.background, *(o.color for o in scene.objects)}
    free_colors = [c for c in COLOR_NAMES if c not in used]
    for _ in range(20):  # a few draws find a target outside the held-out combinations
        k = int(rng.integers(len(scene.objects)))
        obj = scene.objects[k]
        if task == "recolor":
            edit = Edit(task, k, free_colors[int(rng.integers(len(free_colors)))])
        elif task == "background":
            edit = Edit(task, None, free_colors[int(rng.integers(len(free_colors)))])
        elif task == "reshape":
            shapes = [s for s in SHAPES if s != obj.shape]
            edit = Edit(task, k, shapes[int(rng.integers(len(shapes)))])
        elif task == "remove":
            edit = Edit(task, k)
        elif task == "add":
            new = sample_object(rng, free_colors[int(rng.integers(len(free_colors)))], "still" if image else None)
            edit = Edit(task, None, added=new)
        else:
            motions = [m for m in MOTIONS if m != obj.motion]
            edit = Edit(task, k, motions[int(rng.integers(len(motions)))])
        target = apply_edit(scene, edit)
        if held_out is None or scene_is_held_out(target) == held_out:
            return EditPair(scene, target, edit, canonical_instruction(scene, edit, image))
    return None


def sample_pair(
    rng: np.random.Generator, image: bool = False, held_out: bool | None = False, task: str | None = None
) -> EditPair:
    """A random source (of the held-out kind asked for) and an edit of it."""
    from .scene import sample_scene

    while True:
        n = None
        if task == "remove":
            n = 2
        elif task == "add":
            n = 1
        scene = sample_scene(rng, n, image=image, held_out=held_out)
        pair = sample_edit(rng, scene, task, image, held_out=held_out)
        if pair is not None:
            return pair


# -- instructions -----------------------------------------------------------------------------
MOTION_VERBS: dict[str, tuple[str, ...]] = {  # imperative forms: "make the circle ..."
    "left": ("move left", "go left", "slide left", "move to the left", "head left", "travel left"),
    "right": ("move right", "go right", "slide right", "move to the right", "head right", "travel right"),
    "up": ("move up", "go up", "slide up", "rise", "move upwards", "head up"),
    "down": ("move down", "go down", "slide down", "fall", "move downwards", "drop"),
    "still": ("stand still", "stay still", "stop moving", "stop", "stay put", "not move"),
    "growing": ("grow", "get bigger", "expand", "grow bigger"),
    "shrinking": ("shrink", "get smaller", "contract", "shrink down"),
}


def _name(obj: ShapeObject) -> str:
    return f"the {obj.color} {obj.shape}"


def canonical_instruction(scene: Scene, edit: Edit, image: bool = False) -> str:
    """`make the red circle yellow`, `make the background white`, `turn the red circle into a
    star`, `remove the green star`, `add a yellow square moving up`, `make the red circle move up`."""
    if edit.task == "background":
        return f"make the background {edit.value}"
    if edit.task == "add":
        assert edit.added is not None
        return f"add {canonical_object(edit.added, image)}"
    obj = scene.objects[edit.target]
    if edit.task == "recolor":
        return f"make {_name(obj)} {edit.value}"
    if edit.task == "reshape":
        return f"turn {_name(obj)} into {'an' if edit.value[0] in 'aeiou' else 'a'} {edit.value}"
    if edit.task == "remove":
        return f"remove {_name(obj)}"
    return f"make {_name(obj)} {MOTION_VERBS[edit.value][0]}"


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _free_name(rng: np.random.Generator, scene: Scene, k: int) -> str:
    """How people point at an object: colour and shape, the colour alone, or the shape alone when
    no other object shares it; with synonyms, articles or none."""
    obj = scene.objects[k]
    others = [o for i, o in enumerate(scene.objects) if i != k]
    color, shape = _pick(rng, COLOR_WORDS[obj.color]), _pick(rng, SHAPE_WORDS[obj.shape])
    r = rng.random()
    if r < 0.4:
        words = f"{color} {shape}"
    elif r < 0.7 and all(o.shape != obj.shape for o in others):
        words = shape
    elif r < 0.85:
        words = _pick(rng, (f"{color} one", f"{color} shape", f"{color} thing", f"{color} object"))
    else:
        words = f"{color} {shape}"
    return _pick(rng, ("the ", "the ", "the ", "", "that ")) + words


def _free_new(rng: np.random.Generator, obj: ShapeObject, image: bool) -> str:
    color, shape = _pick(rng, COLOR_WORDS[obj.color]), _pick(rng, SHAPE_WORDS[obj.shape])
    text = _pick(rng, ("a ", "a ", "an ", "one ", "")) + f"{color} {shape}"
    text = text.replace("an " + color, ("an " if color[0] in "aeiou" else "a ") + color)
    if not image:
        from .typed import motion_phrase

        text += _pick(rng, (" ", " ", " that is ", ", ")) + motion_phrase(rng, obj.motion)
    return text.replace("that is moves", "that moves")


def free_instruction(rng: np.random.Generator, pair: EditPair, image: bool = False, typos: float = 0.15) -> str:
    """One of the ways people type the pair's instruction (docs/world.md: other verbs, articles, case,
    commas, a colour or a shape alone to name an unambiguous object, typos)."""
    scene, edit = pair.source, pair.edit
    task = edit.task
    if task == "background":
        c = _pick(rng, COLOR_WORDS[edit.value])
        noun = _pick(rng, ("background", "background", "backdrop", "bg"))
        text = _pick(
            rng,
            (
                f"change the {noun} to {c}",
                f"make the {noun} {c}",
                f"turn the {noun} {c}",
                f"set the {noun} to {c}",
                f"{c} {noun}",
                f"{c} {noun} instead",
                f"paint the {noun} {c}",
                f"put it on a {c} {noun}",
                f"replace the {noun} with {c}",
                f"change {noun} color to {c}",
            ),
        )
    elif task == "add":
        assert edit.added is not None
        new = _free_new(rng, edit.added, image)
        text = _pick(rng, (f"add {new}", f"put {new} in", f"insert {new}", f"put in {new}", f"also add {new}"))
        text = text + _pick(rng, ("", "", "", " too", " to the scene", " as well"))
    else:
        name = _free_name(rng, scene, edit.target)
        if task == "recolor":
            c = _pick(rng, COLOR_WORDS[edit.value])
            text = _pick(
                rng,
                (
                    f"make {name} {c}",
                    f"turn {name} {c}",
                    f"change {name} to {c}",
                    f"color {name} {c}",
                    f"paint {name} {c}",
                    f"recolor {name} {c}",
                    f"{name} should be {c}",
                    f"change the color of {name} to {c}",
                    f"make {name} {c} instead",
                ),
            )
        elif task == "reshape":
            s = _pick(rng, SHAPE_WORDS[edit.value])
            a = _pick(rng, ("a ", "a ", "an ", ""))
            a = ("an " if s[0] in "aeiou" else "a ") if a == "an " else a
            text = _pick(
                rng,
                (
                    f"turn {name} into {a}{s}",
                    f"replace {name} with {a}{s}",
                    f"change {name} to {a}{s}",
                    f"make {name} {a}{s}",
                    f"change {name} into {a}{s}",
                    f"swap {name} for {a}{s}",
                    f"{name} should be {a}{s}",
                ),
            )
        elif task == "remove":
            text = _pick(
                rng,
                (
                    f"remove {name}",
                    f"delete {name}",
                    f"get rid of {name}",
                    f"take out {name}",
                    f"erase {name}",
                    f"take away {name}",
                    f"remove {name} please",
                ),
            )
        else:
            verb = _pick(rng, MOTION_VERBS[edit.value])
            text = _pick(
                rng,
                (
                    f"make {name} {verb}",
                    f"let {name} {verb} instead",
                    f"have {name} {verb}",
                    f"{name} should {verb}",
                    f"make {name} {verb} instead",
                    f"let {name} {verb}",
                ),
            )
    words = text.split(" ")
    words = [typo(rng, w) if rng.random() < typos else w for w in words]
    text = " ".join(words)
    r = rng.random()
    if r < 0.15:
        text = text[0].upper() + text[1:]
    elif r < 0.2:
        text = text.upper()
    if rng.random() < 0.1:
        text += _pick(rng, (".", "!", " please"))
    return text
