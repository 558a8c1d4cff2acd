"""The generator: text conditioner + flow-matching transformer, saved as one checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .text import TextConditioner, TextConfig
from .transformer import DiT, DiTConfig


@dataclass(frozen=True)
class GeneratorConfig:
    dit: DiTConfig = field(default_factory=DiTConfig)
    text: TextConfig = field(default_factory=TextConfig)


class Generator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.text = TextConditioner(cfg.text, cfg.dit.width)
        self.dit = DiT(cfg.dit)

    def encode_prompts(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """The DiT's context keyword arguments for a batch of prompts."""
        ctx, mask = self.text(prompts)
        return {"context": ctx, "context_mask": mask}

    def forward(self, x: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.dit(x, t, **kwargs)
