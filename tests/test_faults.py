"""Issue 17 (hardening), "across all tabs": every upload path of every tab refuses every kind of bad
file with a message that says what was wrong and what is accepted, before any decoding or model
work it can be refused without; nothing is written (History lists nothing, no .part is left); and
the next good job through the same handler works. A disk that fills up while a result is written
says so, leaves no partial result and no .part, and the next job works.

The upload paths: Edit (the source), Upscale (a clip or an image), Personalize (the reference
image, and a clip to take a frame from). The tabs' handlers are driven as the studio drives them,
on the tiny model with small upload limits: every case is real files, and takes under a second."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import ImageFile
from test_video_io_stream import _add_tone, headerless_mkv, solid

import engine.video_io as video_io
from engine.engine import Engine
from engine.video_io import VideoLimits, write_png, write_video
from engine.world.characters import Character
from engine.world.render import render
from studio.characters import CharacterStore
from studio.edit_tab import EditHandlers
from studio.history import History
from studio.personalize_tab import PersonalizeHandlers
from studio.upscale_tab import UpscaleHandlers

STAR = Character("star", "red", "cyan", "hstripes")
# Small limits, so files over them are cheap to make: the good inputs here are a few kB.
LIMITS = VideoLimits(max_bytes=100_000, max_seconds=2.0)
ACCEPTED_WORDS = "Accepted: "


# -- bad files -----------------------------------------------------------------------------------
def _text(path: Path) -> Path:
    path.write_text("this is not a video at all, just notes\n" * 40)
    return path


def _random(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _good_mp4(path: Path, size: int = 64, frames: int = 8) -> Path:
    return write_video(path, render(STAR.scene("right", "green"), size, frames), 8.0)


def _good_png(path: Path) -> Path:
    return write_png(path, STAR.reference("white", 128))


def _corrupt_video(path: Path) -> Path:
    """A real faststart MP4's header (ftyp, moov with its sample tables), then garbage."""
    data = _good_mp4(path.with_name("whole-" + path.name)).read_bytes()
    path.write_bytes(data[:1000] + np.random.default_rng(1).bytes(len(data)))
    return path


def _corrupt_image(path: Path) -> Path:
    """A PNG's signature and IHDR chunk, then garbage."""
    data = _good_png(path.with_name("whole-" + path.name)).read_bytes()
    path.write_bytes(data[:33] + np.random.default_rng(1).bytes(len(data)))
    return path


def _truncated_video(path: Path) -> Path:
    path.write_bytes(_good_mp4(path.with_name("whole-" + path.name)).read_bytes()[:300])
    return path


def _truncated_image(path: Path) -> Path:
    data = _good_png(path.with_name("whole-" + path.name)).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _no_frames(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=8)
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        c.start_encoding()
    return path


def _audio(codec: str, fmt: str | None):
    def make(path: Path) -> Path:
        with av.open(str(path), "w", format=fmt) as c:
            _add_tone(c, codec, 0.2)()
        return path

    return make


def _too_big(path: Path) -> Path:
    """A real clip (or image) of noise, over LIMITS.max_bytes."""
    noise = np.random.default_rng(0).integers(0, 256, (16, 96, 96, 3), np.uint8)
    out = write_png(path, np.concatenate(list(noise[:8]))) if path.suffix == ".png" else write_video(path, noise, 8.0)
    assert out.stat().st_size > LIMITS.max_bytes
    return out


def _too_long(path: Path) -> Path:
    return write_video(path, solid(24, 16, 16, (40, 60, 230)), 8.0)  # 3 s; the limit is 2 s


def _missing(path: Path) -> Path:
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


