"""Experiment (not part of the recipe): how big Gradio's temporary folder grows over many jobs.

    PYTHONPATH=. python experiments/gradio_temp.py [JOBS] [--model DIR]

Starts the studio (app.py, the shipped model unless --model) with GRADIO_TEMP_DIR set to a fresh
folder, runs JOBS (default 50) default text-to-video jobs through Gradio's own client, as the page
does (every step's preview and the result go through Gradio's postprocessing), and prints the
number of files and bytes in that folder every 10 jobs. Gradio's client keeps its downloads in a
folder of its own, so only the server's files are counted.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("jobs", type=int, nargs="?", default=50)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    from gradio_client import Client

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        temp = tmp / "gradio-temp"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "GRADIO_TEMP_DIR": str(temp), "GRADIO_ANALYTICS_ENABLED": "False"}
        cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--device", "cpu"]
        cmd += ["--outputs-dir", str(tmp / "outputs"), "--cache-dir", str(tmp / "cache")]
        if args.model:
            cmd += ["--model", args.model]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(url, timeout=1)
                    break
                except OSError:
                    time.sleep(0.5)
            client = Client(url, verbose=False, download_files=False)
            t2v = next(
                name
                for name, info in client.view_api(return_format="dict")["named_endpoints"].items()
                if any(p["parameter_name"] == "batch" for p in info["parameters"])
            )
            print(f"files and bytes in Gradio's temporary folder ({temp}), default T2V jobs through {t2v}:")
            print(f"  after  0 jobs: {folder_size(temp)[0]:5d} files, {folder_size(temp)[1] / 1e6:7.2f} MB", flush=True)
            start = time.time()
            for k in range(1, args.jobs + 1):
                client.predict(
                    f"a red circle moving left on a blue background number {k}",  # a new clip every job
                    "",
                    k,
                    50,
                    5.0,
                    32,
                    64,
                    "linear-quadratic",
                    True,
                    0,
                    1,
                    None,
                    None,
                    api_name=t2v,
                )
                if k % 10 == 0 or k == args.jobs:
                    n, size = folder_size(temp)
                    print(
                        f"  after {k:2d} jobs: {n:5d} files, {size / 1e6:7.2f} MB ({time.time() - start:.0f} s)",
                        flush=True,
                    )
        finally:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
