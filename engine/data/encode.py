"""The encode pass: a user's footage into sharded latents and text embeddings, once, so training
reads small tensors instead of decoding video and running frozen encoders every step (what
musubi-tuner and diffusion-pipe cache).

Each clip is decoded as a stream (engine/video_io.py: upright, resampled to the buckets' rate,
its start/end honoured, every frame reduced as it arrives), covered and centre-cropped to its
aspect bucket, cut into windows of the longest bucket length that fits, and encoded by the TAE.
Its caption goes through each of the generator's text encoders without their projections (those
train; the encoders are frozen), padded to a fixed length per encoder so samples stack.

Shards: `out/r{rank}of{world}-{H}x{W}x{F}-{k:05d}.safetensors`, each up to `shard_size` samples
of ONE bucket, with keys

    latents (N, C, t, h, w) bf16    normalised TAE latents (what the generator trains on)
    text{i} (N, L_i, D_i) bf16      encoder i's raw tokens, zero past the caption's
    mask{i} (N, L_i) bool           True on real tokens

and one metadata entry `dataset` (JSON: the run key, each sample's caption, source and start).
One entry, because safetensors writes several in a random order (a Rust HashMap), which would
make the same shard's bytes differ from run to run. `out/empty.safetensors` holds the empty
prompt's text{i} (L_i, D_i) and mask{i} (L_i,) for classifier-free guidance dropout, and
`out/index.json` lists the shards, the models' identities, the configs and the problems.

Resumable and deterministic: every sample has a fixed place (its item's rank, its bucket, its
order among that bucket's samples), shards are written atomically and never rewritten, and a
progress file per rank (`out/progress/`, a line an item) records what each item gave. A rerun
encodes only the items whose samples lie in a shard not yet on disk; the result is byte for byte
the same. Under torchrun item i goes to rank i % world; each rank writes its own shards and rank
0 writes the index after a barrier. (The same footage on another rank count makes other shards.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from ..atomic import write_atomic
from ..checkpoint import weights_digest
from ..models.tae import TAE
from ..models.text import HFTextEncoder, TextConditioner, WordEncoder
from ..video_io import VideoLimits, fit_size
from .buckets import BucketConfig, pick_frames, pick_size
from .footage import Footage

VERSION = 1
INDEX = "index.json"
EMPTY = "empty.safetensors"

# Footage is trained on as it is, not uploaded: longer and larger than an upload may be. What is
# held is the clip at its bucket's size (10 minutes at 8 fps and 64x64 is 60 MB), never full size.
TRAINING_LIMITS = VideoLimits(max_bytes=16 * 2**30, max_seconds=600.0, max_frames=600 * 120, max_side=8192)


@dataclass(frozen=True)
class EncodeConfig:
    buckets: BucketConfig = field(default_factory=BucketConfig)
    shard_size: int = 256  # samples a shard; a rank holds up to this many per bucket before writing
    windows_per_clip: int = 0  # 0 = every non-overlapping window; else at most this many, spread evenly
    batch: int = 8  # windows encoded by the TAE at once (one clip's; images one at a time)
    limits: VideoLimits = TRAINING_LIMITS

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch < 1 or self.windows_per_clip < 0:
            raise ValueError(
                f"shard_size and batch must be >= 1 and windows_per_clip >= 0, got "
                f"{self.shard_size}, {self.batch} and {self.windows_per_clip}"
            )


Bucket = tuple[int, int, int]  # (height, width, frames)


@dataclass(frozen=True)
class EncodeReport:
    """What an encode pass made. On rank 0 (after the merge) the counts are the whole dataset's;
    on another rank, that rank's. written / kept / encoded are always this rank's, this run's."""

    out: Path
    index: Path | None  # out/index.json, on rank 0
    clips: int  # clips that gave at least one window
    windows: int  # samples from clips
    images: int  # samples from images (one each)
    buckets: dict[str, int]  # "HxWxF" -> samples
    shards: int  # shard files the counts above fill
    problems: list[str]
    written: int  # shards written by this run
    kept: int  # shards found complete on disk and left as they were
    encoded: int  # items decoded and encoded by this run (the rest were in kept shards)

    def summary(self) -> str:
        lines = [
            f"{self.clips} clips ({self.windows} windows) and {self.images} images: "
            f"{self.windows + self.images} samples in {self.shards} shards under {self.out}"
        ]
        if self.buckets:
            lines.append("per bucket (height x width x frames):")
            lines += [f"  {b}: {n} samples" for b, n in sorted(self.buckets.items())]
        lines.append(f"this run: {self.encoded} items encoded, {self.written} shards written, {self.kept} kept")
        if self.problems:
            lines.append(f"{len(self.problems)} skipped:")
            lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def text_length(encoder: torch.nn.Module) -> int:
    """The most tokens `encoder` returns for one prompt: what its tokens are padded to."""
    if isinstance(encoder, WordEncoder):
        return encoder.cfg.max_len + encoder.cfg.summary_tokens  # words (cut at max_len), then summaries
    if isinstance(encoder, HFTextEncoder):
        return encoder.cfg.max_len  # the tokenizer truncates there
    raise TypeError(f"no fixed token length known for a {type(encoder).__name__}")