# kind: (make, file name for the video paths, file name for the reference image path)
KINDS = {
    "text": (_text, "notes.mp4", "notes.png"),
    "random bytes": (_random, "noise.mp4", "noise.png"),
    "zero bytes": (_empty, "empty.mp4", "empty.png"),
    "corrupt video": (_corrupt_video, "corrupt.mp4", "corrupt.mp4"),
    "corrupt image": (_corrupt_image, "corrupt.png", "corrupt.png"),
    "truncated video": (_truncated_video, "cut.mp4", "cut.mp4"),
    "truncated image": (_truncated_image, "cut.png", "cut.png"),
    "zero frames": (_no_frames, "noframes.mkv", "noframes.mkv"),
    "audio only (WAV)": (_audio("pcm_s16le", None), "song.wav", "song.wav"),
    "audio only (M4A)": (_audio("aac", "mp4"), "song.m4a", "song.m4a"),
    "over the size limit": (_too_big, "big.mp4", "big.png"),
    "over the length limit": (_too_long, "long.mp4", None),  # a picture has no length
    "missing": (_missing, "gone.mp4", "gone.png"),
    "a folder": (_folder, "folder.mp4", "folder.png"),
}
# Found from the file system or the header: refused before a single frame or pixel is decoded.
BEFORE_DECODING = {
    "text",
    "random bytes",
    "zero bytes",
    "audio only (WAV)",
    "audio only (M4A)",
    "over the size limit",
    "over the length limit",
    "missing",
    "a folder",
}
# What the message says is wrong, for the video paths (Edit, Upscale, a clip to take a frame from)...
VIDEO_WORDS = {
    "text": "is not a readable video",
    "random bytes": "is not a readable video",
    "zero bytes": r"is empty \(0 bytes\)",
    "corrupt video": "could not be decoded",
    "corrupt image": "could not be decoded",
    "truncated video": "damaged, cut short or not a video",
    "truncated image": r"could not be decoded \(image file is truncated\)",
    "zero frames": "has no frames",
    "audio only (WAV)": r"is audio only \(no picture\)",
    "audio only (M4A)": r"is audio only \(no picture\)",
    "over the size limit": r"is 0\.\d+ MB; the limit is 0\.1 MB",
    "over the length limit": "lasts 3 s; the limit is 2 s",
    "missing": "no such file",
    "a folder": "is a folder, not a file",
}
# ... and for the reference image (Personalize).
IMAGE_WORDS = VIDEO_WORDS | {
    kind: "is not an image"
    for kind in (
        "text",
        "random bytes",
        "corrupt video",
        "corrupt image",
        "truncated video",
        "zero frames",
        "audio only (WAV)",
        "audio only (M4A)",
    )
}
IMAGE_WORDS |= {
    "truncated image": "is damaged or cut short",
    "over the size limit": r"is 0\.\d+ MB; a reference image may be at most 0\.1 MB",
    "missing": "not found",
    "a folder": "is not a file",
}
LIMIT_KINDS = {"over the size limit", "over the length limit"}  # these say the limit, not the formats


