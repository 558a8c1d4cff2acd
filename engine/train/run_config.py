"""Every setting of a run in one file, TOML or JSON, read into the run's typed config: no Python
editing to change a size, a stage, a batch or a rate. `--set section.field=value` overrides one
field from the command line; the shipped presets are written in the same form
(engine/train/presets/*.toml, `python -m engine train --preset NAME --print-config`).

    [footage]
    latents = "latents/my-clips"
    model = "assets/models/shapes-v2"
    steps = 2000
    global_batch = 32
    [footage.parallel]
    mode = "fsdp"
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from ..checkpoint import config_from_dict, config_to_dict

C = TypeVar("C")


def _drop_none(value: Any) -> Any:
    """TOML has no null: a field left at None is left out (and read back as its default, None)."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value


def dump_toml(cfg: Any) -> str:
    """A config (or a dict of named configs: one table each) as TOML."""
    data = {k: config_to_dict(v) for k, v in cfg.items()} if isinstance(cfg, dict) else config_to_dict(cfg)
    return tomli_w.dumps(_drop_none(data))


def read_file(path: str | Path) -> dict:
    """A TOML or JSON file as a dict, with a message that says which line is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from e


def _parse(value: str) -> Any:
    """A --set value as TOML reads it (numbers, booleans, arrays, quoted strings), else a string."""
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`section.field=value` items set into a copy of `data`."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes FIELD=VALUE (e.g. footage.steps=500), got {item!r}")
        *path, last = key.strip().split(".")
        node = data
        for k in path:
            node = node.setdefault(k, {})
        node[last] = _parse(value.strip())
    return data


def _check_keys(cls: type, data: dict, where: str) -> None:
    """Unknown fields are an error, not silently ignored: a misspelt rate must not train a day
    at the default."""
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in data.items():
        if k not in names:
            raise ValueError(f"{where}{k} is not a setting of {cls.__name__}; it has: {', '.join(names)}")
        hint = hints[k]
        inner = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)] or [hint]
        if isinstance(v, dict) and dataclasses.is_dataclass(inner[0]):
            _check_keys(inner[0], v, f"{where}{k}.")


def build(cls: type[C], data: dict, where: str = "") -> C:
    """`data` as a `cls`, every key checked against its fields."""
    _check_keys(cls, data, where)
    try:
        return config_from_dict(cls, data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where or cls.__name__}: {e}") from e
