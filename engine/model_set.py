"""The models of one model folder, loaded on one device, with the ids that name their cache
entries and results. Only the TAE and the T2V generator are required; each task model is
optional, and a request for a task whose model is missing is refused with what to do."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import file_digest, load_component
from .loras import Adapter, find_adapters
from .models.generator import Generator, GeneratorConfig
from .models.rewrite import PromptRewriter, RewriterConfig
from .models.tae import TAE, TAEConfig
from .models.upsampler import SkipDecoder
from .requests import ModelLimits, RequestError


def _load(path: Path, cls, cfg_cls, device: torch.device):
    return load_component(path, cls, cfg_cls, device)  # a text encoder's relative path: from the folder


def _has(path: Path) -> bool:
    return (path / "config.json").is_file()


@dataclass
class ModelSet:
    folder: Path
    tae: TAE
    generator: Generator  # text to video
    rewriter: PromptRewriter | None  # without one, prompts run as typed
    editor: Generator | None  # instruction editing (without one, the Edit tab offers SDEdit only)
    upsampler: Generator | None  # the upsampler's transformer...
    updecoder: SkipDecoder | None  # ... and its decoder (which also sees the enlarged input)
    personalizer: Generator | None  # the T2V generator grown to read a reference picture (docs/conditioning.md)
    animator: Generator | None  # the T2V generator grown to read given frames (animate, extend, interpolate)
    # Each role's id: the folder's name and the digests of what it reads (TAE, generator, rewriter,
    # then the task's own weights), so a cache entry or result names exactly the weights behind it.
    ids: dict[str, str]
    # Style adapters for the T2V generator, by name: the folder's loras/ and any extra folders.
    loras: dict[str, Adapter] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | Path, device: torch.device, loras: Iterable[str | Path] = ()) -> ModelSet:
        """The models of `folder`; `loras`: more folders of adapters besides its own loras/."""
        folder = Path(folder)
        rw = folder / "rewrite"
        base = ("tae", "t2v", "rewrite") if _has(rw) else ("tae", "t2v")
        ids = {"generator": f"{folder.name}@" + "".join(file_digest(folder / p)[:8] for p in base)}
        up, updec = folder / "upscale", folder / "upscale-decoder"
        has_up = _has(up) and _has(updec)
        if _has(folder / "edit"):
            ids["editor"] = f"{ids['generator']}+{file_digest(folder / 'edit')[:8]}"
        if has_up:
            ids["upsampler"] = f"{ids['generator']}+{file_digest(up)[:8]}{file_digest(updec)[:8]}"
        if _has(folder / "personalize"):
            ids["personalizer"] = f"{ids['generator']}+{file_digest(folder / 'personalize')[:8]}"
        if _has(folder / "animate"):
            ids["animator"] = f"{ids['generator']}+{file_digest(folder / 'animate')[:8]}"

        def gen(name: str) -> Generator | None:
            return _load(folder / name, Generator, GeneratorConfig, device) if _has(folder / name) else None

        return cls(
            folder=folder,
            tae=_load(folder / "tae", TAE, TAEConfig, device),
            generator=_load(folder / "t2v", Generator, GeneratorConfig, device),
            rewriter=_load(rw, PromptRewriter, RewriterConfig, device) if _has(rw) else None,
            editor=gen("edit"),
            upsampler=gen("upscale") if has_up else None,
            updecoder=_load(updec, SkipDecoder, TAEConfig, device) if has_up else None,
            personalizer=gen("personalize"),
            animator=gen("animate"),
            ids=ids,
            loras=find_adapters([folder / "loras", *loras]),
        )

    def limits(self, role: str = "generator") -> ModelLimits:
        """What the model in `role` can make (the T2V generator's where that role is missing: its
        request is then refused for the missing model): its DiT's position tables, in patches, times
        the patch and the TAE's downsampling."""
        model = getattr(self, role, None)
        dit = (model if isinstance(model, Generator) else self.generator).cfg.dit
        tae = self.tae.cfg
        (pt, ph, pw), s = dit.patch, tae.spatial_down
        return ModelLimits(
            size_multiple=math.lcm(s * ph, s * pw),
            max_frames=dit.max_t * pt * tae.temporal_down,
            max_height=dit.max_h * ph * s,
            max_width=dit.max_w * pw * s,
        )

    def require(self, role: str, missing: str) -> Generator:
        """The model in `role`, or a RequestError saying the folder `missing` it."""
        model = getattr(self, role)
        if model is None:
            raise RequestError(f"The model folder {self.folder} {missing}.")
        return model
