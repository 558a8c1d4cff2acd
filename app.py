"""Start the studio: the one place that loads models and launches the UI.

python app.py [--host 127.0.0.1] [--port 7860] [--model assets/models/shapes-v2] [--loras DIR] [--device cpu]
              [--cache-dir cache] [--outputs-dir outputs] [--auth user:password ...] [--auth-file FILE]
              [--max-upload-mb 200]

Results (with their JSON and sidecars) and saved characters (outputs/characters/) live in the
outputs folder, the one folder the page may load files from. With sign-in (--auth, repeatable, or
--auth-file with one user:password a line) each user has a folder of their own under
outputs/users/ and sees only their own results and characters.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Shapes Studio: make and compare videos in your browser")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to share on your network)")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--model", default=None, help="model folder (default: the shipped shapes-v2)")
    ap.add_argument(
        "--loras",
        default=None,
        help="a folder of style adapters (LoRAs), one subfolder each, besides the model's loras/",
    )
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    ap.add_argument("--cache-dir", default="cache")
    ap.add_argument("--outputs-dir", default="outputs")
    ap.add_argument(
        "--auth",
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="sign-in required to open the studio; repeat for several users, each sees only their own work",
    )
    ap.add_argument("--auth-file", default=None, help="a file of user:password lines (# comments), like --auth")
    ap.add_argument("--max-upload-mb", type=int, default=200)
    ap.add_argument("--queue-size", type=int, default=16, help="jobs that may wait; more are told the queue is full")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # The studio's own lines (what users were told) in the terminal, one each; other libraries'
    # INFO chatter (every HTTP request) stays off.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s studio: %(message)s", "%H:%M:%S"))
    logging.getLogger("studio").addHandler(handler)
    logging.getLogger("studio").setLevel(logging.INFO)
    try:
        auth = read_auth(args.auth, args.auth_file)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from engine.engine import DEFAULT_MODEL, Engine, pick_device
    from engine.requests import RequestError
    from engine.video_io import VideoLimits
    from studio import PAGE_CSS, build_ui, signin
    from studio.spaces import Spaces

    try:
        pick_device(args.device)  # before anything is loaded: one clear line, not a traceback
    except RequestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    outputs = Path(args.outputs_dir).resolve()
    try:
        outputs.mkdir(parents=True, exist_ok=True)
        probe = outputs / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        print(
            f"error: the outputs folder {outputs} cannot be written ({e.strerror or e}); pass --outputs-dir",
            file=sys.stderr,
        )
        return 2
    try:
        engine = Engine(
            model=args.model or DEFAULT_MODEL,
            device=args.device,
            cache_dir=args.cache_dir,
            outputs_dir=outputs,
            limits=VideoLimits(max_bytes=args.max_upload_mb * 1024 * 1024),  # the engine refuses what Gradio would too
            loras=args.loras,
        )
    except (FileNotFoundError, RequestError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from engine.outputs import sweep

    spaces = Spaces(outputs, per_user=bool(auth))
    swept = [sweep(folder) for folder in spaces.folders()]  # what a kill mid-write left behind
    removed, restored = sum(s["removed"] for s in swept), sum(s["restored"] for s in swept)
    if removed or restored:
        print(f"outputs: removed {removed} unfinished file(s), restored {restored} JSON file(s)")
    demo = build_ui(engine, outputs, per_user=bool(auth))
    demo.queue(max_size=args.queue_size, default_concurrency_limit=1)
    print(f"Shapes Studio on model {engine.models.ids['generator']} ({engine.device})", flush=True)
    try:
        demo.launch(
            server_name=args.host,
            server_port=args.port,
            auth=auth,
            app_kwargs=signin.app_kwargs(),  # sign-in on the routes Gradio leaves open (cancel, heartbeat)
            allowed_paths=[str(outputs)],
            max_file_size=f"{args.max_upload_mb}mb",
            show_error=True,
            css=PAGE_CSS,
        )
    except OSError as e:  # the port is taken, or the host cannot be bound
        print(f"error: cannot serve on {args.host}:{args.port} ({e}); pick another --port", file=sys.stderr)
        return 2
    return 0


def read_auth(pairs: list[str], path: str | None) -> list[tuple[str, str]] | None:
    """The sign-ins from --auth and --auth-file: [(user, password)], or None for no sign-in.
    Raises ValueError with the reason for a malformed line, a bad user name or a repeated user."""
    from studio.spaces import UserNameError, check_user_name

    lines = [(f"--auth number {i}", p) for i, p in enumerate(pairs, 1)]  # no password in a message
    if path:
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read --auth-file {path} ({e})") from None
        lines += [
            (f"{path} line {i}", line.strip())
            for i, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#")
        ]
    users: dict[str, str] = {}
    for where, line in lines:
        user, sep, password = line.partition(":")
        if not sep or not password:
            raise ValueError(f"{where}: expected user:password")
        try:
            check_user_name(user)
        except UserNameError as e:
            raise ValueError(f"{where}: {e}") from None
        if user in users:
            raise ValueError(f"{where}: user {user!r} is given twice")
        users[user] = password
    if path and not users:
        raise ValueError(f"--auth-file {path} names no user (one user:password a line)")
    return list(users.items()) or None


if __name__ == "__main__":
    sys.exit(main())
