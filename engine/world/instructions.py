"""The instruction reader: what an edit instruction, typed freely, asks for (docs/world.md, "Edit
instructions"), and the canonical instruction the edit model is given for it.

Rule-based on purpose: the phrasings are a small closed grammar (a task verb, the object it acts on,
a new colour, shape or motion), so a few rules read them exactly and say which words they could not
place, where a learned reader would guess silently. It reads what `edits.canonical_instruction` and
`edits.free_instruction` write, including one slip of the keyboard (typed.typo) in a word.

The reading goes: tokens -> each corrected to a known word -> motion phrases found (longest match)
-> noun phrases ("the red circle", "the red one", "it") -> the task and its parts -> with a source
scene, the target resolved to the one object it can mean -> the canonical instruction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from .captions import _an
from .edits import MOTION_VERBS
from .palette import COLOR_WORDS, MOTION_WORDS, MOTIONS
from .scene import Scene
from .typed import _ACROSS, _OWN_VERBS, _WAYS, TYPED_SHAPE_WORDS, _one_slip, known_words


@dataclass(frozen=True)
class ObjectRef:
    """How the instruction names an object; a part it does not say (or cannot pin down) is None."""

    color: str | None
    shape: str | None

    def name(self) -> str | None:
        """The canonical way to point at it: 'the red circle', 'the red one', 'the circle'."""
        if self.color and self.shape:
            return f"the {self.color} {self.shape}"
        if self.color:
            return f"the {self.color} one"  # the colour-alone name free_instruction trains on
        if self.shape:
            return f"the {self.shape}"
        return None


@dataclass(frozen=True)
class InstructionReading:
    task: str | None  # one of EDIT_TASKS, None if it cannot tell
    target: ObjectRef | None  # the object acted on (recolor, reshape, remove, motion)
    value: str | None  # new colour (recolor, background), shape (reshape) or motion (motion)
    added: ObjectRef | None  # add: the new object's colour and shape
    added_motion: str | None  # add: its motion, if said
    unknown: tuple[str, ...]  # words it does not know, as typed
    canonical: str | None  # edits.canonical_instruction's form when the reading is complete

    def describe(self) -> str:
        """One line for the UI: 'recolor: the red circle -> yellow', 'add: a yellow square moving up'."""
        target = (self.target.name() if self.target else None) or "?"
        value = self.value or "?"
        if self.task is None:
            line = "can't tell what to change"
        elif self.task == "background":
            line = f"background -> {value}"
        elif self.task == "remove":
            line = f"remove: {target}"
        elif self.task == "add":
            line = "add: " + (_added_name(self.added, self.added_motion) or "?")
        else:
            line = f"{self.task}: {target} -> {value}"
        if self.unknown:
            line += f" (unknown: {', '.join(self.unknown)})"
        return line

    def to_dict(self) -> dict[str, Any]:
        def ref(r: ObjectRef | None) -> dict[str, str | None] | None:
            return None if r is None else {"color": r.color, "shape": r.shape}

        return {
            "task": self.task,
            "target": ref(self.target),
            "value": self.value,
            "added": ref(self.added),
            "added_motion": self.added_motion,
            "unknown": list(self.unknown),
            "canonical": self.canonical,
            "describe": self.describe(),
        }


# -- vocabulary ---------------------------------------------------------------------------------
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?", re.IGNORECASE)

# Words that only steer the task; the rest of the verbs ("make", "turn", "change" ...) say nothing
# the phrase structure does not (the value after the object is what changes), so they are glue.
_REMOVE_VERBS = ("remove", "delete", "erase", "rid")  # "get rid of"; "take out/away" in _classify
_ADD_VERBS = ("add", "insert", "put")
_BG_NOUNS = ("background", "backdrop", "bg", "backround", "backgound")
_OBJECT_NOUNS = ("one", "thing", "object", "shape", "thingy")  # "the red one"
_VERBS = "make turn change color colour paint recolor recolour set replace swap let have should get take"
_GLUE = """the a an that this these those it its of to into in on onto with for from by at as be is are
please pls instead too also well scene video clip frame now then just so and again can you could would
i want me like do let's"""

# Each motion's phrases: the imperatives of edits, the participles of the captions and the many
# forms of the prompt reader. Matched longest first, so "from left to right" is right, not left.
_MOTION_SOURCES = (MOTION_VERBS, MOTION_WORDS, _WAYS, _ACROSS, _OWN_VERBS)


