"""Issue 17 (hardening), the parts done so far: device names are checked against what the machine
has before any work, and every free-text field has the prompt's length limit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.engine import available_devices, pick_device
from engine.requests import MAX_PROMPT_CHARS, RequestError, T2VRequest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["tpu", "meta", "cuda:99", "gpu", "CPU "])
def test_unknown_devices_are_refused_with_the_list(name):
    with pytest.raises(RequestError, match="accepted here: auto, cpu"):
        pick_device(name)


def test_known_devices():
    assert pick_device("cpu").type == "cpu" and pick_device(None).type in ("cpu", "cuda")
    assert available_devices()[:2] == ["auto", "cpu"]


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
