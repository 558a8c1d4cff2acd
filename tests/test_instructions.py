import json

import numpy as np
import pytest

from engine.world.edits import EDIT_TASKS, EditPair, free_instruction, sample_pair
from engine.world.instructions import ObjectRef, read_instruction
from engine.world.scene import Scene, ShapeObject

TWO = Scene("black", (ShapeObject("red", "circle", "left"), ShapeObject("green", "star", "growing")))
ONE = Scene("white", (ShapeObject("blue", "square", "up"),))


def _truth(pair: EditPair) -> tuple:
    """What a reading of the pair's instruction should say: (task, target, value, added, added_motion)."""
    e = pair.edit
    obj = None if e.target is None else pair.source.objects[e.target]
    target = None if obj is None else ObjectRef(obj.color, obj.shape)
    added = None if e.added is None else ObjectRef(e.added.color, e.added.shape)
    return e.task, target, e.value or None, added, None if e.added is None else e.added.motion


def _said(reading) -> tuple:
    return reading.task, reading.target, reading.value, reading.added, reading.added_motion


@pytest.mark.parametrize("task", EDIT_TASKS)
def test_canonical_instructions_read_back_exactly(task):
    rng = np.random.default_rng(0)
    for _ in range(200):
        pair = sample_pair(rng, task=task)
        for source in (None, pair.source):
            r = read_instruction(pair.instruction, source)
            assert _said(r) == _truth(pair), pair.instruction
            assert r.canonical == pair.instruction and r.unknown == ()


def test_canonical_image_instructions_read_back_exactly():
    # Images: no motion task, and a new object without a motion ("add a yellow square").
    rng = np.random.default_rng(1)
    for _ in range(200):
        pair = sample_pair(rng, image=True)
        r = read_instruction(pair.instruction)
        want = _truth(pair)
        assert _said(r) == (*want[:4], None) and r.canonical == pair.instruction, pair.instruction


