"""experiments/device_job.sh: a job outlives the call that started it, and its checkpoints come back
in parts small enough for the device tool ($OUT files are capped at 16 MiB) and join up intact."""

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # detached processes and their polls: about 8 s

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "device_job.sh"


def _sh(*args: str, cwd: Path, env: dict | None = None) -> str:
    res = subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_job_runs_detached_and_its_folder_comes_back_in_parts(tmp_path):
    work, out, back = tmp_path / "work", tmp_path / "out", tmp_path / "back"
    work.mkdir(), out.mkdir()
    # 20 MB of incompressible bytes: more than one 15 MiB part.
    job = "import os; os.makedirs('runs/m', exist_ok=True); open('runs/m/w.bin', 'wb').write(os.urandom(20_000_000))"
    assert "started pid" in _sh("start", "runs/j.log", "--", "python3", "-c", f"{job}; print('saved')", cwd=work)
    polled = _sh("poll", "runs/j.log", "30", "runs/m", "runs/absent", cwd=work, env=os.environ | {"OUT": str(out)})
    assert "saved" in polled and "finished rc=0" in polled
    parts = sorted(p.name for p in out.glob("pack.tgz.part-*"))
    assert parts == ["pack.tgz.part-00", "pack.tgz.part-01"]
    assert all(p.stat().st_size <= 15 * 2**20 for p in out.glob("pack.tgz.part-*"))
    assert (out / "job.log").read_text().strip() == "saved"
    _sh("unpack", str(out), str(back), cwd=work)
    assert (back / "runs/m/w.bin").read_bytes() == (work / "runs/m/w.bin").read_bytes()


def test_poll_tells_a_running_job_from_a_failed_one(tmp_path):
    _sh("start", "slow.log", "--", "sleep", "30", cwd=tmp_path)
    assert _sh("poll", "slow.log", "1", cwd=tmp_path).strip().endswith("running")
    subprocess.run(["kill", (tmp_path / "slow.log.pid").read_text().strip()], check=True)
    _sh("start", "bad.log", "--", "python3", "-c", "raise SystemExit(3)", cwd=tmp_path)
    assert _sh("poll", "bad.log", "20", cwd=tmp_path).strip().endswith("finished rc=3")