def _tokens(text: str) -> list[str]:
    return [m.group().lower() for m in _TOKEN.finditer(text)]


@cache
def _motion_phrases() -> dict[tuple[str, ...], str]:
    phrases: dict[tuple[str, ...], str] = {}
    for table in _MOTION_SOURCES:
        for motion, options in table.items():
            for phrase in options:
                phrases.setdefault(tuple(_tokens(phrase)), motion)
    for motion in MOTIONS:  # the bare names: "grow" is a verb above, "growing" is here
        phrases.setdefault((motion,), motion)
    return phrases


@cache
def _vocabulary() -> dict[str, tuple[str, str | None]]:
    """word -> (kind, canonical value). The order is the tie-break when a slip could be either of
    two words: colours and shapes, what instructions are about, first; then the task words."""
    vocab: dict[str, tuple[str, str | None]] = {}
    for color, words in COLOR_WORDS.items():
        vocab.update({w: ("color", color) for w in words})
    for shape, words in TYPED_SHAPE_WORDS.items():
        vocab.update({w: ("shape", shape) for w in words if " " not in w and w not in vocab})
    vocab.update({w: ("bg", None) for w in _BG_NOUNS})
    vocab.update({w: ("remove", None) for w in _REMOVE_VERBS})
    vocab.update({w: ("add", None) for w in _ADD_VERBS})
    vocab.update({w: ("noun", None) for w in _OBJECT_NOUNS})
    vocab["it"] = ("it", None)
    vocab.update({w: ("glue", None) for w in _VERBS.split() if w not in vocab})  # "stap" is "swap", not "stop"
    for phrase in _motion_phrases():
        for w in phrase:
            vocab.setdefault(w, ("motionword", None))
    for w in _GLUE.split():
        vocab.setdefault(w, ("glue", None))
    return vocab


def _typo_of(word: str, known: str) -> bool:
    """True when typed.typo can turn `known` into `word`: one letter at 1..n-2 swapped with the
    next, dropped, doubled or replaced; the first letter never changes."""
    if len(known) < 4 or word[0] != known[0] or abs(len(word) - len(known)) > 1:
        return False
    for i in range(1, len(known) - 1):
        variants = (known[:i] + known[i + 1] + known[i] + known[i + 2 :], known[:i] + known[i + 1 :])
        if word in variants or word == known[:i] + known[i] + known[i:]:
            return True
        if len(word) == len(known) and word[:i] == known[:i] and word[i + 1 :] == known[i + 1 :]:
            return True
    return False


@cache
def _candidates(word: str) -> tuple[str, ...]:
    """The known words `word` may be: itself, else the words one slip of the keyboard away (words
    of 4+ letters), the slips typed.typo makes first (it keeps the first and last letters), then
    any other one-letter slip (typed._one_slip) that keeps the first letter. Empty if none."""
    vocab = _vocabulary()
    if word in vocab:
        return (word,)
    if len(word) < 3 or not word.isalpha():
        return ()
    exact = [k for k in vocab if _typo_of(word, k)]  # dict order: colours and shapes first
    near = [k for k in vocab if len(k) >= 4 and k[0] == word[0] and _one_slip(word, k)]
    return tuple(dict.fromkeys(exact + near))


# Glue words that are also a slip of a content word ("let" for "left", "can" for "cyan"): read as
# the glue word only where the next word is one that glue word takes (a word here, or a kind).
_SHADOWED: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "let": ("left", ("the", "that", "this", "it", "those", "these", "a", "an", "me", "us"), ("color", "shape")),
    "can": ("cyan", ("you", "u", "i", "we", "it", "they", "someone", "please", "the", "that"), ()),
}


