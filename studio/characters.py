"""Characters kept for later: a saved reference under a name, in a folder that is the only state
(so the list survives reloads and restarts). No Gradio here; the Personalize tab drives it.

One folder per character, named from the name but safe whatever the name is (no separators, no
dots in front, a hash of the name so two names never share one):

    characters/stripey-1a2b3c4d/character.json   {"name", "sha256", "created", "summary", files}
                                reference.png    the reference as the model sees it (64x64)
                                original.jpg     the image it was made from, as uploaded

Deleting a character removes its folder only: results made with it keep their own copy of the
reference (`<result>.reference.png`, written by the engine).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from engine.video_io import write_png

MAX_NAME = 40
META = "character.json"
REFERENCE = "reference.png"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class CharacterNameError(ValueError):
    """A name the store refuses; the message says why and what to do."""


@dataclass(frozen=True)
class SavedCharacter:
    name: str
    folder: Path
    sha256: str  # of the image the reference was prepared from (the engine's reference digest)
    created: str
    summary: str = ""
    original_name: str = ""  # the file in `folder` it was prepared from, if kept

    @property
    def reference(self) -> Path:
        """The reference as the model sees it (a 64x64 PNG)."""
        return self.folder / REFERENCE

    @property
    def original(self) -> Path | None:
        o = self.folder / self.original_name if self.original_name else None
        return o if o is not None and o.is_file() else None

    @property
    def image(self) -> Path:
        """The file to give the engine: the original when kept (so it prepares exactly as before),
        else the prepared reference."""
        return self.original or self.reference


def clean_name(name) -> str:
    """The name as it is kept: trimmed, inner runs of white space made one space; refused (with a
    message) when empty, longer than MAX_NAME or holding control characters."""
    text = " ".join(str(name or "").split())
    if not text:
        raise CharacterNameError("Give the character a name first (1 to 40 characters).")
    if len(text) > MAX_NAME:
        raise CharacterNameError(f"That name is {len(text)} characters; at most {MAX_NAME} are allowed.")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co") for c in text):
        raise CharacterNameError("A name may not hold control or invisible characters.")
    return text


def folder_name(name: str) -> str:
    """A safe folder name for a character name: ASCII letters, digits, '-' and '_' only (so no path
    separators, no '..', nothing hidden), plus a hash of the name, which is what makes it unique.
    Names that differ only in case share a folder, as they are one name to the store."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9_]+", "-", ascii_).strip("-_").lower()[:24] or "character"
    return f"{stem}-{hashlib.sha256(name.casefold().encode()).hexdigest()[:8]}"


class CharacterStore:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._sweep()

    def _sweep(self, older_than: float = 600.0) -> None:
        """Remove what a crashed save left behind (.part-* being written, .trash-* being replaced),
        once it is old enough not to belong to a save in progress."""
        if not self.folder.is_dir():
            return
        now = time.time()
        for d in self.folder.iterdir():
            if d.name.startswith((".part-", ".trash-")) and d.is_dir() and not d.is_symlink():
                try:
                    if now - d.stat().st_mtime > older_than:
                        shutil.rmtree(d, ignore_errors=True)
                except OSError:
                    continue

    def list(self) -> list[SavedCharacter]:
        """Every saved character, by name; folders without a readable character.json are skipped."""
        out = []
        if not self.folder.is_dir():
            return out
        for d in self.folder.iterdir():
            if d.name.startswith(".") or not d.is_dir():
                continue
            try:
                meta = json.loads((d / META).read_text())
                name = clean_name(meta["name"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not (d / REFERENCE).is_file():
                continue
            original = meta.get("original") or ""
            original = original if _plain(original) else ""
            out.append(
                SavedCharacter(
                    name,
                    d,
                    str(meta.get("sha256", "")),
                    str(meta.get("created", "")),
                    meta.get("summary", ""),
                    original,
                )
            )
        out.sort(key=lambda c: (c.name.casefold(), c.name))
        return out

    def names(self) -> list[str]:
        return [c.name for c in self.list()]

    def get(self, name) -> SavedCharacter | None:
        """The character of that name (case does not matter), or None."""
        key = " ".join(str(name or "").split()).casefold()
        return next((c for c in self.list() if c.name.casefold() == key), None) if key else None

    def save(
        self,
        name,
        image: np.ndarray,
        original: str | Path | None = None,
        sha256: str = "",
        summary: str = "",
        replace: bool = False,
    ) -> SavedCharacter:
        """Keep `image` (the reference as the model sees it, (H, W, 3) uint8) and the file it was
        made from under `name`. A name already taken is refused unless `replace`."""
        name = clean_name(name)
        old = self.get(name)
        if old is not None and not replace:
            raise CharacterNameError(
                f"A character named “{old.name}” is already saved: pick another name, or tick “replace” to save over it."
            )
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"a reference image is (H, W, 3) uint8, got {image.shape} {image.dtype}")
        self.folder.mkdir(parents=True, exist_ok=True)
        # Written in a hidden folder first, then renamed: a character is complete or not there.
        part = self.folder / f".part-{uuid.uuid4().hex}"
        part.mkdir()
        try:
            write_png(part / REFERENCE, image)
            kept = ""
            if original and Path(original).is_file():
                suffix = Path(original).suffix.lower()
                kept = "original" + (suffix if suffix in IMAGE_SUFFIXES else "")
                shutil.copyfile(original, part / kept)
            meta = {
                "name": name,
                "sha256": sha256,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "summary": summary,
                "reference": REFERENCE,
                "original": kept,
                "original_name": Path(original).name if kept else "",
            }
            (part / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
            target = self.folder / folder_name(name)
            # The old character (or a leftover folder without a readable character.json) is moved
            # aside first and removed only once the new one is in place: a crash between the two
            # renames leaves the old one recoverable, never neither.
            trash = []
            for stale in (old.folder if old is not None else None, target):
                if stale is not None and Path(stale).is_dir() and not Path(stale).is_symlink():
                    aside = self.folder / f".trash-{uuid.uuid4().hex}"
                    Path(stale).rename(aside)
                    trash.append(aside)
            part.rename(target)
            for aside in trash:
                shutil.rmtree(aside, ignore_errors=True)
        except BaseException:
            shutil.rmtree(part, ignore_errors=True)
            raise
        saved = self.get(name)
        assert saved is not None
        return saved

    def delete(self, name) -> bool:
        """Remove a character (its folder, nothing else); False when there is none of that name."""
        c = self.get(name)
        if c is None:
            return False
        self._remove(c.folder)
        return True

    def _remove(self, folder: Path) -> None:
        """Remove one character's folder: only a folder directly inside the store, never a link."""
        folder = Path(folder)
        if folder.parent.resolve() != self.folder.resolve() or folder.is_symlink() or not folder.is_dir():
            raise ValueError(f"not a character folder of this store: {folder}")
        shutil.rmtree(folder)


def _plain(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")