@torch.no_grad()
def encode_text(text: TextConditioner, prompt: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each encoder's raw output for one prompt, padded: tokens (L_i, D_i) bf16 (zeros past the
    prompt's) and mask (L_i,) bool. One prompt at a time: a batch pads to its longest prompt,
    which moves the last digits of every other prompt's tokens, and the shards must not depend
    on which captions happened to share a batch."""
    out = []
    for enc in text.encoders:
        tokens, mask = enc([prompt])  # (1, l, D), (1, l)
        length = text_length(enc)
        tokens, mask = tokens[0].float().cpu(), mask[0].bool().cpu()
        if len(tokens) > length:
            raise ValueError(f"{type(enc).__name__} gave {len(tokens)} tokens, more than its {length}")
        padded = torch.zeros(length, tokens.shape[1], dtype=torch.bfloat16)  # (L, D)
        padded[: len(tokens)] = tokens
        full = torch.zeros(length, dtype=torch.bool)  # (L,)
        full[: len(mask)] = mask
        out.append((padded, full))
    return out


def window_starts(n: int, frames: int, most: int) -> list[int]:
    """First frames of the windows cut from n frames: every non-overlapping one from frame 0, or
    at most `most` of them (most > 0) spread evenly, each in the middle of its share of the clip."""
    slots = n // frames
    if most <= 0 or most >= slots:
        return [s * frames for s in range(slots)]
    return [int((j + 0.5) * slots / most) * frames for j in range(most)]  # shares >= 1 slot: all distinct


def shard_name(rank: int, world: int, bucket: Bucket, k: int) -> str:
    h, w, f = bucket
    return f"r{rank}of{world}-{h}x{w}x{f}-{k:05d}.safetensors"


def bucket_key(bucket: Bucket) -> str:
    return "x".join(map(str, bucket))


@dataclass
class _Sample:
    latents: torch.Tensor  # (C, t, h, w) bf16
    text: list[tuple[torch.Tensor, torch.Tensor]]  # per encoder: (L_i, D_i) bf16, (L_i,) bool
    caption: str
    source: str
    start: float  # seconds into the source


@dataclass
class _Encoded:
    record: dict  # what the progress file keeps: item, name, kind, bucket, windows, problem, summary
    samples: list[_Sample]


class _Encoder:
    """One item at a time into its samples: decode, crop, window, TAE, text."""

    def __init__(self, footage: Footage, tae: TAE, text: TextConditioner, cfg: EncodeConfig) -> None:
        self.footage, self.tae, self.text, self.cfg = footage, tae, text, cfg
        p = next(tae.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.count = 0  # items decoded and encoded

    def __call__(self, i: int) -> _Encoded:
        item, cfg = self.footage.items[i], self.cfg
        name = self.footage.name(item)
        rec: dict = {"item": i, "name": name, "kind": item.kind, "bucket": None, "windows": [], "problem": None}
        self.count += 1
        b = cfg.buckets
        try:
            clip = fit_size(item.path, lambda h, w: pick_size(h, w, b), b.fps, cfg.limits, item.start, item.end)
        except (ValueError, OSError) as e:  # VideoInputError says what was wrong in the user's words
            why = str(e).rstrip(".")
            own = item.path.name + " "  # its messages start with the file's name: say it as the user gave it
            rec["problem"] = f"{name} {why[len(own) :]}; skipped" if why.startswith(own) else f"{name}: {why}; skipped"
            return _Encoded(rec, [])
        frames = clip.frames[:1] if item.kind == "image" else clip.frames  # (T, H, W, 3) uint8
        rec["summary"] = clip.summary
        length = 1 if item.kind == "image" else pick_frames(len(frames), b)
        if length is None:
            rec["problem"] = (
                f"{name}: too short ({len(frames)} frames at {b.fps:g} fps; the shortest window is "
                f"{min(b.frames)}); skipped"
            )
            return _Encoded(rec, [])
        starts = window_starts(len(frames), length, cfg.windows_per_clip)
        frames = frames if frames.flags.writeable else frames.copy()  # a still comes read-only from Pillow
        pixels = torch.from_numpy(frames).permute(3, 0, 1, 2)  # (3, T, H, W) uint8
        latents = []
        for c in range(0, len(starts), cfg.batch):  # the same batches every run: the same bytes
            x = torch.stack([pixels[:, s : s + length] for s in starts[c : c + cfg.batch]])  # (B, 3, F, H, W)
            x = (x.to(self.device).float() / 127.5 - 1).to(self.dtype)  # scaled in fp32, then the TAE's dtype
            with torch.no_grad():
                latents.append(self.tae.encode(x).to("cpu", torch.bfloat16))  # (B, C, t, h, w)
        z = torch.cat(latents)  # (n, C, t, h, w)
        text = encode_text(self.text, item.caption)
        rec["bucket"] = [*frames.shape[1:3], length]
        rec["windows"] = starts
        base = item.start if item.kind == "video" else 0.0
        samples = [_Sample(z[j], text, item.caption, name, round(base + s / b.fps, 6)) for j, s in enumerate(starts)]
        return _Encoded(rec, samples)


def _shard_bytes(samples: list[_Sample], key: str) -> bytes:
    tensors = {"latents": torch.stack([s.latents for s in samples]).contiguous()}  # (N, C, t, h, w)
    for i in range(len(samples[0].text)):
        tensors[f"text{i}"] = torch.stack([s.text[i][0] for s in samples]).contiguous()  # (N, L_i, D_i)
        tensors[f"mask{i}"] = torch.stack([s.text[i][1] for s in samples]).contiguous()  # (N, L_i)
    meta = {"key": key, "samples": [{"caption": s.caption, "source": s.source, "start": s.start} for s in samples]}
    return save(tensors, metadata={"dataset": json.dumps(meta, sort_keys=True)})


def shard_key(path: Path) -> str | None:
    """The run key a shard was written by (None if it has none): read from its header only."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta["dataset"])["key"] if "dataset" in meta else None


def _run_key(footage: Footage, ids: dict, cfg: EncodeConfig, world: int, text: TextConditioner) -> str:
    """What the shards depend on: the items (name, caption, cut, size), the models, the configs and
    how the items were split between ranks. A folder holding another key's shards is refused."""
    items = [[footage.name(it), it.caption, it.kind, it.start, it.end, it.path.stat().st_size] for it in footage.items]
    lengths = [text_length(e) for e in text.encoders]
    fields = [VERSION, items, ids, dataclasses.asdict(cfg), world, lengths]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


class _Progress:
    """One rank's progress file, JSON lines: the run key, then a record for each of the rank's
    items in order as it is made (what it gave: bucket and windows, or its problem), then
    {"finished": true}. Appended a line an item, never rewritten, so it costs the same however
    long the run; a line a kill cut short is dropped when it is read. It is trusted only for what
    each item gives: whether a shard exists is always asked of the disk."""

    def __init__(self, out: Path, rank: int, world: int, key: str) -> None:
        self.path = out / "progress" / f"r{rank}of{world}.jsonl"
        self.key = key
        lines = []
        if self.path.is_file():
            for raw in self.path.read_bytes().split(b"\n"):
                try:
                    lines.append(json.loads(raw))
                except ValueError:  # the end, or a line cut short
                    break
        if lines and lines[0].get("key") != key:
            raise ValueError(_other_run(out))
        self.records: list[dict] = [x for x in lines[1:] if "item" in x]
        self.finished = any(x.get("finished") for x in lines[1:])

    def resume(self) -> None:
        """Make the file exactly what was read, so a torn last line does not run into the next."""
        lines = [{"key": self.key}, *self.records] + ([{"finished": True}] if self.finished else [])
        write_atomic(self.path, b"".join(json.dumps(x, sort_keys=True).encode() + b"\n" for x in lines))

    def append(self, line: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")
        if "item" in line:
            self.records.append(line)

    def finish(self) -> None:
        if not self.finished:
            self.append({"finished": True})
            self.finished = True


def _other_run(out: Path) -> str:
    return (
        f"{out} holds latents encoded from other footage, models or settings; give a new output folder, "
        "or delete it to encode again"
    )


def _write_if_changed(path: Path, data: bytes) -> None:
    if not (path.is_file() and path.read_bytes() == data):
        write_atomic(path, data)


def encode_footage(
    footage: Footage,
    tae: TAE,
    text: TextConditioner,
    cfg: EncodeConfig,
    out: str | Path,
    rank: int = 0,
    world: int = 1,
    log: Callable[[str], object] = print,
    *,
    barrier: Callable[[], None] = lambda: None,
    tae_id: str | None = None,
    text_id: str | None = None,
) -> EncodeReport:
    """Encode this rank's share of `footage` (items i with i % world == rank) into shards under
    `out`, then, after `barrier()` (torch.distributed.barrier under torchrun; every rank must
    call this), rank 0 writes out/empty.safetensors and out/index.json.

    tae_id / text_id name the models (checkpoint.file_digest of their folders); without them, a
    hash of the TAE's and the text encoders' weights. A rerun resumes: shards on disk are kept,
    and only items with a sample in a missing shard are decoded and encoded again."""
    out = Path(out)
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world), got {rank} of {world}")
    down = tae.cfg.spatial_down
    if cfg.buckets.multiple % down:
        raise ValueError(f"bucket sides must be multiples of the TAE's {down}; multiple is {cfg.buckets.multiple}")
    ids = {
        "tae": tae_id or weights_digest(tae.state_dict()),
        "text": text_id or weights_digest(text.encoders.state_dict()),
    }
    key = _run_key(footage, ids, cfg, world, text)
    index_path = out / INDEX
    if index_path.is_file() and json.loads(index_path.read_text()).get("key") != key:
        raise ValueError(_other_run(out))
    progress = _Progress(out, rank, world, key)
    progress.resume()
    encoder = _Encoder(footage, tae, text, cfg)
    mine = list(range(rank, len(footage.items), world))
    S = cfg.shard_size
    tag = f"[rank {rank}] " if world > 1 else ""

    present: dict[str, bool] = {}  # shard name -> complete on disk (atomic writes: there means whole)

    def on_disk(name: str) -> bool:
        if name not in present:
            path = out / name
            if path.is_file() and shard_key(path) != key:
                raise ValueError(_other_run(out))
            present[name] = path.is_file()
        return present[name]

    written = 0
    buffers: dict[tuple[Bucket, int], list[_Sample]] = {}  # (bucket, shard number) -> its samples so far
    pos: dict[Bucket, int] = {}  # bucket -> this rank's samples of it so far (the next one's place)

    def write(bucket: Bucket, k: int) -> None:
        nonlocal written
        name = shard_name(rank, world, bucket, k)
        write_atomic(out / name, _shard_bytes(buffers.pop((bucket, k)), key))
        present[name] = True
        written += 1

    for n, i in enumerate(mine):
        known = progress.records[n] if n < len(progress.records) else None
        if known is not None:
            if known["item"] != i:  # cannot happen with a matching key
                raise RuntimeError(f"{progress.path} does not follow the items; delete {out} and encode again")
            if known["bucket"] is None:
                continue  # a problem stays a problem: the same file gives the same error
            bucket, count = tuple(known["bucket"]), len(known["windows"])
            at = pos.get(bucket, 0)
            shards = range(at // S, (at + count - 1) // S + 1)
            if all(on_disk(shard_name(rank, world, bucket, k)) for k in shards):
                pos[bucket] = at + count  # every sample of it is in a shard already
                continue
        enc = encoder(i)
        rec = enc.record
        if known is None:  # a known item encoded again gives the record it gave before
            progress.append(rec)
        if rec["problem"]:
            log(f"{tag}{n + 1}/{len(mine)} {rec['problem']}")
            continue
        bucket = tuple(rec["bucket"])
        windows = f"{len(enc.samples)} window{'s' * (len(enc.samples) > 1)} of {bucket[2]}" if bucket[2] > 1 else "1"
        log(f"{tag}{n + 1}/{len(mine)} {rec['name']}: {rec['summary']}; {windows} -> bucket {bucket_key(bucket)}")
        for sample in enc.samples:
            at = pos.get(bucket, 0)
            pos[bucket] = at + 1
            k = at // S
            if on_disk(shard_name(rank, world, bucket, k)):
                continue
            buffers.setdefault((bucket, k), []).append(sample)
            if len(buffers[(bucket, k)]) == S:
                write(bucket, k)
    for bucket, k in sorted(buffers):  # each bucket's last shard, short of S samples
        write(bucket, k)
    kept = sum(1 for name, there in present.items() if there) - written
    progress.finish()
    log(f"{tag}done: {encoder.count} items encoded, {written} shards written, {kept} kept")

    barrier()
    if rank == 0:
        records, shards = _merge(out, footage, text, cfg, ids, key, world)
        where: Path | None = index_path
    else:
        records, where = progress.records, None
        shards = sum(math.ceil(n / S) for n in _shard_counts(records).values())
    return _report(out, where, footage if rank == 0 else None, records, shards, written, kept, encoder.count)


def _shard_counts(records: list[dict]) -> dict[Bucket, int]:
    counts: dict[Bucket, int] = {}
    for r in records:
        if r["bucket"] is not None:
            b = tuple(r["bucket"])
            counts[b] = counts.get(b, 0) + len(r["windows"])
    return counts


def _merge(
    out: Path, footage: Footage, text: TextConditioner, cfg: EncodeConfig, ids: dict, key: str, world: int
) -> tuple[list[dict], int]:
    """Rank 0, after every rank finished: the empty prompt's encoding and the index. The shards are
    named by what the records say each rank made, and each is checked to be there."""
    records: list[dict] = []
    shards = []
    S = cfg.shard_size
    for r in range(world):
        progress = _Progress(out, r, world, key)
        if not progress.finished:
            raise RuntimeError(f"rank {r} of {world} has not finished encoding into {out}; run it again")
        records += progress.records
        for bucket, count in sorted(_shard_counts(progress.records).items()):
            for k in range(math.ceil(count / S)):
                name = shard_name(r, world, bucket, k)
                with safe_open(str(out / name), framework="pt") as f:  # raises if missing
                    n, *shape = f.get_slice("latents").get_shape()
                if n != min(S, count - k * S):
                    raise RuntimeError(f"{name} holds {n} samples, not the {min(S, count - k * S)} expected")
                shards.append({"file": name, "bucket": list(bucket), "shape": shape, "samples": n})
    records.sort(key=lambda r: r["item"])
    empty = encode_text(text, "")
    tensors = {}
    for i, (tokens, mask) in enumerate(empty):
        tensors[f"text{i}"], tensors[f"mask{i}"] = tokens, mask  # (L_i, D_i), (L_i,)
    _write_if_changed(out / EMPTY, save(tensors))
    problems = footage.problems + [r["problem"] for r in records if r["problem"]]
    encoders = [
        {"kind": type(e).__name__, "length": text_length(e), "dim": int(t.shape[1])}
        for e, (t, _) in zip(text.encoders, empty, strict=True)
    ]
    index = {
        "version": VERSION,
        "key": key,
        "models": ids,
        "text": encoders,
        # The text encoders' own config: training builds the generator's text side from it, so a
        # transformers encoder added at encode time needs no second setting.
        "text_config": dataclasses.asdict(text.cfg),
        "config": dataclasses.asdict(cfg),
        "world": world,
        "samples": sum(s["samples"] for s in shards),
        "shards": shards,
        "empty": EMPTY,
        "problems": problems,
    }
    _write_if_changed(out / INDEX, (json.dumps(index, indent=1, sort_keys=True) + "\n").encode())
    return records, len(shards)


def _report(
    out: Path,
    index: Path | None,
    footage: Footage | None,
    records: list[dict],
    shards: int,
    written: int,
    kept: int,
    encoded: int,
) -> EncodeReport:
    counts = _shard_counts(records)
    ok = [r for r in records if r["bucket"] is not None]
    problems = (footage.problems if footage else []) + [r["problem"] for r in records if r["problem"]]
    return EncodeReport(
        out=out,
        index=index,
        clips=sum(r["kind"] == "video" for r in ok),
        windows=sum(len(r["windows"]) for r in ok if r["kind"] == "video"),
        images=sum(r["kind"] == "image" for r in ok),
        buckets={bucket_key(b): n for b, n in sorted(counts.items())},
        shards=shards,
        problems=problems,
        written=written,
        kept=kept,
        encoded=encoded,
    )
