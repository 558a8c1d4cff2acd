"""Sign-in (app.py --auth): each user sees, reopens, compares, sends and deletes only their own
work; routes that start, cancel or read work need the sign-in; a session's cancel token goes
when its page closes."""

from __future__ import annotations

import socket
import stat
import urllib.error
import urllib.parse
import urllib.request
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from test_studio import SETTINGS

from app import read_auth
from engine.engine import Engine
from engine.requests import CancelToken
from studio import build_ui, signin
from studio.spaces import Spaces, UserNameError

ALICE = SimpleNamespace(username="alice", session_hash="page-a")
BOB = SimpleNamespace(username="bob", session_hash="page-b")
# The T2V tab's Generate inputs: the studio tests' settings, as one quick image.
T2V = SETTINGS | dict(steps=2, frames=1, schedule="linear", rewrite=False, upscale=0, batch=1, last=None, previous=None)


def fn(demo, name, takes: str | None = None):
    """The studio's event function `name` (one taking an input named `takes`, where names repeat)."""
    found = [
        f.fn
        for f in demo.fns.values()
        if getattr(f.fn, "__name__", "") == name
        and (takes is None or takes in (*f.fn.__code__.co_varnames, *f.input_keyword_names))
    ]
    assert found, name
    return found[0]


def test_spaces_keep_users_apart(tmp_path):
    shared = Spaces(tmp_path)
    assert shared.of(ALICE) is shared.of(None) is shared.shared and shared.of(None).folder == tmp_path
    spaces = Spaces(tmp_path, per_user=True)
    a, b = spaces.of(ALICE), spaces.of(BOB)
    assert a.folder != b.folder and a.folder.parent == b.folder.parent == tmp_path / "users"
    assert a.folder.name.startswith("alice-") and len(a.folder.name) == len("alice-") + 16
    # The same folder after a restart (the key is kept), and the key is the owner's alone.
    assert Spaces(tmp_path, per_user=True).of("alice").folder == a.folder
    key = tmp_path / "users" / ".key"
    assert len(key.read_bytes()) == 32 and stat.S_IMODE(key.stat().st_mode) == 0o600
    # Another outputs folder (another key): names cannot be guessed from the user name.
    assert Spaces(tmp_path / "other", per_user=True).of("alice").folder.name != a.folder.name
    with pytest.raises(PermissionError, match="Sign in"):
        spaces.of(SimpleNamespace(username=None, session_hash="x"))
    for bad in ("../bob", ".hidden", "a/b", "x" * 65, "name with space"):
        with pytest.raises(UserNameError, match="not accepted"):
            spaces.of(bad)


def test_read_auth_lines_and_refusals(tmp_path):
    assert read_auth([], None) is None
    f = tmp_path / "users.txt"
    f.write_text("# the team\nalice:pa:ss\n\nbob:x\n")
    assert read_auth(["carol:c"], str(f)) == [("carol", "c"), ("alice", "pa:ss"), ("bob", "x")]
    for pairs, text, match in (
        (["alice"], None, "expected user:password"),
        (["alice:"], None, "expected user:password"),
        (["../x:secret"], None, "not accepted"),
        (["alice:a", "alice:b"], None, "given twice"),
        ([], "# nobody\n", "names no user"),
    ):
        path = None
        if text is not None:
            path = tmp_path / "f.txt"
            path.write_text(text)
        with pytest.raises(ValueError, match=match) as e:
            read_auth(pairs, path and str(path))
        assert "secret" not in str(e.value)  # a password never goes into a message
    with pytest.raises(ValueError, match="cannot read"):
        read_auth([], str(tmp_path / "missing.txt"))


@pytest.fixture()
def signed_in_studio(tiny_model_dir, tmp_path):
    engine = Engine(tiny_model_dir, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "out")
    return build_ui(engine, tmp_path / "out", per_user=True), Spaces(tmp_path / "out", per_user=True)


