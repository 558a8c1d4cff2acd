"""User datasets (engine/data): the footage readers, the buckets, the encode pass (deterministic,
resumable, split between ranks) and the shards read back in one-shape batches.

Clips are written here with PyAV, losslessly where a test checks pixels; the TAE and the text
encoders are the tiny preset's, untrained and seeded, so every check is on real numbers: which
bucket a clip lands in, which frames a window holds, the latents the TAE gives for them."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from engine.data import shards as shards_module
from engine.data.buckets import BucketConfig, bucket_sizes, pick_frames, pick_size
from engine.data.encode import EncodeConfig, encode_footage, encode_text, text_length, window_starts
from engine.data.footage import read_footage
from engine.data.shards import BucketBatchSampler, LatentShards, collate
from engine.models.generator import Generator
from engine.models.tae import TAE
from engine.train.recipe import PRESETS
from engine.video_io import VideoInputError, fit_size, read_video

RED, GREEN, BLUE, WHITE = (230, 40, 40), (40, 200, 60), (40, 60, 230), (250, 250, 250)
BUCKETS = BucketConfig(size=64, frames=(16, 8))
CFG = EncodeConfig(BUCKETS, shard_size=2, batch=8)


def clip(path: Path, frames: np.ndarray, rate: int = 8, rotation: int = 0) -> Path:
    """Write (T, H, W, 3) frames losslessly (H.264 qp 0) so colours survive exactly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuv444p"
        s.options = {"qp": "0", "preset": "ultrafast"}
        if rotation:
            s.set_display_rotation(rotation)
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def moving(t: int, h: int, w: int, seed: int) -> np.ndarray:
    """A bright square sliding across a gradient: every window of the clip looks different."""
    rng = np.random.default_rng(seed)
    base = np.zeros((t, h, w, 3), np.uint8)
    base[..., 0] = np.linspace(0, 200, w, dtype=np.uint8)[None, None, :]
    base[..., 2] = np.linspace(200, 0, h, dtype=np.uint8)[None, :, None]
    base[..., 1] = rng.integers(0, 60)
    for k in range(t):
        x = (k * 3) % max(1, w - 12)
        base[k, h // 3 : h // 3 + 12, x : x + 12] = WHITE
    return base


def by_second(colours: list, h: int, w: int, rate: int = 8) -> np.ndarray:
    """One solid colour a second: which second a frame came from is its colour."""
    return np.concatenate([np.broadcast_to(np.asarray(c, np.uint8), (rate, h, w, 3)) for c in colours])


def caption(path: Path, text: str) -> None:
    path.with_suffix(".txt").write_text(text)


@pytest.fixture(scope="module")
def footage_dir(tmp_path_factory) -> Path:
    """wide 96x64 (40 frames: two 16-frame windows), wide2 (24: one), tall 64x112 (12: one
    8-frame window), a still, and five that are skipped: no caption, an empty caption, a file
    that is not a video, one too short for a window, a caption with nothing beside it."""
    root = tmp_path_factory.mktemp("footage")
    caption(clip(root / "a" / "wide.mp4", moving(40, 64, 96, 0)), "a white square moving right")
    caption(clip(root / "a" / "wide2.mp4", moving(24, 64, 96, 1)), "a white square\nmoving  right again")
    caption(clip(root / "a" / "tall.mp4", moving(12, 112, 64, 2)), "a tall clip")
    (root / "b").mkdir()
    Image.fromarray(moving(1, 40, 40, 3)[0]).save(root / "b" / "still.png")
    caption(root / "b" / "still.png", "a still")
    clip(root / "b" / "nocap.mp4", moving(8, 32, 32, 4))
    Image.fromarray(moving(1, 16, 16, 5)[0]).save(root / "b" / "blank.png")
    caption(root / "b" / "blank.png", "   \n")
    (root / "b" / "broken.mp4").write_bytes(b"this is not a video at all" * 10)
    caption(root / "b" / "broken.mp4", "a broken file")
    caption(clip(root / "b" / "short.mp4", moving(5, 64, 64, 6)), "too short")
    (root / "orphan.txt").write_text("nothing here")
    (root / "notes.md").write_text("my notes")
    clip(root / ".hidden" / "x.mp4", moving(8, 32, 32, 7))
    return root


@pytest.fixture(scope="module")
def models():
    """The tiny preset's TAE and text encoders, seeded (untrained: outputs are still exact numbers)."""
    torch.manual_seed(0)
    p = PRESETS["tiny"]
    return TAE(p.tae).eval(), Generator(p.generator).text.eval()


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.safetensors"))} | {
        "index.json": (folder / "index.json").read_bytes()
    }


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """Each shard's inode and mtime: an atomic rewrite gives a new inode even within a clock tick."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("r*.safetensors")}


def counting(monkeypatch, tae: TAE, fail_after: int | None = None) -> list[int]:
    """Count the TAE's encode calls (one per clip here: batch 8), raising after `fail_after` of
    them to simulate a run killed midway."""
    calls: list[int] = []
    real = TAE.encode.__get__(tae)

    def encode(x):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt("killed")
        calls.append(x.shape[0])
        return real(x)

    monkeypatch.setattr(tae, "encode", encode)
    return calls


# -- footage -------------------------------------------------------------------------------------


def test_folder_reader_keeps_captioned_media_and_reports_the_rest(footage_dir):
    f = read_footage(footage_dir)
    names = [f.name(i) for i in f.items]
    assert names == ["a/tall.mp4", "a/wide.mp4", "a/wide2.mp4", "b/broken.mp4", "b/short.mp4", "b/still.png"]
    assert [i.kind for i in f.items] == ["video"] * 5 + ["image"]
    assert f.items[2].caption == "a white square moving right again"  # whitespace runs collapsed
    assert all(i.path.is_absolute() and i.start == 0 and i.end is None for i in f.items)
    problems = "\n".join(f.problems)
    assert len(f.problems) == 4, problems
    assert "b/nocap.mp4: no caption (expected b/nocap.txt beside it); skipped" in f.problems
    assert "b/blank.png: its caption b/blank.txt is empty; skipped" in f.problems
    assert "orphan.txt: a caption with no clip or image" in problems
    assert "notes.md: not a clip or image" in problems
    assert "x.mp4" not in problems  # hidden folders are not the user's footage


def test_manifests_report_bad_rows_by_line_and_honour_cuts(footage_dir, tmp_path):
    tall = footage_dir / "a" / "tall.mp4"
    rows = [
        json.dumps({"path": "a/wide.mp4", "caption": "cut", "start": 1, "end": 3}),
        json.dumps({"path": str(tall), "caption": "absolute path"}),
        "{not json",
        json.dumps({"path": "missing.mp4", "caption": "x"}),
        "",
        json.dumps({"path": "a/wide.mp4", "caption": ""}),
        json.dumps({"path": "a/wide.mp4", "caption": "backwards", "start": 3, "end": 1}),
        json.dumps({"path": "b/still.png", "caption": "a still", "start": 2}),
        json.dumps([1, 2]),
        json.dumps({"path": "a/wide.mp4", "caption": "late", "start": "soon"}),
    ]
    manifest = footage_dir / "list.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    try:
        f = read_footage(manifest)
    finally:
        manifest.unlink()
    assert [(i.path.name, i.caption, i.kind, i.start, i.end) for i in f.items] == [
        ("wide.mp4", "cut", "video", 1.0, 3.0),
        ("tall.mp4", "absolute path", "video", 0.0, None),
        ("still.png", "a still", "image", 0.0, None),  # a still has no time to cut
    ]
    assert [p.split(":")[0] for p in f.problems] == [f"list.jsonl line {n}" for n in (3, 4, 6, 7, 9, 10)]
    assert "missing.mp4: no such file" in f.problems[1]
    assert "end (1 s) must come after start (3 s)" in f.problems[3]
    assert "start must be a number of seconds" in f.problems[5]

    csv = tmp_path / "list.csv"  # elsewhere: paths relative to the manifest's own folder
    (tmp_path / "clips").symlink_to(footage_dir / "a")
    csv.write_text(
        'path,caption,start,end\nclips/wide.mp4,"two\nlines",0.5,\nclips/nope.mp4,x,,\n\nclips/tall.mp4,,,\n'
        "clips/tall.mp4,ok,,,extra\n"
    )
    f = read_footage(csv)
    assert [(i.path.name, i.caption, i.start, i.end) for i in f.items] == [("wide.mp4", "two lines", 0.5, None)]
    assert [p.split(":")[0] for p in f.problems] == [f"list.csv line {n}" for n in (4, 6, 7)]
    assert "caption is empty" in f.problems[1] and "more fields than the header" in f.problems[2]


def test_nothing_usable_or_no_such_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist.*same-stem .txt caption"):
        read_footage(tmp_path / "nowhere")
    (tmp_path / "a.mp4").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"Nothing usable.*a.mp4: no caption.*\.jsonl / \.csv manifest"):
        read_footage(tmp_path)
    (tmp_path / "m.csv").write_text("file,text\na.mp4,hello\n")
    with pytest.raises(ValueError, match="no path and caption columns.*it has: file, text"):
        read_footage(tmp_path / "m.csv")
    with pytest.raises(ValueError, match="neither a folder nor"):
        read_footage(tmp_path / "a.mp4")


# -- buckets -------------------------------------------------------------------------------------


def test_bucket_sizes_keep_the_area_and_the_aspect():
    sizes = bucket_sizes(BucketConfig())
    assert sizes == [(64, 64), (48, 64), (64, 48), (48, 80), (80, 48)]  # 3/4 is 4/3 turned exactly
    big = bucket_sizes(BucketConfig(size=256))
    assert big == [(256, 256), (224, 304), (304, 224), (192, 336), (336, 192)]
    for (h, w), a in zip(big, BucketConfig().aspects, strict=True):
        assert h % 16 == 0 and w % 16 == 0
        assert abs(h * w / 256**2 - 1) < 0.05 and abs(np.log(w / h / a)) < 0.04


def test_non_square_clips_pick_the_nearest_aspect_and_the_longest_window():
    cfg = BucketConfig()
    assert pick_size(64, 96, cfg) == (48, 64)  # 3:2 is nearer 4:3 than 16:9 by log ratio
    assert pick_size(112, 64, cfg) == (80, 48)  # 4:7 -> 9:16
    assert pick_size(1080, 1920, cfg) == (48, 80)
    assert pick_size(500, 510, cfg) == (64, 64)
    assert pick_size(720, 540, cfg) == (64, 48)
    assert [pick_frames(n, cfg) for n in (40, 32, 31, 16, 9, 8, 7, 0)] == [32, 32, 16, 16, 8, 8, None, None]
    assert window_starts(40, 16, 0) == [0, 16]  # every non-overlapping window, from frame 0
    assert window_starts(100, 8, 3) == [16, 48, 80]  # three spread evenly over 12 slots
    assert window_starts(20, 8, 5) == [0, 8]


# -- reading a clip into its bucket ---------------------------------------------------------------


def test_fit_size_covers_crops_and_cuts_by_seconds(tmp_path):
    frames = by_second([RED, GREEN, BLUE, WHITE], 64, 96)
    frames[:, :, :16] = (0, 0, 0)  # a black band at the left edge, cropped to less than half of it
    path = clip(tmp_path / "c.mp4", frames)
    picked: list = []
    got = fit_size(path, lambda h, w: picked.append((h, w)) or pick_size(h, w, BUCKETS), 8.0, start=1, end=3)
    assert picked == [(64, 96)] and got.frames.shape == (16, 48, 64, 3)
    assert "from 1 s to 3 s (16 frames)" in got.summary
    assert (np.abs(got.frames[:8, 24, 40].astype(int) - GREEN) <= 2).all()  # seconds 1 and 2: green, blue
    assert (np.abs(got.frames[8:, 24, 40].astype(int) - BLUE) <= 2).all()
    # Cover 96x64 to 64x48: scale 0.75, 85.3 of 96 columns kept, so 10.7 of the band's 16: 8 output columns.
    dark = got.frames[0, 24, :, 1] < 100
    assert dark[:7].all() and not dark[9:].any()
    with pytest.raises(VideoInputError, match="lasts 4 s; nothing is left from 5 s"):
        fit_size(path, (48, 64), start=5)


def test_fit_size_turns_a_phone_clip_upright_before_it_picks_and_crops(tmp_path):
    img = moving(1, 64, 112, 9)[0]  # stored landscape 112x64, shown portrait 64x112
    path = clip(tmp_path / "phone.mp4", np.stack([img] * 8), rotation=90)
    got = fit_size(path, lambda h, w: pick_size(h, w, BUCKETS))
    assert got.frames.shape == (8, 80, 48, 3)  # portrait: the 9:16 bucket
    upright = read_video(path)[0][0]  # (112, 64, 3) as a player shows it
    k = max(80 / 112, 48 / 64)
    ch, cw = 80 / k, 48 / k
    box = ((64 - cw) / 2, (112 - ch) / 2, (64 + cw) / 2, (112 + ch) / 2)
    expect = np.asarray(Image.fromarray(upright).resize((48, 80), Image.Resampling.BOX, box=box))
    assert np.abs(got.frames[0].astype(int) - expect).max() <= 2  # the same crop, rounding apart


# -- the encode pass ------------------------------------------------------------------------------


def test_encode_writes_one_bucket_shards_with_the_right_latents_and_text(footage_dir, models, tmp_path):
    tae, text = models
    footage = read_footage(footage_dir)
    logged: list[str] = []
    report = encode_footage(footage, tae, text, CFG, tmp_path / "out", log=logged.append)
    out = tmp_path / "out"
    index = json.loads((out / "index.json").read_text())
    shards = {s["file"]: (s["bucket"], s["shape"], s["samples"]) for s in index["shards"]}
    assert shards == {
        "r0of1-48x64x16-00000.safetensors": ([48, 64, 16], [4, 4, 6, 8], 2),  # wide's two windows
        "r0of1-48x64x16-00001.safetensors": ([48, 64, 16], [4, 4, 6, 8], 1),  # wide2's one
        "r0of1-64x64x1-00000.safetensors": ([64, 64, 1], [4, 1, 8, 8], 1),  # the still
        "r0of1-80x48x8-00000.safetensors": ([80, 48, 8], [4, 2, 10, 6], 1),  # tall's one 8-frame window
    }
    assert (report.clips, report.windows, report.images, report.shards) == (3, 4, 1, 4)
    assert report.buckets == {"48x64x16": 3, "64x64x1": 1, "80x48x8": 1} and index["samples"] == 5
    skipped = [re.match(r"[^: ]+", p).group() for p in index["problems"]]  # each starts with its file
    assert skipped[:4] == ["b/blank.png", "b/nocap.mp4", "notes.md", "orphan.txt"]
    assert skipped[4:] == ["b/broken.mp4", "b/short.mp4"]  # found by decoding: not fatal either
    assert (
        index["problems"][4].startswith("b/broken.mp4 is not a readable video (")
        and "too short (5 frames" in index["problems"][5]
    )
    assert index["models"]["tae"] and index["text"] == [{"kind": "WordEncoder", "length": 56, "dim": 32}]
    assert any(
        line.startswith("2/6 a/wide.mp4: 96x64") and line.endswith("2 windows of 16 -> bucket 48x64x16")
        for line in logged
    )

    data = LatentShards(out)
    assert len(data) == 5 and data.shapes == [(4, 4, 6, 8)] * 3 + [(4, 1, 8, 8), (4, 2, 10, 6)]
    assert [data[i]["caption"] for i in range(5)] == [
        "a white square moving right",
        "a white square moving right",
        "a white square moving right again",
        "a still",
        "a tall clip",
    ]
    # Window 1 of wide.mp4 is frames 16..31 cropped to 48x64, through the TAE in the same batch as window 0.
    frames = fit_size(footage.items[1].path, (48, 64)).frames
    x = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1  # (3, T, H, W)
    z = tae.encode(torch.stack([x[:, :16], x[:, 16:32]])).to(torch.bfloat16)
    assert torch.equal(data[0]["latents"], z[0]) and torch.equal(data[1]["latents"], z[1])
    assert not torch.equal(z[0], z[1])
    # The caption through the word encoder alone (no projection), padded to 48 words + 8 summaries.
    tokens, mask = text.encoders[0](["a white square moving right"])
    item = data[0]
    assert item["text0"].shape == (56, 32) and item["text0"].dtype == torch.bfloat16
    assert int(item["mask0"].sum()) == 6 + 8 and torch.equal(item["mask0"][:14], mask[0])
    assert torch.equal(item["text0"][:14], tokens[0].to(torch.bfloat16)) and not item["text0"][14:].any()
    empty = data.empty
    assert int(empty["mask0"].sum()) == 1 + 8 and torch.equal(empty["text0"], encode_text(text, "")[0][0])
    assert text_length(text.encoders[0]) == 56


def test_encode_is_byte_for_byte_deterministic(footage_dir, models, tmp_path):
    tae, text = models
    footage = read_footage(footage_dir)
    encode_footage(footage, tae, text, CFG, tmp_path / "one", log=lambda s: None)
    encode_footage(footage, tae, text, CFG, tmp_path / "two", log=lambda s: None)
    one, two = files(tmp_path / "one"), files(tmp_path / "two")
    assert len(one) == 6 and one == two  # four shards, the empty prompt, the index


def test_encode_resumes_a_killed_run_without_redoing_finished_shards(footage_dir, models, tmp_path, monkeypatch):
    tae, text = models
    footage = read_footage(footage_dir)
    quiet = {"log": lambda s: None}
    clean = tmp_path / "clean"
    calls = counting(monkeypatch, tae)
    encode_footage(footage, tae, text, CFG, clean, **quiet)
    assert len(calls) == 4  # tall, wide, wide2, still (broken and short fail before the TAE)
    expected = files(clean)

    # Killed at the third clip (wide2): wide's full shard is on disk, tall's sample was in memory.
    out = tmp_path / "killed"
    calls = counting(monkeypatch, tae, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        encode_footage(footage, tae, text, CFG, out, **quiet)
    assert sorted(p.name for p in out.glob("r*")) == ["r0of1-48x64x16-00000.safetensors"]
    with open(out / "progress" / "r0of1.jsonl", "a") as f:
        f.write('{"item": 2, "na')  # a line the kill cut short
    before = stamps(out)
    calls = counting(monkeypatch, tae)
    report = encode_footage(footage, tae, text, CFG, out, **quiet)
    assert len(calls) == 3  # tall again (its shard never made it), wide2, still; not wide
    assert (report.written, report.kept) == (3, 1)
    assert files(out) == expected and stamps(out).items() >= before.items()

    # A shard lost from a finished run: only the clip whose sample it held is encoded again.
    lost = out / "r0of1-48x64x16-00001.safetensors"
    lost.unlink()
    before = stamps(out)
    calls = counting(monkeypatch, tae)
    report = encode_footage(footage, tae, text, CFG, out, **quiet)
    assert len(calls) == 1 and report.encoded == 1 and (report.written, report.kept) == (1, 3)
    assert files(out) == expected and stamps(out).items() >= before.items()

    # The progress file lost: everything is encoded again (nothing says what is where), nothing rewritten.
    for p in (out / "progress").iterdir():
        p.unlink()
    before = stamps(out)
    calls = counting(monkeypatch, tae)
    report = encode_footage(footage, tae, text, CFG, out, **quiet)
    assert len(calls) == 4 and (report.written, report.kept) == (0, 4)
    assert stamps(out) == before and files(out) == expected

    # A finished run run again does nothing; other settings into the same folder are refused.
    calls = counting(monkeypatch, tae)
    assert encode_footage(footage, tae, text, CFG, out, **quiet).encoded == 0 and not calls
    with pytest.raises(ValueError, match="holds latents encoded from other footage, models or settings"):
        encode_footage(footage, tae, text, EncodeConfig(BUCKETS, shard_size=3), out, **quiet)


def test_two_ranks_split_the_items_and_rank_0_writes_the_index(footage_dir, models, tmp_path):
    tae, text = models
    footage = read_footage(footage_dir)
    out = tmp_path / "out"
    done: list[int] = []
    one = encode_footage(footage, tae, text, CFG, out, rank=1, world=2, log=lambda s: None)
    assert one.index is None and not (out / "index.json").exists()
    # Rank 1 has items 1, 3, 5: wide (two windows), broken, still.
    assert (one.clips, one.windows, one.images) == (1, 2, 1)
    zero = encode_footage(footage, tae, text, CFG, out, 0, 2, lambda s: None, barrier=lambda: done.append(0))
    assert done == [0] and zero.index == out / "index.json"
    assert (zero.clips, zero.windows, zero.images, zero.shards) == (3, 4, 1, 4)
    index = json.loads(zero.index.read_text())
    assert [s["file"] for s in index["shards"]] == [  # by rank, then bucket
        "r0of2-48x64x16-00000.safetensors",  # wide2 (rank 0 has items 0, 2, 4: tall, wide2, short)
        "r0of2-80x48x8-00000.safetensors",  # tall
        "r1of2-48x64x16-00000.safetensors",  # wide's two windows
        "r1of2-64x64x1-00000.safetensors",  # the still
    ]
    assert sorted(s["file"] for s in index["shards"]) == sorted(p.name for p in out.glob("r*.safetensors"))
    assert [re.match(r"[^: ]+", p).group() for p in index["problems"]][4:] == ["b/broken.mp4", "b/short.mp4"]
    data = LatentShards(out)
    assert sorted(data[i]["caption"] for i in range(len(data))) == sorted(
        ["a white square moving right"] * 2 + ["a white square moving right again", "a still", "a tall clip"]
    )


# -- reading shards for training --------------------------------------------------------------------


def shapes_of(counts: dict[tuple, int]) -> list[tuple]:
    """Interleaved shapes, as shards of several buckets give them."""
    out = []
    for k in range(max(counts.values())):
        out += [s for s, n in counts.items() if k < n]
    return out


def test_bucket_batches_hold_one_shape_and_split_evenly_between_ranks():
    shapes = shapes_of({(4, 8, 8, 8): 11, (4, 2, 6, 10): 7, (4, 1, 8, 8): 5})
    for drop_last in (True, False):
        ranks = [BucketBatchSampler(shapes, 2, rank=r, world=2, seed=3, drop_last=drop_last) for r in (0, 1)]
        got = []
        for s in ranks:
            s.set_epoch(0)
            batches = list(s)
            assert len(batches) == len(s)
            assert all(len({shapes[i] for i in b}) == 1 for b in batches)  # one shape a batch
            got.append(batches)
        assert len(got[0]) == len(got[1])  # DDP: every rank steps the same number of times
        # ...and through the same shape at the same step.
        assert [shapes[b[0]] for b in got[0]] == [shapes[b[0]] for b in got[1]]
        seen = [sorted(i for b in batches for i in b) for batches in got]
        if drop_last:  # per shape: floor(n / 2) a rank, then floor(that / 2) batches of 2
            assert len(got[0]) == 2 + 1 + 1 and all(len(b) == 2 for b in got[0])
            assert not set(seen[0]) & set(seen[1])  # disjoint
        else:  # ceil: every sample drawn, a few twice so the ranks stay even
            assert len(got[0]) == 3 + 2 + 2
            assert set(seen[0]) | set(seen[1]) == set(range(len(shapes)))
            assert len(seen[0]) == len(seen[1]) == 6 + 4 + 3
    s = BucketBatchSampler(shapes, 2, seed=3)
    s.set_epoch(1)
    first, again = list(s), list(s)
    s.set_epoch(2)
    other = list(s)
    assert first == again and first != other  # deterministic per epoch, reshuffled across epochs
    assert sorted(map(sorted, first)) != sorted(map(sorted, other))  # the batches themselves change
    assert sum(map(len, first)) == sum(map(len, other)) == 10 + 6 + 4  # each shape's odd one out dropped


def test_shards_feed_a_dataloader_in_one_shape_batches(footage_dir, models, tmp_path):
    tae, text = models
    footage = read_footage(footage_dir)
    encode_footage(footage, tae, text, EncodeConfig(BUCKETS, shard_size=256), tmp_path / "out", log=lambda s: None)
    data = LatentShards(tmp_path / "out")
    sampler = BucketBatchSampler(data.shapes, 2, drop_last=False)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=collate)
    batches = list(loader)
    assert sorted(len(b["caption"]) for b in batches) == [1, 1, 1, 2]  # 48x64x16 has 3: a pair and one
    for b in batches:
        n = len(b["caption"])
        assert b["latents"].shape[0] == n and b["text0"].shape == (n, 56, 32) and b["mask0"].dtype == torch.bool
    assert sum(len(b["caption"]) for b in batches) == 5
    with pytest.raises(ValueError, match="one latent shape"):
        collate([data[0], data[3]])


def test_shards_stay_lazy_and_travel_to_workers(footage_dir, models, tmp_path, monkeypatch):
    """Only a few shards open at once (a big dataset has thousands), and the dataset pickles
    without its open files, as a DataLoader worker started by spawn receives it."""
    tae, text = models
    encode_footage(read_footage(footage_dir), tae, text, CFG, tmp_path / "out", log=lambda s: None)
    data = LatentShards(tmp_path / "out")
    want = [data[i] for i in range(len(data))]
    monkeypatch.setattr(shards_module, "MAX_OPEN", 1)
    fresh = LatentShards(tmp_path / "out")
    for i in [4, 0, 3, 1, 2, 0]:
        got = fresh[i]
        assert len(fresh._open) == 1 and got["caption"] == want[i]["caption"]
        assert all(torch.equal(got[k], want[i][k]) for k in ("latents", "text0", "mask0"))
    copy = pickle.loads(pickle.dumps(fresh))
    assert not copy._open and torch.equal(copy[2]["latents"], want[2]["latents"])
    with pytest.raises(IndexError):
        data[len(data)]


# -- the command line ------------------------------------------------------------------------------


def test_encode_command_reads_a_model_folder(footage_dir, tiny_model_dir, tmp_path, capsys):
    from engine.__main__ import main
    from engine.checkpoint import file_digest

    out = tmp_path / "latents"
    argv = ["encode", "--data", str(footage_dir), "--model", str(tiny_model_dir), "--out", str(out)]
    assert main([*argv, "--frames", "16,8", "--aspects", "1,4/3,9/16", "--device", "cpu"]) == 0
    io = capsys.readouterr()
    assert io.out.strip() == str(out / "index.json")
    assert "3 clips (4 windows) and 1 images: 5 samples" in io.err and "b/broken.mp4" in io.err
    index = json.loads((out / "index.json").read_text())
    assert index["models"] == {"tae": file_digest(tiny_model_dir / "tae"), "text": file_digest(tiny_model_dir / "t2v")}
    assert index["config"]["buckets"]["aspects"] == [1.0, 4 / 3, 9 / 16]
    assert main([*argv, "--aspects", "1,x"]) == 2 and "comma-separated numbers" in capsys.readouterr().err


@pytest.mark.slow
def test_encode_under_torchrun_matches_one_process(footage_dir, tiny_model_dir, tmp_path):
    import subprocess
    import sys

    env = os.environ | {"OMP_NUM_THREADS": "1"}
    argv = ["--data", str(footage_dir), "--model", str(tiny_model_dir), "--frames", "16,8", "--device", "cpu"]
    run = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "engine",
        "encode",
    ]
    subprocess.run([*run, *argv, "--out", str(tmp_path / "two")], check=True, env=env, cwd=Path(__file__).parent.parent)
    index = json.loads((tmp_path / "two" / "index.json").read_text())
    assert index["world"] == 2 and index["samples"] == 5
    assert {s["file"][:4] for s in index["shards"]} == {"r0of", "r1of"}
    assert sorted(LatentShards(tmp_path / "two").shapes) == sorted([(4, 4, 6, 8)] * 3 + [(4, 1, 8, 8), (4, 2, 10, 6)])
