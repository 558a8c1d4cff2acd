"""Prompt rewriter (Movie Gen's "prompt rewrite", at our scale): it reads what a prompt asks for
and hands the generator the canonical caption of that, the phrasing it knows best.

Movie Gen rewrites user prompts with an LLM into the detailed style of its training captions. Our
generator's captions are short and structured, so the rewriter is a parser: a small word encoder
with letter trigrams (so "rigth" and "leftwards" land near "right" and "left"), trained on
typed_caption text (engine/world/typed.py) to read each prompt into the caption slots. The rewrite
is shown to the user, who can turn it off; when the parser is unsure it leaves the prompt alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..world.captions import NONE, SLOT_CLASSES, SLOTS, caption_from_labels
from ..world.palette import COLOR_NAMES
from ..world.typed import unknown_words
from .text import WordEncoder, WordEncoderConfig


@dataclass(frozen=True)
class RewriterConfig:
    words: WordEncoderConfig = field(
        default_factory=lambda: WordEncoderConfig(subwords=True, slot_classes=SLOT_CLASSES)
    )
    # Below this probability for any slot, the prompt goes to the generator as typed.
    min_confidence: float = 0.5


@dataclass(frozen=True)
class Rewrite:
    prompt: str  # as typed
    text: str  # what the generator is given: the canonical caption, or the prompt when unsure
    read: dict[str, str]  # slot -> what the parser read ('none': no such object)
    confidence: float  # the least sure slot's probability
    sure: bool  # confidence reached RewriterConfig.min_confidence, so text is the canonical caption
    unknown: tuple[str, ...]  # words the model was never taught (ignored)

    def describe(self) -> str:
        """One line for people: what the generator is given, and what it could not read."""
        if self.sure:
            line = f"Read as “{self.text}”"
        else:
            line = "Given to the model as typed (the rewriter was unsure how to read it)"
        if self.unknown:
            line += f"; words it does not know, ignored: {', '.join(self.unknown)}"
        return line

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "sure": self.sure,
            "confidence": round(self.confidence, 3),
            "unknown_words": list(self.unknown),
        }


COLOR_SLOTS = tuple(i for i, (name, _) in enumerate(SLOTS) if name == "background" or name.startswith("color"))


def read_slots(probs: list[torch.Tensor]) -> tuple[list[int], float]:
    """Each slot's class from per-slot probabilities (classes,), and how sure the reading is (the
    least sure slot's top probability).

    Every colour in a scene is distinct (docs/world.md), so the background and object colours are
    read together: the surest of them first, each of the others taking its best colour not yet
    taken. "a circle moving left on blue" names no colour for the circle; it becomes the likeliest
    colour other than blue, never a blue circle on blue. An object without a colour or a shape is
    no object at all.
    """
    labels = [int(p.argmax()) for p in probs]
    top = [float(p.max()) for p in probs]
    taken: set[int] = set()
    for k in sorted(COLOR_SLOTS, key=lambda k: -top[k]):
        p = probs[k].clone()
        p[list(taken)] = -1.0  # colours already in the scene; 'unspecified' / 'none' stay open
        labels[k] = int(p.argmax())
        if labels[k] < len(COLOR_NAMES):
            taken.add(labels[k])
    for obj in (SLOTS[1:4], SLOTS[4:7]):  # an object with no colour or no shape is no object
        first = SLOTS.index(obj[0])
        if NONE in (obj[0][1][labels[first]], obj[1][1][labels[first + 1]]):
            labels[first : first + 3] = [classes.index(NONE) for _, classes in obj]
    return labels, min(top)


class PromptRewriter(nn.Module):
    def __init__(self, cfg: RewriterConfig):
        super().__init__()
        self.cfg = cfg
        self.words = WordEncoder(cfg.words)

    @torch.no_grad()
    def forward(self, prompts: list[str], image: bool = False) -> list[Rewrite]:
        tokens, _ = self.words(prompts)  # (B, L + S, D)
        probs = [lg.float().softmax(-1) for lg in self.words.parse_logits(tokens)]  # per slot (B, classes)
        out = []
        for i, prompt in enumerate(prompts):
            lab, conf = read_slots([p[i] for p in probs])
            named = {SLOTS[k][1][lab[k]] for k in (1, 4)} != {NONE}  # a reading with no object says nothing
            sure = conf >= self.cfg.min_confidence and named
            out.append(
                Rewrite(
                    prompt=prompt,
                    text=caption_from_labels(lab, image) if sure else prompt,
                    read={name: classes[k] for (name, classes), k in zip(SLOTS, lab, strict=True)},
                    confidence=conf,
                    sure=sure,
                    unknown=tuple(unknown_words(prompt)),
                )
            )
        return out
