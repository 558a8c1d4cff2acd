"""Text encoders (docs/system.md section 2): several encoders, each projected by Linear + LayerNorm
to the backbone's width and concatenated along the sequence.

Built in, needing no download: a small word-level transformer. Words are lower-cased and hashed
into a fixed table (no vocabulary file; an unseen word still gets a stable token). Its output is
its per-word tokens plus a few pooled "summary" tokens. It is pre-trained on the world's captions
to parse each caption into what it says (colours, shapes, motions, background), which teaches it
synonyms, word order and case before the generator ever sees it. A byte-level encoder (ByT5-like)
was tried first: on our 2-core CPU it learned the parse ~10x slower, so words won.

Optional: any local Hugging Face encoder (T5, CLIP text) named by path in the config; it is
frozen and loaded only from disk (`local_files_only`), never from a hub.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn

from .layers import EncoderBlock, RMSNorm

PAD = 0  # word ids are hash + 2; 0 pads, 1 starts every prompt (so an empty prompt has a token)
BOS = 1
_WORD = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")


@dataclass(frozen=True)
class WordEncoderConfig:
    width: int = 128
    depth: int = 2
    heads: int = 4
    vocab: int = 4096  # hash buckets
    max_len: int = 48
    summary_tokens: int = 8
    # Parse head sizes, one per slot (see engine/world/captions.SLOTS); 0 = no head.
    slot_classes: tuple[int, ...] = ()
    # Add each word's letter trigrams (fastText-style) to its embedding, so a misspelt or inflected
    # word ("rigth", "leftwards") lands near the word it came from. The prompt rewriter uses it.
    subwords: bool = False


@dataclass(frozen=True)
class HFEncoderConfig:
    # A local folder with a transformers model (T5 encoder, CLIP text model, ...). Relative: to the
    # model folder the checkpoint is in, so a model and its encoder move together; its weights are
    # read from there, never copied into the checkpoint.
    path: str
    max_len: int = 77


@dataclass(frozen=True)
class TextConfig:
    # The world's word encoder (its parse pre-trained on the world's captions); None: only the
    # transformers encoders in `extra`, for footage whose captions are not the world's.
    words: WordEncoderConfig | None = field(default_factory=WordEncoderConfig)
    extra: tuple[HFEncoderConfig, ...] = ()

    def __post_init__(self) -> None:
        if self.words is None and not self.extra:
            raise ValueError("a text config needs the word encoder or at least one transformers encoder (extra)")

    def resolved(self, folder: str | Path) -> TextConfig:
        """The config with relative encoder paths taken from `folder` (the model folder)."""
        extra = tuple(
            replace(e, path=str(Path(folder) / e.path)) if not Path(e.path).is_absolute() else e for e in self.extra
        )
        return replace(self, extra=extra)


def words(prompt: str) -> list[str]:
    return _WORD.findall(prompt.lower())


def tokenize(prompts: list[str], max_len: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hashed word ids (B, L) and a mask (B, L) of real tokens; too-long prompts are cut."""
    rows = [[BOS] + [zlib.crc32(w.encode()) % (vocab - 2) + 2 for w in words(p)][: max_len - 1] for p in prompts]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, ids != PAD


def trigram_ids(prompts: list[str], length: int, vocab: int, per_word: int = 12) -> torch.Tensor:
    """Hashed letter trigrams of each word of "<word>" (B, length, per_word), 0 = none, aligned
    with tokenize()'s ids (position 0 is BOS, which has none)."""
    out = torch.zeros(len(prompts), length, per_word, dtype=torch.long)
    for i, p in enumerate(prompts):
        for j, w in enumerate(words(p)[: length - 1]):
            w = f"<{w}>"
            grams = [zlib.crc32(b"3:" + w[k : k + 3].encode()) % (vocab - 1) + 1 for k in range(len(w) - 2)]
            grams = grams[:per_word]
            out[i, j + 1, : len(grams)] = torch.tensor(grams)
    return out