# -- the tabs ------------------------------------------------------------------------------------
@pytest.fixture()
def engine(tiny_model_dir, tmp_path):
    return Engine(tiny_model_dir, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out", limits=LIMITS)


def _upscale_handlers(engine, workdir: Path) -> UpscaleHandlers:
    return UpscaleHandlers(engine, {}, workdir)


def _edit_job(h: EditHandlers, video) -> list[dict]:
    return list(h.run(video=video, mode="instruction", instruction="make the star yellow", seed=0, steps=1))


def _pt_job(h: PersonalizeHandlers, reference) -> list[dict]:
    return list(h.run(reference=reference, prompt="the character moving right", seed=0, steps=1, frames=4))


def _upscale_job(h: UpscaleHandlers, video, scale: int = 2) -> list[dict]:
    return list(h.run(video=video, scale=scale, steps=1, seed=0))


class Tab:
    """One upload path: its handler, how it reads an upload, the job that reads it again (None:
    the path has no job of its own), and a good job through the same handler."""

    def __init__(self, name: str, engine: Engine, tmp_path: Path) -> None:
        self.name, self.engine = name, engine
        workdir = engine.outputs_dir / ".studio"
        if name == "edit":
            self.h = EditHandlers(engine, {}, workdir)
        elif name == "upscale":
            self.h = _upscale_handlers(engine, workdir)
        else:
            self.h = PersonalizeHandlers(engine, {}, workdir, CharacterStore(engine.outputs_dir / "characters"))
        small = name == "upscale"  # the upscaler's work grows with the input: 32 px, 4 frames is plenty
        self.good_clip = _good_mp4(tmp_path / "upload" / "good.mp4", *((32, 4) if small else ()))
        self.good_png = _good_png(tmp_path / "upload" / "good.png")

    def load(self, path) -> dict:
        if self.name == "pt-take":
            return self.h.take_from(str(path))
        return self.h.load(str(path))

    def job(self, path) -> list[dict] | None:
        if self.name == "edit":
            return _edit_job(self.h, str(path))
        if self.name == "upscale":
            return _upscale_job(self.h, str(path))
        if self.name == "pt-reference":
            return _pt_job(self.h, str(path))
        return None  # a clip to take a frame from is read by take_from alone

    def good_job(self) -> dict:
        if self.name == "edit":
            assert "summary" in self.h.load(self.good_clip)
            return _edit_job(self.h, str(self.good_clip))[-1]
        if self.name == "upscale":
            assert "summary" in self.h.load(self.good_clip)
            return _upscale_job(self.h, str(self.good_clip))[-1]
        reference = str(self.good_png)
        if self.name == "pt-take":
            taken = self.h.take_from(str(self.good_clip))
            assert taken["count"] == 8, taken
            reference = self.h.use_frame(taken, 3)
        assert "view" in self.h.load(reference)
        return _pt_job(self.h, reference)[-1]


TABS = ["edit", "upscale", "pt-reference", "pt-take"]


@pytest.fixture()
def spy(engine, monkeypatch):
    """Counts decoding work (video streams opened for decoding, frames decoded, images whose pixels
    were decoded) and model work (the TAE encoding pixels, a text encoder reading a prompt: every
    task's first model call)."""
    seen = {"streams": 0, "frames": 0, "pixels": 0, "model": 0}
    real_iter, real_load = video_io._DecodedFrames.__iter__, ImageFile.ImageFile.load

    def frames(self):
        seen["streams"] += 1
        for item in real_iter(self):
            seen["frames"] += 1
            yield item

    def load(self):
        seen["pixels"] += 1
        return real_load(self)

    def counted(real):
        def call(*a, **k):
            seen["model"] += 1
            return real(*a, **k)

        return call

    monkeypatch.setattr(video_io._DecodedFrames, "__iter__", frames)
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    for owner, name in ((engine.models.tae, "encode"), (engine.models.tae, "encode_raw"), (engine, "encode_prompt")):
        monkeypatch.setattr(owner, name, counted(getattr(owner, name)))
    return seen


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _parts(root: Path) -> list[Path]:
    return sorted(root.rglob("*.part")) + sorted(root.rglob("part-*"))


CASES = [(tab, kind) for tab in TABS for kind in KINDS if KINDS[kind][2 if tab == "pt-reference" else 1]]


@pytest.mark.parametrize("tab,kind", CASES, ids=[f"{t}-{k}" for t, k in CASES])
def test_a_bad_upload_is_refused_clearly_nothing_is_written_and_the_next_job_works(engine, spy, tmp_path, tab, kind):
    t = Tab(tab, engine, tmp_path)
    make, video_name, image_name = KINDS[kind]
    name = image_name if tab == "pt-reference" else video_name
    (tmp_path / "bad").mkdir()
    bad = make(tmp_path / "bad" / name)
    words = (IMAGE_WORDS if tab == "pt-reference" else VIDEO_WORDS)[kind]
    got = t.load(bad)
    assert list(got) == ["error"], got
    message = got["error"]
    # What was wrong (naming the file), and what is accepted (the formats, or the limit).
    assert name in message and re.search(words, message), message
    if kind not in LIMIT_KINDS:
        assert ACCEPTED_WORDS in message, message
    assert str(tmp_path) not in message and "Errno" not in message, message  # no server paths, no errno
    assert t.load(bad) == got  # the same upload again: refused the same way
    events = t.job(bad)
    if events is not None:  # the job refuses it the same way, before any model work
        assert len(events) == 1 and events[0]["error"] == message and not events[0]["cancelled"], events
    assert spy["frames"] == spy["model"] == 0, spy  # not a frame of it decoded, no model run
    if kind in BEFORE_DECODING:  # found from the file system or the header: not even a decoder started
        assert spy["streams"] == spy["pixels"] == 0, spy
    out = engine.outputs_dir
    assert History(out).entries() == [] and _files(out) == [] and _parts(tmp_path) == []
    # The next job through the same handler works, and is the one thing History lists.
    final = t.good_job()
    assert "result" in final and Path(final["result"]).is_file(), final
    assert [e.media for e in History(out).entries()] == [Path(final["result"])]
    assert _parts(tmp_path) == []


# -- a disk that fills up while a result is written ------------------------------------------------
class _FillingContainer:
    """An output container whose disk fills up after two packets: the .part file is on disk, half
    written, when the write fails."""

    def __init__(self, container, path: str, hits: list) -> None:
        self._c, self._path, self._hits, self._n = container, path, hits, 0

    def __getattr__(self, name):
        return getattr(self._c, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._c.__exit__(*exc)

    def mux(self, packets):
        self._n += 1
        if self._n > 2:
            self._hits.append(Path(self._path).is_file())
            raise OSError(errno.ENOSPC, "No space left on device", self._path)
        return self._c.mux(packets)


def fill_disk_on(monkeypatch, folder: Path, pattern: str) -> list:
    """From now on, writing a file in `folder` whose .part name matches `pattern` fills the disk:
    half of a PNG or JSON reaches the disk, an MP4 gets two packets, then ENOSPC. Returns the list
    of faults hit (True where the .part file was on disk when it struck)."""
    hits: list[bool] = []
    real_write_bytes, real_open = Path.write_bytes, av.open

    def hit(path) -> bool:
        return Path(path).parent == folder and re.search(pattern, Path(path).name) is not None

    def write_bytes(self, data):
        if hit(self):
            real_write_bytes(self, data[: len(data) // 2])
            hits.append(self.is_file())
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write_bytes(self, data)

    def open_(file, mode="r", *args, **kwargs):
        c = real_open(file, mode, *args, **kwargs)
        return _FillingContainer(c, str(file), hits) if mode == "w" and hit(file) else c

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    monkeypatch.setattr(av, "open", open_)
    return hits


# Which file of a result the disk fills up on (its .part name): the first one written, the media,
# the last one (the JSON, which makes History list the result).
WRITES = {
    "result": r"-\d+\.(mp4|png)\.part$",
    "thumbnail": r"\.thumb\.png\.part$",
    "json": r"\.json\.part$",
    "bicubic": r"\.bicubic\.mp4\.part$",  # an upscale's first file
    "reference": r"\.reference\.png\.part$",  # a personalized clip's first file
}
FULL = [
    ("edit", "result"),
    ("edit", "thumbnail"),
    ("edit", "json"),
    ("upscale", "bicubic"),
    ("upscale", "result"),
    ("upscale", "json"),
    ("pt-reference", "reference"),
    ("pt-reference", "result"),
    ("pt-reference", "json"),
]


@pytest.mark.parametrize("tab,write", FULL, ids=[f"{t}-{w}" for t, w in FULL])
def test_a_full_disk_while_writing_a_result_says_so_leaves_nothing_and_the_next_job_works(engine, tmp_path, tab, write):
    t = Tab(tab, engine, tmp_path)
    out = engine.outputs_dir
    with pytest.MonkeyPatch.context() as mp:
        hits = fill_disk_on(mp, out, WRITES[write])
        final = t.good_job()
    assert hits == [True]  # the fault struck once, with the half-written .part on disk
    assert "result" not in final and "the disk is full" in final["error"], final
    assert "Free some disk space" in final["error"] and not final["cancelled"]
    # Nothing of the result is left: not listed, no media, no sidecar, no .part.
    assert History(out).entries() == [] and _parts(tmp_path) == []
    assert [p for p in out.iterdir() if p.is_file()] == []
    # Space is back: the same handler's next job works, and it is all History lists.
    final = t.good_job()
    assert "result" in final and [e.media for e in History(out).entries()] == [Path(final["result"])]
    assert _parts(tmp_path) == []


def test_a_header_that_gives_no_length_still_gives_every_frame_in_its_place(tmp_path):
    """Matroska written to a pipe has no length in its header, so the room for the frames is
    grown as they come (they are gathered into one array, held once): 100 frames, each in its place."""
    from engine.video_io import fit_clip, normalize_video

    ramp = np.concatenate([solid(1, 16, 16, (2 * i,) * 3) for i in range(100)])
    path = headerless_mkv(tmp_path / "stream.mkv", ramp, lossless=True)
    for clip in (normalize_video(path, size=8), fit_clip(path, 256)):
        assert clip.frames.shape[0] == 100 and clip.frames.flags.c_contiguous
        assert np.abs(clip.frames.reshape(100, -1).mean(1) - 2 * np.arange(100)).max() < 1.5


# -- a disk that fills up while a tab writes what it shows (not a result) -------------------------
def fill_disk_for_shown_files(monkeypatch, workdir: Path) -> list:
    """Every file a tab writes into its working folder (`part-*` while written) fills the disk:
    PNGs and MP4s as above, and .npy files (np.save) after half their bytes."""
    hits = fill_disk_on(monkeypatch, workdir, r"^part-")
    real_save = np.save

    def save(file, arr, *a, **k):
        real_save(file, arr, *a, **k)
        if getattr(file, "name", "").startswith(str(workdir / "part-")):
            file.truncate(file.tell() // 2)
            hits.append(True)
            raise OSError(errno.ENOSPC, "No space left on device", file.name)

    monkeypatch.setattr(np, "save", save)
    return hits


SHOWN = ["edit", "upscale", "pt-reference", "pt-take"]


@pytest.mark.parametrize("tab", SHOWN)
def test_a_full_disk_while_a_tab_shows_an_upload_says_so_and_leaves_nothing(engine, tmp_path, tab):
    t = Tab(tab, engine, tmp_path)
    workdir = engine.outputs_dir / ".studio"
    upload = t.good_png if tab == "pt-reference" else t.good_clip
    with pytest.MonkeyPatch.context() as mp:
        hits = fill_disk_for_shown_files(mp, workdir)
        got = t.load(upload)
    assert hits and set(got) == {"error"}, got
    assert "the disk is full" in got["error"] and Path(upload).name in got["error"]
    # Nothing half-made is left to be taken for a complete file next time.
    assert not workdir.exists() or [p for p in workdir.rglob("*") if p.is_file()] == []
    got = t.load(upload)  # space is back
    assert "error" not in got and ("view" in got or "frames" in got), got


def test_a_full_disk_after_an_edit_is_saved_shows_it_without_what_changed(engine, tmp_path):
    t = Tab("edit", engine, tmp_path)
    assert "summary" in t.h.load(t.good_clip)  # the source is shown (its files written)
    with pytest.MonkeyPatch.context() as mp:
        fill_disk_on(mp, engine.outputs_dir / ".studio", r"^part-diff-")
        final = _edit_job(t.h, str(t.good_clip))[-1]
    assert "result" in final and final["diff"] is None and "What changed" not in final["board"]
    assert Path(final["result"]).name in final["board"]  # the result plays beside its source
    assert [e.media for e in History(engine.outputs_dir).entries()] == [Path(final["result"])]
    assert _parts(tmp_path) == []


# -- an upload too long to upscale --------------------------------------------------------------------
def test_a_clip_too_long_to_upscale_is_refused_from_its_header_with_what_fits(engine, spy, tmp_path):
    """An upscale job has a budget (output pixels x frames, for its time): an upload past it is
    refused before any decoding, saying how many frames of its size fit; a shorter one works."""
    engine.upscale_max_output = 4 * 128 * 128  # four 128x128 frames: a 32x32 clip, 4x
    h = _upscale_handlers(engine, engine.outputs_dir / ".studio")
    long = _good_mp4(tmp_path / "upload" / "long.mp4", 32, 8)
    got = h.load(str(long))
    assert set(got) == {"error"} and "long.mp4 is too long to upscale" in got["error"]
    assert "up to 4 frames of this size (0.5 s at 8 fps)" in got["error"]
    events = _upscale_job(h, str(long), 4)
    assert events[-1]["error"] == got["error"] and len(events) == 1
    assert spy["frames"] == 0 and spy["model"] == 0  # refused from the header: nothing decoded
    assert History(engine.outputs_dir).entries() == [] and _parts(tmp_path) == []
    # A header that says nothing about length passes the first check; decoded, it is refused.
    unsized = headerless_mkv(tmp_path / "upload" / "unsized.mkv", solid(8, 32, 32, (200, 30, 30)))
    assert "unsized.mkv is too long to upscale" in _upscale_job(h, str(unsized), 4)[-1]["error"]
    # ... and the tab says so when it loads it, not "Ready." for a clip the job then refuses.
    loaded = h.load(str(unsized))
    assert set(loaded) == {"error"} and "unsized.mkv is too long to upscale" in loaded["error"]
    assert History(engine.outputs_dir).entries() == [] and _parts(tmp_path) == []
    # An image always fits (one frame), and a clip within the budget is upscaled.
    assert "view" in h.load(str(_good_png(tmp_path / "upload" / "still.png")))
    short = _good_mp4(tmp_path / "upload" / "short.mp4", 32, 4)
    final = _upscale_job(h, str(short), 4)[-1]
    assert "result" in final and [e.media for e in History(engine.outputs_dir).entries()] == [Path(final["result"])]
