"""Issue 17 (hardening), the parts done so far: device names are checked against what the machine
has before any work, and every free-text field has the prompt's length limit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.engine import available_devices, pick_device
from engine.requests import MAX_PROMPT_CHARS, RequestError
from engine.tasks import T2VRequest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["tpu", "meta", "cuda:99", "gpu", "CPU "])
def test_unknown_devices_are_refused_with_the_list(name):
    with pytest.raises(RequestError, match="accepted here: auto, cpu"):
        pick_device(name)


def test_known_devices():
    assert pick_device("cpu").type == "cpu" and pick_device(None).type in ("cpu", "cuda")
    assert available_devices()[:2] == ["auto", "cpu"]


@pytest.mark.slow
def test_cli_and_app_refuse_a_bad_device_in_one_line(tmp_path):
    cli = [sys.executable, "-m", "engine", "generate", "--prompt", "a red circle", "--device", "tpu"]
    r = subprocess.run([*cli, "--out", str(tmp_path / "x.mp4")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "accepted here" in r.stderr and "Traceback" not in r.stderr
    app = [sys.executable, str(ROOT / "app.py"), "--device", "meta", "--outputs-dir", str(tmp_path / "o")]
    r = subprocess.run(app, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "accepted here" in r.stderr and "Traceback" not in r.stderr


def test_the_negative_prompt_has_the_prompts_limit():
    T2VRequest(prompt="a red circle", negative_prompt="x" * MAX_PROMPT_CHARS).validate()
    with pytest.raises(RequestError, match="negative prompt is 100000 characters"):
        T2VRequest(prompt="a red circle", negative_prompt="x" * 100_000).validate()


@pytest.mark.slow
def test_app_start_up_errors_are_one_line(tmp_path):
    """An outputs folder that cannot be written and a port already taken: one clear line, exit 2."""
    import socket

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    app = [sys.executable, str(ROOT / "app.py"), "--device", "cpu", "--cache-dir", ""]
    r = subprocess.run([*app, "--outputs-dir", str(blocker / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cannot be written" in r.stderr and "Traceback" not in r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cmd = [*app, "--outputs-dir", str(tmp_path / "o"), "--port", str(port)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 2 and "another --port" in r.stderr and "Traceback" not in r.stderr


def test_a_pickled_cache_row_is_refused_not_run(tmp_path):
    """Rewriting a cache row in diskcache's pickle mode must not execute anything: it reads as a miss."""
    import os
    import pickle
    import sqlite3

    import torch

    from engine.cache import TensorCache

    cache = TensorCache(tmp_path / "c")
    cache.put("k", {"x": torch.ones(2)})
    assert torch.equal(cache.get("k")["x"], torch.ones(2))
    cache.close()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    db = sqlite3.connect(tmp_path / "c" / "cache.db")
    db.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = ?", (sqlite3.Binary(pickle.dumps(Evil())), "k"))
    db.commit()
    db.close()
    cache = TensorCache(tmp_path / "c")
    assert cache.get("k") is None and not marker.exists()
    cache.put("k", {"x": torch.zeros(1)})  # and the cache goes on working
    assert torch.equal(cache.get("k")["x"], torch.zeros(1))


def test_a_damaged_or_unusable_cache_never_stops_the_engine(tmp_path, tiny_model_dir):
    from engine.cache import TensorCache
    from engine.engine import Engine

    broken = tmp_path / "cache"
    broken.mkdir()
    (broken / "cache.db").write_text("this is not a database" * 100)
    cache = TensorCache.open(broken)
    assert cache is not None and list(tmp_path.glob("cache.damaged-*"))  # moved aside, a fresh one
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert TensorCache.open(blocker / "cache") is None  # cannot be made at all: no cache
    engine = Engine(tiny_model_dir, device="cpu", cache_dir=blocker / "cache", outputs_dir=tmp_path / "o")
    assert engine.cache is None
    res = engine.generate(T2VRequest(prompt="a red circle moving left", steps=1, frames=4))
    assert res.frames.shape[0] == 4


@pytest.fixture()
def tiny_engine(tiny_model_dir, tmp_path):
    from engine.engine import Engine

    return Engine(tiny_model_dir, device="cpu", cache_dir=None, outputs_dir=tmp_path / "o")


def test_bad_output_places_are_refused_before_any_work_with_the_real_cause(tiny_engine, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    (tmp_path / "folder.mp4").mkdir()
    req = T2VRequest(prompt="a red circle moving left", steps=1, frames=4)
    for out, words in ((blocker / "x.mp4", "is a file, not a folder"), (tmp_path / "folder.mp4", "it is a folder")):
        events = list(tiny_engine.run(req, out=out))
        assert len(events) == 1 and words in events[0].message and "disk" not in events[0].message


def test_a_full_disk_says_so_and_leaves_nothing_listed(tiny_engine, tmp_path, monkeypatch):
    import errno

    import engine.results as eng

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r.mp4"))

    monkeypatch.setattr(eng, "write_video", full)
    events = list(tiny_engine.run(T2VRequest(prompt="a red circle", steps=1, frames=4), out=tmp_path / "r.mp4"))
    assert "the disk is full" in events[-1].message and not (tmp_path / "r.json").exists()
    monkeypatch.undo()  # space is back: the next job works
    res = tiny_engine.generate(T2VRequest(prompt="a red circle", steps=1, frames=4), out=tmp_path / "r.mp4")
    assert res.path.is_file()


def test_a_failed_write_leaves_nothing_and_the_sweep_restores_what_a_kill_left(tiny_engine, tmp_path, monkeypatch):
    import json
    import os

    import engine.results as eng
    from engine.outputs import sweep
    from engine.video_io import write_png, write_video

    def fail_on_thumb(path, *a, **k):  # the result is written, then the thumbnail fails
        if str(path).endswith(".thumb.png"):
            raise OSError(28, "No space left on device", str(path))
        return write_png(path, *a, **k)

    monkeypatch.setattr(eng, "write_png", fail_on_thumb)
    out = tmp_path / "res" / "r.mp4"
    events = list(tiny_engine.run(T2VRequest(prompt="a red circle", steps=1, frames=4), out=out))
    assert "disk is full" in events[-1].message
    assert not list(out.parent.iterdir())  # no half result, no .part
    monkeypatch.undo()
    # What a kill leaves: an MP4 without its JSON, a stale .part, a fresh .part (a write going on).
    folder = tmp_path / "outputs"
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    write_video(folder / "a.mp4", frames, 8.0, {"request": {"task": "t2v", "prompt": "x"}})
    write_png(folder / "b.png", frames[0], {"request": {"task": "t2v", "prompt": "y"}})
    write_png(folder / "a.thumb.png", frames[0])
    (folder / "old.mp4.part").write_bytes(b"x")
    os.utime(folder / "old.mp4.part", (0, 0))
    (folder / "new.mp4.part").write_bytes(b"x")
    assert sweep(folder) == {"removed": 1, "restored": 2}
    assert json.loads((folder / "a.json").read_text())["request"]["prompt"] == "x"
    assert json.loads((folder / "b.json").read_text())["request"]["prompt"] == "y"
    assert (folder / "new.mp4.part").exists() and not (folder / "a.thumb.json").exists()


def test_gallery_selection_data_is_validated():
    from studio.history_tab import entry_at

    entries = ["a", "b"]
    assert entry_at(entries, 1) == "b" and entry_at(entries, [0, 3]) == "a"
    for bad in ("1", True, -1, 2, None, 1.0, [], {"index": 0}):
        assert entry_at(entries, bad) is None