class WordEncoder(nn.Module):
    def __init__(self, cfg: WordEncoderConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.embed = nn.Embedding(cfg.vocab, d)
        self.trigrams = nn.Embedding(cfg.vocab, d, padding_idx=0) if cfg.subwords else None
        self.pos = nn.Parameter(torch.randn(cfg.max_len, d) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(d, cfg.heads, 3 * d) for _ in range(cfg.depth))
        self.norm = RMSNorm(d)
        # Attention pooling: learned queries read the whole prompt into a few summary tokens.
        self.queries = nn.Parameter(torch.randn(cfg.summary_tokens, d) * 0.02)
        self.pool = nn.MultiheadAttention(d, cfg.heads, batch_first=True)
        self.heads = nn.ModuleList(nn.Linear(d, n) for n in cfg.slot_classes)

    @property
    def out_dim(self) -> int:
        return self.cfg.width

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> tokens (B, L + S, D) and mask (B, L + S): per-word tokens, then summaries."""
        dev = self.pos.device
        ids, mask = tokenize(prompts, self.cfg.max_len, self.cfg.vocab)
        ids, mask = ids.to(dev), mask.to(dev)
        x = self.embed(ids) + self.pos[: ids.shape[1]]  # (B, L, D)
        if self.trigrams is not None:
            grams = trigram_ids(prompts, ids.shape[1], self.cfg.vocab).to(dev)  # (B, L, G)
            count = (grams != 0).sum(-1, keepdim=True).clamp_min(1)  # (B, L, 1)
            x = x + self.trigrams(grams).sum(2) / count.sqrt()  # (B, L, D)
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        q = self.queries.expand(len(prompts), -1, -1)  # (B, S, D)
        summary, _ = self.pool(q, x, x, key_padding_mask=~mask, need_weights=False)  # (B, S, D)
        tokens = torch.cat([x, summary], 1)  # (B, L + S, D)
        return tokens, torch.cat([mask, mask.new_ones(len(prompts), self.cfg.summary_tokens)], 1)

    def parse_logits(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """One (B, classes) logit tensor per slot, read from the first summary tokens."""
        summary = tokens[:, -self.cfg.summary_tokens :]
        return [head(summary[:, i]) for i, head in enumerate(self.heads)]


class HFTextEncoder(nn.Module):
    """A frozen local transformers encoder; its hidden states are the tokens."""

    def __init__(self, cfg: HFEncoderConfig):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer  # optional dependency

        self.cfg = cfg
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.path, local_files_only=True)
        model = AutoModel.from_pretrained(cfg.path, local_files_only=True)
        if getattr(model.config, "is_encoder_decoder", False):  # T5 and friends: the encoder half
            model = model.get_encoder()
        self.model = getattr(model, "text_model", model)  # CLIP: its text tower
        self.model.requires_grad_(False).eval()
        cfg_ = self.model.config
        self.out_dim = getattr(cfg_, "d_model", None) or cfg_.hidden_size

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        dev = next(self.model.parameters()).device
        t = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.cfg.max_len, return_tensors="pt")
        out = self.model(input_ids=t.input_ids.to(dev), attention_mask=t.attention_mask.to(dev))
        return out.last_hidden_state, t.attention_mask.to(dev).bool()


class TextConditioner(nn.Module):
    """All encoders, each projected by Linear + LayerNorm to `width` and concatenated: (B, L, width).

    Adding an encoder changes only this module's config; the backbone just sees context tokens.
    """

    def __init__(self, cfg: TextConfig, width: int):
        super().__init__()
        self.cfg = cfg
        words = [WordEncoder(cfg.words)] if cfg.words is not None else []
        self.encoders = nn.ModuleList(words + [HFTextEncoder(e) for e in cfg.extra])
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(e.out_dim, width), nn.LayerNorm(width)) for e in self.encoders
        )

    @property
    def word_encoder(self) -> WordEncoder:
        if self.cfg.words is None:
            raise AttributeError("this text config has no word encoder (only transformers encoders)")
        return self.encoders[0]

    def external_prefixes(self) -> tuple[str, ...]:
        """The transformers encoders' weights: read from their own folders, not checkpoints."""
        first = 0 if self.cfg.words is None else 1
        return tuple(f"encoders.{i}." for i in range(first, len(self.encoders)))

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.project([enc(prompts) for enc in self.encoders])

    def project(self, encoded: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each encoder's own output (tokens (B, L_i, D_i), mask (B, L_i)), as forward computes it or
        as the encode pass stored it for training, projected and joined: the frozen encoders need
        not run again, only their projections train."""
        toks, masks = [], []
        for (t, m), proj in zip(encoded, self.proj, strict=True):
            toks.append(proj(t.to(proj[0].weight.dtype)))  # (B, L_i, width)
            masks.append(m)
        return torch.cat(toks, 1), torch.cat(masks, 1)  # (B, sum L_i, width), (B, sum L_i)
