"""Content-addressed cache on disk (diskcache): text embeddings, final latents, decoded clips.

Keys hash the model identity + inputs + settings. Values are safetensors bytes followed by a
SHA-256 of them, never pickled objects: a damaged entry fails its checksum, is dropped, and the
caller recomputes it. The store reads and writes through a Disk that only takes raw bytes: a row
someone rewrote in diskcache's pickle mode is damage and is never unpickled (unpickling runs code).
The cache is disposable: one that cannot be opened is moved aside and a fresh one started, and if
that fails too the engine runs without a cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import diskcache
import diskcache.core
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

_DIGEST = 32
log = logging.getLogger(__name__)


class BytesOnlyDisk(diskcache.Disk):
    """diskcache's Disk, for bytes values only: a pickled row is refused, never loaded."""

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not isinstance(value, bytes):
            raise TypeError(f"the tensor cache stores bytes only, got {type(value).__name__}")
        return super().store(value, read, key)

    def fetch(self, mode, filename, value, read):
        if mode == diskcache.core.MODE_PICKLE:
            raise ValueError("a pickled cache row (the cache writes none): refused as damage")
        return super().fetch(mode, filename, value, read)


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class TensorCache:
    def __init__(self, directory: str | Path, size_limit: int = 4 * 2**30):
        self.directory = Path(directory)
        self.store = diskcache.Cache(str(directory), size_limit=size_limit, disk=BytesOnlyDisk)

    @classmethod
    def open(cls, directory: str | Path, size_limit: int = 4 * 2**30) -> TensorCache | None:
        """The cache in `directory`; a damaged one (a cache.db that is not a database...) is moved
        aside to `directory.damaged-TIME` and a fresh one started; None (no cache, said in the
        log) when the folder cannot be used at all."""
        directory = Path(directory)
        try:
            return cls(directory, size_limit)
        except Exception as first:  # noqa: BLE001 - whatever is wrong, the cache is not worth a crash
            aside = directory.with_name(f"{directory.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                directory.rename(aside)
                cache = cls(directory, size_limit)
                log.warning("the cache in %s could not be opened (%s); moved it to %s", directory, first, aside)
                return cache
            except Exception as second:  # noqa: BLE001
                log.warning("running without a cache: %s cannot be used (%s; %s)", directory, first, second)
                return None

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        try:
            raw = self.store.get(key)
        except Exception:  # an unreadable (or pickled) entry is a miss, not a failure
            self._drop(key)
            return None
        if not isinstance(raw, bytes) or len(raw) <= _DIGEST:
            if raw is not None:
                self._drop(key)
            return None
        body, digest = raw[:-_DIGEST], raw[-_DIGEST:]
        if hashlib.sha256(body).digest() != digest:
            self._drop(key)
            return None
        try:
            return st_load(body)
        except Exception:
            self._drop(key)
            return None

    def _drop(self, key: str) -> None:
        try:
            self.store.delete(key)
        except Exception:  # noqa: BLE001 - a row that cannot even be deleted stays a miss
            pass

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        body = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
        try:
            self.store.set(key, body + hashlib.sha256(body).digest())
        except Exception:  # noqa: BLE001 - a full disk or a damaged store costs speed, never the result
            pass

    def __len__(self) -> int:
        return len(self.store)

    def close(self) -> None:
        self.store.close()