def _free_sample(n: int, seed: int) -> list[tuple[EditPair, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pair = sample_pair(rng)
        out.append((pair, free_instruction(rng, pair)))
    return out


def test_free_phrasings_read_the_task_and_value():
    task_ok = value_ok = 0
    sample = _free_sample(300, 2)
    for pair, text in sample:
        r = read_instruction(text)
        task, _, value, added, added_motion = _truth(pair)
        task_ok += r.task == task
        value_ok += ((r.added, r.added_motion) == (added, added_motion)) if task == "add" else r.value == value
    task_acc, value_acc = task_ok / len(sample), value_ok / len(sample)
    print(f"free phrasings: task {task_acc:.3f}, value {value_acc:.3f}")
    assert task_acc >= 0.95 and value_acc >= 0.90


def test_free_phrasings_with_the_source_give_the_canonical():
    sample = _free_sample(300, 3)
    exact = np.mean([read_instruction(text, pair.source).canonical == pair.instruction for pair, text in sample])
    print(f"free phrasings with source: canonical exact {exact:.3f}")
    assert exact >= 0.85


def test_every_word_slipped_still_reads():
    # A slip in every word of 4+ letters (typed.typo), far more than people make.
    rng = np.random.default_rng(4)
    sample = [sample_pair(rng) for _ in range(200)]
    texts = [free_instruction(rng, pair, typos=1.0) for pair in sample]
    exact = np.mean(
        [read_instruction(t, p.source).canonical == p.instruction for p, t in zip(sample, texts, strict=True)]
    )
    print(f"a slip in every word, with source: canonical exact {exact:.3f}")
    assert exact >= 0.9


@pytest.mark.parametrize(
    "text,task,target,value,canonical",
    [
        ("make the circle yellow", "recolor", ObjectRef(None, "circle"), "yellow", "make the circle yellow"),
        ("turn the red circle blue", "recolor", ObjectRef("red", "circle"), "blue", "make the red circle blue"),
        ("make the red circle yellow", "recolor", ObjectRef("red", "circle"), "yellow", "make the red circle yellow"),
        ("change the circle from red to blue", "recolor", ObjectRef(None, "circle"), "blue", "make the circle blue"),
        ("paint the red one teal", "recolor", ObjectRef("red", None), "cyan", "make the red one cyan"),
        ("change the background to white", "background", None, "white", "make the background white"),
        ("green bg", "background", None, "green", "make the background green"),
        ("put it on a grey backdrop", "background", None, "gray", "make the background gray"),
        ("turn the circle into a star", "reshape", ObjectRef(None, "circle"), "star", "turn the circle into a star"),
        (
            "replace the square with a triangle",
            "reshape",
            ObjectRef(None, "square"),
            "triangle",
            "turn the square into a triangle",
        ),
        ("make the red one a box", "reshape", ObjectRef("red", None), "square", "turn the red one into a square"),
        ("remove the green star", "remove", ObjectRef("green", "star"), None, "remove the green star"),
        ("delete the green star", "remove", ObjectRef("green", "star"), None, "remove the green star"),
        ("get rid of the green star", "remove", ObjectRef("green", "star"), None, "remove the green star"),
        ("take out the green star please", "remove", ObjectRef("green", "star"), None, "remove the green star"),
        ("make the circle move up", "motion", ObjectRef(None, "circle"), "up", "make the circle move up"),
        ("let the star grow instead", "motion", ObjectRef(None, "star"), "growing", "make the star grow"),
        ("make it stand still", "motion", ObjectRef(None, None), "still", None),
        (
            "have the ball go from left to right",
            "motion",
            ObjectRef(None, "circle"),
            "right",
            "make the circle move right",
        ),
    ],
)
def test_user_examples(text, task, target, value, canonical):
    # A missing colour or shape still gives the canonical of what was said; no object at all, none.
    r = read_instruction(text)
    assert (r.task, r.target, r.value, r.canonical, r.unknown) == (task, target, value, canonical, ())


def test_add():
    r = read_instruction("add a yellow square moving up")
    assert (r.task, r.added, r.added_motion, r.target) == ("add", ObjectRef("yellow", "square"), "up", None)
    assert r.canonical == "add a yellow square moving up"
    r = read_instruction("Put an orange ball that is getting smaller in, please")
    assert r.canonical == "add an orange circle shrinking"
    assert read_instruction("insert a violet star").canonical == "add a purple star"  # an image's add
    assert read_instruction("add a star falling").canonical == "add a star moving down"  # colour left to the model
    assert read_instruction("add").canonical is None


def test_source_resolves_the_target():
    assert read_instruction("make the circle yellow", TWO).canonical == "make the red circle yellow"
    assert read_instruction("make the green one shrink", TWO).canonical == "make the green star shrink"
    assert read_instruction("make it stand still", ONE).target == ObjectRef("blue", "square")
    assert read_instruction("make it stand still", ONE).canonical == "make the blue square stand still"
    assert read_instruction("make yellow", ONE).canonical == "make the blue square yellow"
    # Ambiguous: two circles; the part it cannot pin down stays None and the canonical says what was said.
    circles = Scene("black", (ShapeObject("red", "circle", "left"), ShapeObject("green", "circle", "up")))
    r = read_instruction("remove the circle", circles)
    assert r.target == ObjectRef(None, "circle") and r.canonical == "remove the circle"
    assert read_instruction("make it blue", TWO).canonical is None
    # A name no source object has is kept as said (the analyser may have misread the clip).
    assert read_instruction("remove the pink square", TWO).target == ObjectRef("pink", "square")


def test_slips_of_the_keyboard():
    # swap, drop, double, replace one letter of a 4+ letter word (never the first; typed.typo).
    want = "make the red circle yellow"
    for text in (
        "mkae the red cirlce yellow",
        "make the red crcle yelow",
        "make the red circcle yelloow",
        "make the red cirble yelkow",
    ):
        assert read_instruction(text).canonical == want, text
    assert read_instruction("turn the red cirle into a sar").canonical == "turn the red circle into a star"
    assert read_instruction("remvoe the gren star").canonical == "remove the green star"
    assert read_instruction("change the backgruond to pnik").canonical == "make the background pink"
    # "let" is the verb before its object and "left" (a slip) elsewhere; "can" likewise for "cyan".
    assert read_instruction("have the star go let").value == "left"
    assert read_instruction("make the background can").value == "cyan"
    assert read_instruction("can you make the star blue").canonical == "make the star blue"


def test_unknown_words_are_listed_as_typed():
    r = read_instruction("make the dog Magenta")
    assert r.unknown == ("dog", "Magenta") and r.task is None and r.canonical is None
    r = read_instruction("make the circle magenta")
    assert r.unknown == ("magenta",) and r.canonical is None
    r = read_instruction("remove the dog")
    assert (r.task, r.target, r.canonical, r.unknown) == ("remove", ObjectRef(None, None), None, ("dog",))


@pytest.mark.parametrize("text", ["", "   ", "?!", "asdf qwerty zxcv", "hello there", "make it"])
def test_empty_or_nonsense_has_no_task(text):
    r = read_instruction(text)
    assert r.task is None and r.canonical is None


def test_describe_and_to_dict():
    assert read_instruction("make the red circle yellow").describe() == "recolor: the red circle -> yellow"
    assert read_instruction("add a yellow square moving up").describe() == "add: a yellow square moving up"
    assert read_instruction("change the background to white").describe() == "background -> white"
    assert read_instruction("remove the circle", TWO).describe() == "remove: the red circle"
    assert read_instruction("make the dog magenta").describe() == "can't tell what to change (unknown: dog, magenta)"
    d = read_instruction("turn the red circle into a star").to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["task"] == "reshape" and d["target"] == {"color": "red", "shape": "circle"} and d["value"] == "star"
    assert d["canonical"] == "turn the red circle into a star"
