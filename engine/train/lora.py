"""LoRA adapters on the generator's transformer, through peft: add one to train, save the adapter
alone (a few MB against the base's hundred), and load one merged into a copy of a base.

Only the DiT's attention and feed-forward Linear layers are adapted: they are where a style lives
(what the frames look like, how things move). The text encoders are left out, so a prompt reads the
same with or without an adapter and its cached embedding stays valid; the modulation and time MLPs
are left out too, since they set how strongly each block acts at each noise level (the schedule the
base learned), not what it draws.

The adapter is injected into `generator.dit` with peft's `inject_adapter_in_model`, not wrapped in a
PeftModel: the Generator stays a Generator, so `generator(x, t, **kwargs)`, `encode_prompts` and
everything the training loop and the engine call on it keep working unchanged.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import peft
import torch
from peft.tuners.lora import LoraLayer, LoraModel
from safetensors.torch import load_file, save_file

from ..checkpoint import weights_digest
from ..models.generator import Generator

ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "config.json"
ADAPTER_NAME = "default"  # peft's name for the one adapter a module holds here


class LoraError(ValueError):
    """An adapter that cannot be used with this base; the message says what does not fit."""


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 8
    alpha: float = 8.0  # the update is scaled by alpha / rank: equal values keep it at 1 whatever the rank
    dropout: float = 0.0
    # Module paths inside each DiT block (transformer.Block): self-attention, cross-attention to the
    # prompt, and the SwiGLU feed-forward.
    targets: tuple[str, ...] = (
        "attn.q",
        "attn.kv",
        "attn.out",
        "cross.q",
        "cross.kv",
        "cross.out",
        "ffn.w1",
        "ffn.w2",
        "ffn.w3",
    )

    def peft_config(self) -> peft.LoraConfig:
        """peft's config: the targets as one regex over the DiT's module names, so only its blocks'
        layers match (a bare "attn.q" would match the text encoders' layers of that name too)."""
        names = "|".join(re.escape(t) for t in self.targets)
        return peft.LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=rf"blocks\.\d+\.({names})",
            bias="none",
        )


def add_lora(generator: Generator, cfg: LoraConfig = LoraConfig()) -> Generator:
    """The generator with a fresh adapter in its DiT (in place; its update starts at zero, so the
    output is the base's until it trains) and only the adapter trainable."""
    generator.requires_grad_(False)
    try:
        peft.inject_adapter_in_model(cfg.peft_config(), generator.dit, adapter_name=ADAPTER_NAME)
    except ValueError as e:  # peft: no module matched the targets
        raise LoraError(f"No layer of this generator's transformer matches the targets {cfg.targets}: {e}") from None
    return generator


def adapter_state(generator: Generator) -> dict[str, torch.Tensor]:
    """The adapter's tensors alone (keys relative to the DiT), as saved."""
    return peft.get_peft_model_state_dict(generator.dit, adapter_name=ADAPTER_NAME)


def base_digest(generator: Generator) -> str:
    """Content hash of the base weights of a generator's transformer (adapters left out, a layer
    with one named as its base): what an adapter records as the base it was trained on, compared
    when it is used. The text encoders are left out: adapters do not touch them, and an extra
    encoder can be gigabytes."""
    state = generator.dit.state_dict()
    return weights_digest({k.replace("base_layer.", ""): v for k, v in state.items() if "lora_" not in k})


def save_lora(model: Generator, folder: str | Path, cfg: LoraConfig, meta: dict | None = None) -> Path:
    """The adapter alone as `adapter.safetensors` and a `config.json` naming it: {"kind": "lora",
    "config": cfg, "base": the base weights' digest, ...meta}. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not hasattr(model.dit, "peft_config"):  # what peft leaves on a module it put adapters in
        raise LoraError("This generator holds no adapter to save: add one with add_lora first.")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in adapter_state(model).items()}
    save_file(state, str(folder / ADAPTER_FILE))
    record = {"kind": "lora", "config": asdict(cfg), "base": base_digest(model)} | (meta or {})
    (folder / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return folder


def read_lora_config(folder: str | Path) -> tuple[LoraConfig, dict]:
    """An adapter folder's config and its whole record; LoraError when it is not one."""
    folder = Path(folder)
    try:
        record = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as e:
        raise LoraError(f"{folder} is not a LoRA adapter folder: cannot read its {CONFIG_FILE} ({e}).") from None
    if not isinstance(record, dict) or record.get("kind") != "lora":
        raise LoraError(f"{folder} is not a LoRA adapter folder: its {CONFIG_FILE} does not say kind 'lora'.")
    raw = record.get("config", {})
    try:
        cfg = LoraConfig(**(raw | {"targets": tuple(raw.get("targets", LoraConfig.targets))}))
    except TypeError as e:
        raise LoraError(f"{folder}: its LoRA config is not one this engine reads ({e}).") from None
    return cfg, record


def _check_fits(folder: Path, expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> None:
    """Every tensor the base's adapted layers need is in the file at their shape, and no other."""
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    wrong = [
        f"{k} {tuple(given[k].shape)} (the base needs {tuple(expected[k].shape)})"
        for k in sorted(set(expected) & set(given))
        if given[k].shape != expected[k].shape
    ]
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} tensor(s) of the wrong shape, e.g. {', '.join(wrong[:2])}")
    if extra:
        problems.append(f"{len(extra)} for layers this base lacks, e.g. {', '.join(extra[:2])}")
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {', '.join(missing[:2])}")
    if problems:
        raise LoraError(
            f"The adapter in {folder} does not fit this base model (it was trained on another one): "
            + "; ".join(problems)
            + "."
        )


def load_lora(generator: Generator, folder: str | Path, scale: float = 1.0) -> Generator:
    """A NEW generator: `generator` with the adapter in `folder` merged into its DiT at `scale`
    (0: the base exactly). The base is left as it was; the modules the adapter does not touch (the
    text encoders) are shared with it rather than copied. The merge is done in fp32 and the result
    has the base's dtype and device. Raises LoraError when the adapter does not fit the base."""
    folder = Path(folder)
    cfg, _ = read_lora_config(folder)
    try:
        given = load_file(str(folder / ADAPTER_FILE))
    except (OSError, ValueError) as e:  # absent, or not a safetensors file
        raise LoraError(f"Cannot read the adapter weights {folder / ADAPTER_FILE} ({e}).") from None
    shared = {id(m): m for name, m in generator.named_children() if name != "dit"}
    merged = copy.deepcopy(generator, memo=shared)
    dtype = next(merged.dit.parameters()).dtype
    merged.dit.float()
    try:
        tuner = LoraModel(merged.dit, cfg.peft_config(), ADAPTER_NAME)
    except ValueError as e:  # peft: no layer matched the targets
        raise LoraError(f"The adapter in {folder} does not fit this base model: {e}") from None
    _check_fits(folder, adapter_state(merged), given)
    device = next(merged.dit.parameters()).device
    peft.set_peft_model_state_dict(merged.dit, {k: v.to(device) for k, v in given.items()}, ADAPTER_NAME)
    for layer in merged.dit.modules():
        if isinstance(layer, LoraLayer):
            layer.set_scale(ADAPTER_NAME, scale)  # alpha / rank x scale
    try:
        tuner.merge_and_unload(safe_merge=True)  # in place: the DiT's layers get their base layers back
    except ValueError as e:  # peft's safe merge: NaN in the merged weights
        raise LoraError(f"The adapter in {folder} is broken: {e}") from None
    # Only the copied DiT is set for inference: the shared modules stay as the base has them.
    merged.dit.to(dtype).eval().requires_grad_(False)
    return merged
