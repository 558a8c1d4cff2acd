"""Content-addressed cache on disk (diskcache): text embeddings, final latents, decoded clips.

Keys hash the model identity + inputs + settings. Values are safetensors bytes followed by a
SHA-256 of them, never pickled objects: a damaged entry fails its checksum, is dropped, and the
caller recomputes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import diskcache
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

_DIGEST = 32


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class TensorCache:
    def __init__(self, directory: str | Path, size_limit: int = 4 * 2**30):
        self.store = diskcache.Cache(str(directory), size_limit=size_limit)

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        try:
            raw = self.store.get(key)
        except Exception:  # an unreadable entry is a miss, not a failure
            raw = None
        if not isinstance(raw, bytes) or len(raw) <= _DIGEST:
            if raw is not None:
                self.store.delete(key)
            return None
        body, digest = raw[:-_DIGEST], raw[-_DIGEST:]
        if hashlib.sha256(body).digest() != digest:
            self.store.delete(key)
            return None
        try:
            return st_load(body)
        except Exception:
            self.store.delete(key)
            return None

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        body = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
        try:
            self.store.set(key, body + hashlib.sha256(body).digest())
        except OSError:
            pass  # a full disk costs speed, never the result

    def __len__(self) -> int:
        return len(self.store)

    def close(self) -> None:
        self.store.close()
