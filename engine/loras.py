"""Style adapters (LoRAs) a T2V request can name: found in the model folder's `loras/<name>/` (and
any extra folder the engine is given), and merged into copies of the generator on demand.

Listing reads only each adapter's config.json and hashes its files; peft (seconds to import) is
loaded the first time an adapter is merged. A merged copy costs the DiT's weights once more, so
only the last few (name, scale) pairs are kept.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import file_digest
from .models.generator import Generator
from .requests import RequestError

log = logging.getLogger(__name__)
LORA_FILES = ("config.json", "adapter.safetensors")  # what an adapter folder holds (engine/train/lora.py)
MERGED_KEPT = 2  # merged copies kept in memory: a style and the one before it


@dataclass(frozen=True)
class Adapter:
    name: str  # its folder's name: what a request's `lora` says
    folder: Path
    digest: str  # its files' content: names it in cache keys and results
    base: str  # the digest of the base weights it was trained on ("" if it does not say)
    rank: int

    def record(self, scale: float, base_matches: bool) -> dict:
        """What a result made with it records."""
        return {"name": self.name, "scale": scale, "digest": self.digest, "base_matches": base_matches}


def find_adapters(folders: Iterable[str | Path]) -> dict[str, Adapter]:
    """The adapters in each folder's subfolders, by name, sorted; a later folder's adapter of the
    same name wins. A subfolder that is not an adapter is skipped with a warning, not fatal: the
    studio should start even if one download went wrong."""
    found: dict[str, Adapter] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            try:
                record = json.loads((sub / "config.json").read_text())
                if record.get("kind") != "lora" or not (sub / "adapter.safetensors").is_file():
                    raise ValueError("no LoRA config.json and adapter.safetensors")
            except (OSError, ValueError, AttributeError) as e:
                log.warning("skipping %s: not a LoRA adapter folder (%s)", sub, e)
                continue
            if sub.name in found:
                log.warning("LoRA %r in %s replaces the one in %s", sub.name, folder, found[sub.name].folder.parent)
            rank = int(record.get("config", {}).get("rank", 0))
            found[sub.name] = Adapter(sub.name, sub, file_digest(sub, LORA_FILES), str(record.get("base", "")), rank)
    return dict(sorted(found.items()))


def unknown_lora(name: str, adapters: dict[str, Adapter], folder: Path) -> RequestError:
    if not adapters:
        return RequestError(f"Unknown style (LoRA) {name!r}: this model has none (adapters go in {folder / 'loras'}).")
    return RequestError(f"Unknown style (LoRA) {name!r}; this model has: {', '.join(adapters)}.")


class MergedAdapters:
    """Copies of a base generator with an adapter merged, the last MERGED_KEPT by (digest, scale).
    Its own lock: the engine's job lock already serialises jobs, but a copy must be made once."""

    def __init__(self, base: Generator, keep: int = MERGED_KEPT):
        self.base = base
        self.keep = keep
        self._lock = threading.Lock()
        self._merged: OrderedDict[tuple[str, float], Generator] = OrderedDict()
        self._base_digest: str | None = None

    def base_digest(self) -> str:
        """The base weights' digest, as adapters record theirs (computed once, when first needed)."""
        from .train.lora import base_digest

        if self._base_digest is None:
            self._base_digest = base_digest(self.base)
        return self._base_digest

    def get(self, adapter: Adapter, scale: float) -> Generator:
        """The base with `adapter` merged at `scale`; RequestError when it does not fit the base."""
        from .train.lora import LoraError, load_lora

        key = (adapter.digest, float(scale))
        with self._lock:
            if key in self._merged:
                self._merged.move_to_end(key)
                return self._merged[key]
            try:
                merged = load_lora(self.base, adapter.folder, scale)
            except LoraError as e:
                raise RequestError(f"The style (LoRA) {adapter.name!r} cannot be used: {e}") from None
            self._merged[key] = merged
            while len(self._merged) > self.keep:
                self._merged.popitem(last=False)
            return merged
