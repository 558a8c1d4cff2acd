"""Checkpoints: safetensors weights + a config.json naming the component and its typed config.

Never pickles: loading a checkpoint cannot run code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

C = TypeVar("C")


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type[C], data: dict) -> C:
    """Build a (nested) frozen dataclass from JSON, turning lists back into tuples."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, hint = data[f.name], hints[f.name]
        origin = typing.get_origin(hint)
        if origin in (typing.Union, types.UnionType) and isinstance(value, dict):  # `Config | None`
            hint = next(a for a in typing.get_args(hint) if dataclasses.is_dataclass(a))
            origin = None
        if dataclasses.is_dataclass(hint):
            value = config_from_dict(hint, value)
        elif origin is tuple:
            args = typing.get_args(hint)
            if args and dataclasses.is_dataclass(args[0]):
                value = tuple(config_from_dict(args[0], v) for v in value)
            else:
                value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def save_component(
    path: str | Path,
    kind: str,
    cfg: Any,
    module: torch.nn.Module,
    extra: dict | None = None,
    dtype: torch.dtype = torch.float32,
    shared: dict[str, str] | None = None,
) -> Path:
    """Weights as `dtype` (bf16 halves a checkpoint; loading casts back to the module's dtype).
    shared maps a key prefix to a sibling checkpoint folder that holds those weights unchanged
    (e.g. a frozen text encoder): they are not stored twice, and load_weights reads them there."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    external = _external(module)
    skip = tuple(shared or ()) + external
    state = {
        k: v.detach().to("cpu", dtype).contiguous()
        for k, v in module.state_dict().items()
        if not (skip and k.startswith(skip))
    }
    save_file(state, str(path / "model.safetensors"))
    meta = {"kind": kind, "config": config_to_dict(cfg)} | ({"shared": shared} if shared else {}) | (extra or {})
    (path / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def _external(module: torch.nn.Module) -> tuple[str, ...]:
    """Key prefixes of weights the module reads from elsewhere when it is built (a transformers
    text encoder from its own folder): a checkpoint neither stores nor expects them."""
    fn = getattr(module, "external_prefixes", None)
    return tuple(fn()) if fn is not None else ()


def frozen_prefixes(module: torch.nn.Module) -> tuple[str, ...]:
    """The fewest key prefixes that cover exactly the parameters that do not train: whole
    submodules (named with a trailing dot) where all of theirs are frozen, else single names.
    What save_component's `shared` needs to keep a partly fine-tuned model's frozen weights once."""
    frozen = {k for k, p in module.named_parameters() if not p.requires_grad}
    out: list[str] = []

    def walk(prefix: str, mod: torch.nn.Module) -> None:
        names = [prefix + k for k, _ in mod.named_parameters()]
        if names and all(n in frozen for n in names) and prefix:
            out.append(prefix)
            return
        for k, _ in mod.named_parameters(recurse=False):
            if prefix + k in frozen:
                out.append(prefix + k)
        for k, child in mod.named_children():
            walk(f"{prefix}{k}.", child)

    walk("", module)
    return tuple(out)


def read_config(path: str | Path) -> dict:
    path = Path(path)
    f = path / "config.json"
    if not f.is_file():
        raise FileNotFoundError(f"{path} has no config.json: not a model checkpoint folder")
    return json.loads(f.read_text())


def load_weights(path: str | Path, module: torch.nn.Module) -> torch.nn.Module:
    path = Path(path)
    state = load_file(str(path / "model.safetensors"))
    shared = read_config(path).get("shared", {}) if (path / "config.json").is_file() else {}
    siblings: dict[str, dict] = {}
    for prefix, sibling in shared.items():  # weights kept once, in a sibling checkpoint (read once)
        if sibling not in siblings:
            siblings[sibling] = load_file(str(path.parent / sibling / "model.safetensors"))
        state |= {k: v for k, v in siblings[sibling].items() if k.startswith(prefix)}
    external = _external(module)
    if external:
        state |= {k: v for k, v in module.state_dict().items() if k.startswith(external)}
    module.load_state_dict(state)
    return module


def load_component(path: str | Path, cls, cfg_cls, device: torch.device | str = "cpu"):
    """A checkpoint folder's module, built from its config (relative paths in it taken from the
    model folder, path's parent) and loaded, on `device` in eval mode and frozen."""
    path = Path(path)
    cfg = config_from_dict(cfg_cls, read_config(path)["config"])
    if hasattr(cfg, "resolved"):
        cfg = cfg.resolved(path.parent)
    return load_weights(path, cls(cfg)).to(device).eval().requires_grad_(False)


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """Short content hash of weights by name (sorted) and value as float32 bytes: a model's identity
    whatever dtype or device it runs in, where there is no checkpoint folder to hash."""
    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def file_digest(path: str | Path, files: tuple[str, ...] = ("config.json", "model.safetensors")) -> str:
    """Short content hash of a checkpoint folder (of `files` in it; a LoRA's weights are
    adapter.safetensors): its identity in cache keys and metadata."""
    h = hashlib.sha256()
    for name in files:
        f = Path(path) / name
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()[:16]
