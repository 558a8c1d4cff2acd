"""Stage 2: pre-train the built-in word-level text encoder to parse world captions.

Each random free-phrased caption comes with what it says (SLOTS: background, then colour, shape
and motion of up to two objects); the encoder's summary tokens learn to carry exactly that. The
generator later reads these tokens, so it never has to learn spelling from the flow loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..models.text import WordEncoder, WordEncoderConfig
from ..world.captions import free_caption
from ..world.scene import sample_scene
from ..world.typed import typed_caption
from .common import Logger, Runtime, cosine_lr, seed_all, set_lr


@dataclass(frozen=True)
class TextTrainConfig:
    steps: int = 600
    batch: int = 128
    lr: float = 2e-3
    image_fraction: float = 0.25
    seed: int = 1
    typed: bool = False  # train on typed_caption (the prompt rewriter) instead of free_caption


def parse_labels(logits: list[torch.Tensor]) -> torch.Tensor:
    """Slot logits -> predicted class per slot (B, slots)."""
    return torch.stack([lg.argmax(-1) for lg in logits], 1)


def caption_batch(
    rng: np.random.Generator, n: int, image_fraction: float, typed: bool = False
) -> tuple[list[str], torch.Tensor]:
    phrase = typed_caption if typed else free_caption
    texts, labels = [], []
    for _ in range(n):
        image = rng.random() < image_fraction
        cap = phrase(rng, sample_scene(rng, image=image, held_out=None), image=image)
        texts.append(cap.text)
        labels.append(cap.labels)
    return texts, torch.tensor(labels)


def train_text(tcfg: TextTrainConfig, mcfg: WordEncoderConfig, rt: Runtime) -> WordEncoder:
    seed_all(tcfg.seed)
    enc = WordEncoder(mcfg).to(rt.device)
    rng = np.random.default_rng(tcfg.seed + 1000 * rt.rank)
    opt = torch.optim.AdamW(enc.parameters(), lr=tcfg.lr, weight_decay=0.01)
    log = Logger(rt, "text", tcfg.steps, every=100)
    for step in range(tcfg.steps):
        set_lr(opt, cosine_lr(step, tcfg.steps, tcfg.lr))
        texts, labels = caption_batch(rng, tcfg.batch, tcfg.image_fraction, tcfg.typed)
        labels = labels.to(rt.device)
        with rt.autocast():
            tokens, _ = enc(texts)
            logits = enc.parse_logits(tokens)
        loss = sum(F.cross_entropy(lg.float(), labels[:, i]) for i, lg in enumerate(logits))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        rt.average_gradients(enc.parameters())
        opt.step()
        acc = (parse_labels(logits) == labels).all(1).float().mean()
        log.log(step, loss=loss.item(), exact=acc.item())
    rt.check_in_sync(enc, "text")
    return enc.eval()


@torch.no_grad()
def parse_accuracy(enc: WordEncoder, n: int = 1000, seed: int = 777, typed: bool = False) -> float:
    """Fraction of fresh free (or typed) captions, held-out combinations included, parsed exactly."""
    rng = np.random.default_rng(seed)
    texts, labels = caption_batch(rng, n, 0.25, typed)
    tokens, _ = enc(texts)
    pred = parse_labels(enc.parse_logits(tokens)).cpu()
    return float((pred == labels).all(1).float().mean())