def test_each_user_sees_and_touches_only_their_own_work(signed_in_studio, tmp_path):
    demo, spaces = signed_in_studio
    run = fn(demo, "run", takes="batch")  # the T2V tab's Generate
    quiet = lambda *a, **k: None  # noqa: E731 - no Gradio progress bar outside a server
    for seed in (1, 2):
        list(run(**(T2V | {"seed": seed}), request=ALICE, progress=quiet))
    mine = spaces.of(ALICE).history.entries()
    assert len(mine) == 2 and all(e.media.parent == spaces.of(ALICE).folder for e in mine)
    assert not list((tmp_path / "out").glob("*.png"))  # nothing in the shared folder
    ids = [e.id for e in mine]

    refresh = fn(demo, "refresh")
    gallery, pick, _ = refresh(None, None, request=BOB)
    assert gallery.value == [] and pick.choices == []
    gallery, pick, _ = refresh(None, None, request=ALICE)
    assert len(gallery.value) == 2 and {i for _, i in pick.choices} == set(ids)

    # Bob cannot delete, reopen or compare Alice's results, by id or by selecting in his gallery.
    with pytest.raises(gr.Error, match="Nothing deleted"):
        fn(demo, "delete_fn")(ids[0], [], request=BOB)
    with pytest.raises(gr.Error, match="gone"):
        fn(demo, "reopen")(ids[0], request=BOB)
    with pytest.raises(gr.Error, match="deleted"):
        fn(demo, "compare_picked")(ids, request=BOB)
    shown = fn(demo, "show")(SimpleNamespace(index=0), request=BOB)
    assert shown[0] is None  # his gallery is empty: index 0 selects nothing
    assert len(spaces.of(ALICE).history.entries()) == 2

    # Alice can.
    assert fn(demo, "compare_picked")(ids, request=ALICE)[1] == ids
    assert fn(demo, "reopen")(ids[0], request=ALICE)[0].selected == "t2v"
    fn(demo, "delete_fn")(ids[0], [], request=ALICE)
    assert [e.id for e in spaces.of(ALICE).history.entries()] == ids[1:]


def test_saved_characters_are_each_users_own(signed_in_studio, tmp_path):
    demo, spaces = signed_in_studio
    image = np.full((64, 64, 3), 255, np.uint8)
    image[20:44, 20:44] = (200, 30, 30)
    spaces.of(ALICE).characters.save("Stripey", image)
    assert fn(demo, "saved_characters")(request=ALICE).choices == [("Stripey", "Stripey")]
    assert fn(demo, "saved_characters")(request=BOB).choices == []
    _, _, message = fn(demo, "on_pick")("Stripey", request=BOB)
    assert "No saved character" in message
    *_, message, _, _ = fn(demo, "on_delete")("Stripey", None, None, request=BOB)
    assert "No saved character" in message and spaces.of(ALICE).characters.get("Stripey") is not None


def test_a_closed_page_takes_its_token_and_stops_its_job(signed_in_studio):
    demo, _ = signed_in_studio
    end_session = fn(demo, "end_session")
    tokens = next(c.cell_contents for c in end_session.__closure__ if isinstance(c.cell_contents, dict))
    mine, theirs = CancelToken(), CancelToken()
    tokens.update({"alice/page-a": mine, "bob/page-b": theirs})
    # A caller not signed in naming Bob's page ends nothing.
    end_session(request=SimpleNamespace(username=None, session_hash="page-b"))
    end_session(request=ALICE)
    assert mine.cancelled and tokens == {"bob/page-b": theirs} and not theirs.cancelled


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, data=None, cookie=None, timeout=5):
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if cookie:
        headers["Cookie"] = cookie
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as f:
            return f.status, f.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


@pytest.mark.slow
def test_routes_that_start_cancel_or_read_work_need_the_sign_in(signed_in_studio, tmp_path):
    demo, spaces = signed_in_studio
    result = spaces.of(ALICE).folder / "r.png"
    result.parent.mkdir(parents=True)
    result.write_bytes(b"\x89PNG")
    demo.queue()
    port = free_port()
    demo.launch(
        server_port=port,
        prevent_thread_lock=True,
        auth=[("alice", "a-pass"), ("bob", "b-pass")],
        allowed_paths=[str(tmp_path / "out")],
        app_kwargs=signin.app_kwargs(),
    )
    base = f"http://127.0.0.1:{port}"
    body = b'{"session_hash": "x", "fn_index": 0, "event_id": "e"}'
    routes = [
        ("/config", None),
        ("/gradio_api/info", None),
        ("/gradio_api/queue/join", b"{}"),
        ("/gradio_api/queue/data?session_hash=x", None),
        ("/gradio_api/cancel", body),
        ("/gradio_api/heartbeat/x", None),
        ("/gradio_api/upload", b"x"),
        (f"/gradio_api/file={result}", None),
        ("/gradio_api/call/run", b"{}"),
        ("/gradio_api/run/predict", b"{}"),
    ]
    try:
        for route, data in routes:
            assert call(base + route, data)[0] == 401, route
        form = urllib.parse.urlencode({"username": "alice", "password": "a-pass"}).encode()
        with urllib.request.urlopen(urllib.request.Request(base + "/login", data=form), timeout=5) as f:
            cookie = "; ".join(c.split(";")[0] for c in f.headers.get_all("set-cookie"))
        assert call(base + f"/gradio_api/file={result}", cookie=cookie)[0] == 200
        assert call(base + "/gradio_api/cancel", body, cookie=cookie)[0] == 200
        assert call(base + "/gradio_api/heartbeat/x", cookie=cookie)[0] == 200  # a stream: its head is enough
    finally:
        demo.close()
