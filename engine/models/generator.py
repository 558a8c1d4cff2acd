"""The generator: text conditioner + flow-matching transformer, saved as one checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn

from .reference import ReferenceConfig, ReferenceEncoder
from .text import TextConditioner, TextConfig
from .transformer import DiT, DiTConfig


@dataclass(frozen=True)
class GeneratorConfig:
    dit: DiTConfig = field(default_factory=DiTConfig)
    text: TextConfig = field(default_factory=TextConfig)
    # Personalization: a vision encoder whose tokens join the text tokens (None: no reference).
    reference: ReferenceConfig | None = None

    def resolved(self, folder: str | Path) -> GeneratorConfig:
        """Relative text-encoder paths taken from the model folder `folder`."""
        return replace(self, text=self.text.resolved(folder))


class Generator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.text = TextConditioner(cfg.text, cfg.dit.width)
        self.dit = DiT(cfg.dit)
        if cfg.reference is not None:
            self.reference = ReferenceEncoder(cfg.reference)
            self.reference_proj = nn.Sequential(
                nn.Linear(cfg.reference.width, cfg.dit.width), nn.LayerNorm(cfg.dit.width)
            )

    def external_prefixes(self) -> tuple[str, ...]:
        """Weights a checkpoint does not hold: the transformers text encoders, read from their folders."""
        return tuple(f"text.{p}" for p in self.text.external_prefixes())

    def encode_prompts(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """The DiT's context keyword arguments for a batch of prompts."""
        ctx, mask = self.text(prompts)
        return {"context": ctx, "context_mask": mask}

    def with_reference(
        self, ctx: dict[str, torch.Tensor], image: torch.Tensor | None, keep: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The context with the reference's tokens appended: image (B, 3, S, S) in [-1, 1], or
        None for no reference (the context as it is). keep (B,) bool drops the reference of some
        samples of a batch (their tokens are masked out): how training teaches v(no reference)."""
        if image is None:
            return ctx
        image = image.to(self.reference_proj[0].weight.dtype)
        tokens = self.reference_proj(self.reference(image))  # (B, N, D)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)  # (B, N)
        if keep is not None:
            mask = mask & keep[:, None].to(tokens.device)
        context, context_mask = ctx["context"], ctx["context_mask"]
        if len(context) == 1 and len(tokens) > 1:  # one prompt for a batch of references
            context, context_mask = context.expand(len(tokens), -1, -1), context_mask.expand(len(tokens), -1)
        return {
            "context": torch.cat([context, tokens.to(context.dtype)], 1),
            "context_mask": torch.cat([context_mask, mask], 1),
        }

    def forward(self, x: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.dit(x, t, **kwargs)
