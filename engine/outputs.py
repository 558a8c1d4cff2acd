"""The outputs folder after a crash: what a kill mid-write left behind is cleaned up at start-up.

Every result is written atomically (temporary `.part` files renamed into place, the JSON last), so
a kill leaves at most `.part` files, or a result without its JSON (History lists a result by its
JSON, so such a one is invisible). The sweep removes stale `.part` files and gives a result its
JSON back from the request stored inside the file itself (the MP4's comment tag, the PNG's tEXt).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from PIL import Image

from .atomic import write_atomic
from .video_io import read_metadata

log = logging.getLogger(__name__)
SIDECARS = (".thumb", ".bicubic", ".reference")  # files that belong to a result, never results


def _stored_metadata(media: Path) -> dict:
    if media.suffix == ".png":
        with Image.open(media) as img:
            raw = getattr(img, "text", {}).get("request")
        return json.loads(raw) if raw else {}
    return read_metadata(media)


def sweep(folder: str | Path, min_age: float = 60.0) -> dict[str, int]:
    """Remove `.part` files older than `min_age` seconds (younger ones may be a write in
    progress) and restore missing JSON files; returns how many of each."""
    folder = Path(folder)
    removed = restored = 0
    if not folder.is_dir():
        return {"removed": 0, "restored": 0}
    now = time.time()
    for path in folder.iterdir():
        try:
            if path.name.endswith(".part") and path.is_file() and now - path.stat().st_mtime > min_age:
                path.unlink()
                removed += 1
            elif path.suffix in (".mp4", ".png") and not path.stem.endswith(SIDECARS) and path.is_file():
                side = path.with_suffix(".json")
                if side.exists():
                    continue
                meta = _stored_metadata(path)
                if "request" in meta:
                    write_atomic(side, (json.dumps(meta, indent=2) + "\n").encode())
                    restored += 1
        except (OSError, ValueError) as e:  # one unreadable file must not stop the sweep
            log.warning("outputs sweep: skipped %s (%s)", path.name, e)
    return {"removed": removed, "restored": restored}