def _unshadow(words: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    vocab = _vocabulary()
    out = list(words)
    for i, cands in enumerate(words):
        if len(cands) == 1 and cands[0] in _SHADOWED:
            content, takes, kinds = _SHADOWED[cands[0]]
            nxt = words[i + 1][0] if i + 1 < len(words) and words[i + 1] else None
            if nxt is None or (nxt not in takes and vocab[nxt][0] not in kinds):
                out[i] = (content,)
    return out


@dataclass(frozen=True)
class _Token:
    kind: str  # color, shape, bg, remove, add, noun, it, motion, glue, unknown
    value: str | None  # the canonical colour / shape / motion
    word: str  # corrected word(s)


@dataclass(frozen=True)
class _Phrase:
    """A noun phrase: a colour and/or shape ("red circle", "red one", "circle"), or "it"."""

    ref: ObjectRef
    start: int  # token index where it starts
    value_slot: bool  # after into/to/with/for/be: the new value, never the target


_VALUE_PREPS = ("into", "to", "with", "for", "be")


@cache
def _phrases_by_first() -> dict[str, tuple[tuple[str, ...], ...]]:
    """Motion phrases by their first word, longest first."""
    table: dict[str, list[tuple[str, ...]]] = {}
    for phrase in sorted(_motion_phrases(), key=len, reverse=True):
        table.setdefault(phrase[0], []).append(phrase)
    return {w: tuple(p) for w, p in table.items()}


def _match_motion(words: list[tuple[str, ...]], i: int) -> tuple[str, ...] | None:
    """The longest motion phrase starting at word i. In a phrase of two or more words any candidate
    of a slipped word counts ("decreasing in siwe" is "size", not "side"); a one-word phrase takes
    only the first ("stor" is "star", not "stop")."""
    by_first = _phrases_by_first()
    starts = sorted((p for c in words[i] for p in by_first.get(c, ())), key=len, reverse=True)
    for phrase in starts:
        if len(phrase) == 1 and phrase[0] != words[i][0]:
            continue
        if i + len(phrase) <= len(words) and all(w in words[i + j] for j, w in enumerate(phrase)):
            return phrase
    return None


def _classify(words: list[tuple[str, ...]], typed: list[str]) -> list[_Token]:
    """Each word's candidates to a token, each motion phrase (longest match) one token."""
    vocab = _vocabulary()
    out: list[_Token] = []
    i = 0
    while i < len(words):
        if i + 1 < len(words) and "take" in words[i] and words[i + 1][:1] in (("out",), ("away",)):
            out.append(_Token("remove", None, "take " + words[i + 1][0]))  # "tale out": "tile" comes first
            i += 2
            continue
        phrase = _match_motion(words, i)
        if phrase is not None:
            out.append(_Token("motion", _motion_phrases()[phrase], " ".join(phrase)))
            i += len(phrase)
            continue
        word = words[i][0] if words[i] else typed[i].lower()
        kind, value = vocab.get(word, ("unknown", None))
        if kind == "motionword":  # a piece of a motion phrase standing alone ("moving") says nothing
            kind = "glue"
        out.append(_Token(kind, value, word))
        i += 1
    return out


def _phrases(tokens: list[_Token]) -> list[_Phrase]:
    """Noun phrases: a colour followed at once by a shape or "one/thing", a shape, a colour, "it".
    A new colour after a complete phrase starts the next one: "the circle yellow" is two."""
    out: list[_Phrase] = []
    skip = False  # the shape or "one" just taken into a colour's phrase
    for i, tok in enumerate(tokens):
        if skip:
            skip = False
            continue
        after_prep = any(i >= k and tokens[i - k].word in _VALUE_PREPS for k in (1, 2))  # "into (a) star"
        if tok.kind == "color":
            skip = i + 1 < len(tokens) and tokens[i + 1].kind in ("shape", "noun")
            shape = tokens[i + 1].value if skip else None
            out.append(_Phrase(ObjectRef(tok.value, shape), i, after_prep))
        elif tok.kind == "shape":
            out.append(_Phrase(ObjectRef(None, tok.value), i, after_prep))
        elif tok.kind == "it":
            out.append(_Phrase(ObjectRef(None, None), i, after_prep))
    return out


def _resolve(ref: ObjectRef, source: Scene | None) -> ObjectRef:
    """The one source object the name can mean, in full; as said when it means none or several."""
    if source is None:
        return ref
    matches = [
        o
        for o in source.objects
        if (ref.color is None or o.color == ref.color) and (ref.shape is None or o.shape == ref.shape)
    ]
    return ObjectRef(matches[0].color, matches[0].shape) if len(matches) == 1 else ref


def _added_name(added: ObjectRef | None, motion: str | None) -> str | None:
    """'a yellow square moving up' (captions.canonical_object), or what was said of it."""
    if added is None or (added.color is None and added.shape is None):
        return None
    words = " ".join(w for w in (added.color, added.shape or "one") if w)
    text = f"{_an(words)} {words}"
    if motion is not None:
        text += " " + (motion if motion in ("growing", "shrinking") else MOTION_WORDS[motion][0])
    return text


def _canonical(
    task: str | None, target: ObjectRef | None, value: str | None, added: ObjectRef | None, motion: str | None
) -> str | None:
    """edits.canonical_instruction's sentence for a reading; None when a part it needs is missing."""
    if task == "add":
        name = _added_name(added, motion)
        return None if name is None else f"add {name}"
    if task == "background":
        return None if value is None else f"make the background {value}"
    name = target.name() if target else None
    if task is None or name is None or (value is None and task != "remove"):
        return None
    if task == "recolor":
        return f"make {name} {value}"
    if task == "reshape":
        return f"turn {name} into {_an(value)} {value}"
    if task == "remove":
        return f"remove {name}"
    return f"make {name} {MOTION_VERBS[value][0]}"


def _task(tokens: list[_Token], phrases: list[_Phrase]) -> str | None:
    """The task from its cue words, in order of how sure they are: a background noun, a remove or
    add verb, a motion phrase; otherwise what the value after the object is (a shape or a colour)."""
    kinds = [t.kind for t in tokens]
    if "bg" in kinds:
        return "background"
    if "remove" in kinds:
        return "remove"
    if "add" in kinds:
        return "add"
    if "motion" in kinds:
        return "motion"
    value = _value_phrase(phrases)
    if value is None:
        return None
    return "reshape" if value.ref.shape else "recolor" if value.ref.color else None


def _value_phrase(phrases: list[_Phrase]) -> _Phrase | None:
    """The phrase saying the new colour or shape: after into/to/with/for/be, else the last of two
    or more ("make the red circle yellow"); a lone colour is a value too ("paint it blue" has two)."""
    marked = [p for p in phrases if p.value_slot and (p.ref.color or p.ref.shape)]
    if marked:
        return marked[-1]
    if len(phrases) >= 2 and (phrases[-1].ref.color or phrases[-1].ref.shape):
        return phrases[-1]
    if len(phrases) == 1 and phrases[0].ref.color and not phrases[0].ref.shape:
        return phrases[0]  # "make yellow": the object is left to the source to say
    return None


def _background_color(tokens: list[_Token], phrases: list[_Phrase]) -> str | None:
    """The new background: the colour after to/with/be ("from red to blue"), else the first after
    the noun ("the background black and the circle white"), else the one before it ("green bg")."""
    colored = [p for p in phrases if p.ref.color]
    noun = next(i for i, t in enumerate(tokens) if t.kind == "bg")
    marked = [p for p in colored if p.value_slot]
    after = [p for p in colored if p.start > noun]
    before = [p for p in colored if p.start < noun]
    best = marked[-1:] or after[:1] or before[-1:]
    return best[0].ref.color if best else None


def read_instruction(text: str, source: Scene | None = None) -> InstructionReading:
    """What an edit instruction asks for. With `source` (the clip's scene, e.g. from the analyser),
    the target is resolved to the one object it can mean and the canonical names it in full."""
    typed = [m.group() for m in _TOKEN.finditer(text)]
    words = _unshadow([_candidates(w.lower()) for w in typed])
    pairs = list(zip(typed, words, strict=True))
    unknown = tuple(dict.fromkeys(t for t, c in pairs if not c and t.lower() not in known_words()))
    tokens = _classify(words, typed)
    phrases = _phrases(tokens)
    task = _task(tokens, phrases)

    target: ObjectRef | None = None
    value: str | None = None
    added: ObjectRef | None = None
    added_motion: str | None = None
    motions = [t.value for t in tokens if t.kind == "motion"]
    if task == "background":
        value = _background_color(tokens, phrases)
    elif task == "add":
        named = [p.ref for p in phrases if p.ref.color or p.ref.shape]
        added = named[0] if named else None
        added_motion = motions[0] if motions else None
    elif task in ("remove", "motion"):
        target = phrases[0].ref if phrases else ObjectRef(None, None)
        value = motions[0] if task == "motion" and motions else None
    elif task is not None:
        value_phrase = _value_phrase(phrases)
        assert value_phrase is not None
        value = value_phrase.ref.shape if task == "reshape" else value_phrase.ref.color
        before = [p for p in phrases if p.start < value_phrase.start]
        target = before[0].ref if before else ObjectRef(None, None)
    if target is not None:
        target = _resolve(target, source)
    return InstructionReading(
        task=task,
        target=target,
        value=value,
        added=added,
        added_motion=added_motion,
        unknown=unknown,
        canonical=_canonical(task, target, value, added, added_motion),
    )
