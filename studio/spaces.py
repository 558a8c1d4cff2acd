"""Whose work is whose. Without sign-in (one person on their own machine) there is one space, the
outputs folder itself. With sign-in (app.py --auth) every user has a space of their own, a folder
under `outputs/users/`, and sees, reopens, compares, sends and deletes only what is in it: their
results (History), their saved characters.

A user's folder is named `<name>-<16 hex>`, the hex a keyed hash of the name with a key kept in
`outputs/users/.key`. Gradio's file route serves any file under the outputs folder to anyone
signed in who knows its path; the key makes another user's paths impossible to guess."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .characters import CharacterStore
from .history import History

USERS = "users"
# Names become folder names: letters, digits and . _ @ - only, not starting with a dot.
USER_NAME = re.compile(r"[A-Za-z0-9_@-][A-Za-z0-9_.@-]{0,63}")


class UserNameError(ValueError):
    pass


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        raise UserNameError(
            f"User name {name!r} is not accepted: use 1-64 letters, digits and . _ @ - (not starting with a dot)."
        )
    return name


@dataclass(frozen=True)
class Space:
    """One user's work (or everyone's, without sign-in)."""

    folder: Path  # results and their sidecars; History lists it
    owner: str | None = None  # the signed-in user; None without sign-in

    @cached_property
    def history(self) -> History:
        return History(self.folder)

    @cached_property
    def characters(self) -> CharacterStore:
        return CharacterStore(self.folder / "characters")


class Spaces:
    """The space of each request: the one shared space, or the signed-in user's."""

    def __init__(self, outputs: str | Path, per_user: bool = False):
        self.outputs = Path(outputs)
        self.per_user = per_user
        self.shared = Space(self.outputs)
        self._spaces: dict[str, Space] = {}

    def of(self, request=None) -> Space:
        """The space of a Gradio request (its `username`), or of a user name."""
        if not self.per_user:
            return self.shared
        name = request if isinstance(request, str) else getattr(request, "username", None)
        if not name:
            # Gradio signs every request in when auth is on; a request without a user is refused
            # rather than given someone's (or everyone's) work.
            raise PermissionError("Sign in first: this studio keeps each user's work apart.")
        if name not in self._spaces:
            check_user_name(name)
            self._spaces[name] = Space(self.outputs / USERS / f"{name}-{self._tag(name)}", name)
        return self._spaces[name]

    def folders(self) -> list[Path]:
        """Every folder results live in (for the start-up sweep)."""
        users = self.outputs / USERS
        found = sorted(p for p in users.iterdir() if p.is_dir()) if users.is_dir() else []
        return [self.outputs, *found]

    def _tag(self, name: str) -> str:
        return hmac.new(self._key(), name.encode(), hashlib.sha256).hexdigest()[:16]

    def _key(self) -> bytes:
        """The secret behind the folder names: made once, kept readable by this user only."""
        path = self.outputs / USERS / ".key"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".key.{os.getpid()}.part")
            tmp.write_bytes(secrets.token_bytes(32))
            tmp.chmod(0o600)
            try:
                os.link(tmp, path)  # never replaces a key another process just made
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return path.read_bytes()
