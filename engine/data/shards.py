"""The encode pass's shards read back for training: a map-style Dataset over every sample, and a
batch sampler whose batches each hold one bucket (one latent shape), split between ranks.

Batch sizes: `batch` here is the per-rank batch. The global batch a step trains on is
batch * world * accumulation (gradient accumulation steps); a trainer given a global batch
chooses the per-rank one from it.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch.utils.data import Dataset, DistributedSampler, Sampler, default_collate

from .encode import INDEX

Shape = tuple[int, ...]  # a sample's latent shape (C, t, h, w)
MAX_OPEN = 64  # shards held open (memory-mapped) at once per process: a big dataset has thousands


class LatentShards(Dataset):
    """Every sample of every shard listed in `folder`/index.json, in the index's order.

    An item is {"latents": (C, t, h, w) bf16, "text0": (L_0, D_0) bf16, "mask0": (L_0,) bool, ...,
    "caption": str}. Shards are opened lazily (safe_open memory-maps them; a sample read copies
    only its rows), so a dataset far larger than memory costs only what is read. Open files are
    not pickled: each DataLoader worker opens its own."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.is_file():
            raise FileNotFoundError(f"{self.folder} has no {INDEX}: not an encoded dataset (python -m engine encode)")
        self.index = json.loads(path.read_text())
        self.shards: list[dict] = self.index["shards"]
        self.keys = ["latents"] + [f"{k}{i}" for i in range(len(self.index["text"])) for k in ("text", "mask")]
        self.shapes: list[Shape] = []  # each sample's latent shape
        for shard in self.shards:
            self.shapes += [tuple(shard["shape"])] * shard["samples"]
        self._starts = [0, *itertools.accumulate(s["samples"] for s in self.shards)]  # shard s: its first sample
        self._open: OrderedDict[int, object] = OrderedDict()  # the most recently read shards, open
        self._captions: dict[int, list[str]] = {}
        self._empty: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return self._starts[-1]

    @property
    def empty(self) -> dict[str, torch.Tensor]:
        """The empty prompt's encoding: text{i} (L_i, D_i) bf16 and mask{i} (L_i,) bool, what a
        caption is replaced by for classifier-free guidance dropout."""
        if self._empty is None:
            self._empty = load_file(str(self.folder / self.index["empty"]))
        return self._empty

    def _shard(self, s: int):
        if s in self._open:
            self._open.move_to_end(s)
            return self._open[s]
        f = safe_open(str(self.folder / self.shards[s]["file"]), framework="pt")
        self._open[s] = f
        if len(self._open) > MAX_OPEN:
            self._open.popitem(last=False)
        if s not in self._captions:  # kept for every shard read: a few strings a sample
            self._captions[s] = [x["caption"] for x in json.loads(f.metadata()["dataset"])["samples"]]
        return f

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} of {len(self)}")
        s = bisect.bisect_right(self._starts, i) - 1
        r = i - self._starts[s]
        f = self._shard(s)
        item: dict = {k: f.get_slice(k)[r : r + 1][0] for k in self.keys}  # one row of each, not the shard
        item["caption"] = self._captions[s][r]
        item["index"] = i  # the sample's own randomness in training is keyed by it
        return item

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_open": OrderedDict(), "_captions": {}}


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of `batch` sample indices, each batch from one latent shape, for this rank.

    Each shape's samples go through their own torch DistributedSampler (shuffled with `seed` and
    the epoch), so ranks draw disjoint samples and every rank gets the same number from each
    shape, hence the same number of batches an epoch, which DDP needs (a rank with a batch more
    would wait for the others' gradients forever). The order of the batches, bucket after
    bucket, is shuffled with the same seed on every rank, so all ranks step through the same
    shape at once. drop_last drops each shape's tail that does not fill a batch (and the few
    samples that do not split evenly between ranks); without it the last batch of a shape is
    short, and DistributedSampler repeats a few samples so the ranks stay even. `batch` is the
    per-rank batch: the global one is batch * world * accumulation."""

    def __init__(
        self,
        shapes: Sequence[Shape],
        batch: int,
        *,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.batch, self.seed, self.drop_last, self.epoch = batch, seed, drop_last, 0
        groups: dict[Shape, list[int]] = {}
        for i, shape in enumerate(shapes):
            groups.setdefault(tuple(shape), []).append(i)
        self.groups = [groups[k] for k in sorted(groups)]  # sorted: the same order on every rank
        self.samplers = [
            DistributedSampler(g, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=drop_last)
            for g in self.groups
        ]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for s in self.samplers:
            s.set_epoch(epoch)

    def _count(self, sampler: DistributedSampler) -> int:
        n = len(sampler)  # this rank's samples of the shape: the same on every rank
        return n // self.batch if self.drop_last else -(-n // self.batch)

    def __len__(self) -> int:
        return sum(self._count(s) for s in self.samplers)

    def __iter__(self) -> Iterator[list[int]]:
        batches = []
        for group, sampler in zip(self.groups, self.samplers, strict=True):
            mine = [group[j] for j in sampler]  # positions within the shape -> dataset indices
            batches += [mine[b * self.batch : (b + 1) * self.batch] for b in range(self._count(sampler))]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)  # the same on every rank
        for j in torch.randperm(len(batches), generator=g).tolist():
            yield batches[j]


def collate(samples: list[dict]) -> dict:
    """Samples of one shape into a batch: tensors stacked (latents (B, C, t, h, w), text{i}
    (B, L_i, D_i), mask{i} (B, L_i)), captions a list."""
    shapes = {tuple(s["latents"].shape) for s in samples}
    if len(shapes) > 1:
        raise ValueError(f"a batch must hold one latent shape, got {sorted(shapes)}: use BucketBatchSampler")
    return default_collate(samples)
