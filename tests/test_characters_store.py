"""Saved characters (studio/characters.py): a folder per character that outlives the store object."""

import json
from pathlib import Path

import numpy as np
import pytest

from engine.video_io import read_image, write_png
from studio.characters import MAX_NAME, CharacterNameError, CharacterStore, clean_name, folder_name


def reference(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)


@pytest.fixture()
def upload(tmp_path) -> Path:
    return write_png(tmp_path / "upload" / "my star.png", reference(9))


def test_save_list_after_a_restart_and_pick(tmp_path, upload):
    store = CharacterStore(tmp_path / "characters")
    assert store.list() == [] and store.get("Stripey") is None  # no folder yet: an empty list
    saved = store.save("  Stripey  ", reference(1), upload, "ab" * 32, "640x480 PNG: ...")
    assert saved.name == "Stripey" and saved.sha256 == "ab" * 32 and saved.created
    assert np.array_equal(read_image(saved.reference), reference(1))
    # The original upload is kept beside it, and is what the engine is given again.
    assert saved.original is not None and saved.original.read_bytes() == upload.read_bytes()
    assert saved.image == saved.original and saved.original.suffix == ".png"
    store.save("anna", reference(2))  # no original kept: the prepared reference stands in
    # A new store over the same folder (a restart) sees both, by name.
    again = CharacterStore(tmp_path / "characters")
    assert again.names() == ["anna", "Stripey"]
    picked = again.get("stripey")  # case does not matter
    assert picked.name == "Stripey" and picked.summary == "640x480 PNG: ..."
    assert again.get("anna").image == again.get("anna").reference
    meta = json.loads((picked.folder / "character.json").read_text())
    assert {"name", "sha256", "created"} <= set(meta) and meta["original_name"] == "my star.png"
    # Half-written folders and unreadable ones are not characters.
    (tmp_path / "characters" / ".part-123").mkdir()
    (tmp_path / "characters" / "junk").mkdir()
    (tmp_path / "characters" / "junk" / "character.json").write_text("{not json")
    assert again.names() == ["anna", "Stripey"]


def test_delete_keeps_results_made_with_it(tmp_path, upload):
    outputs = tmp_path / "outputs"
    store = CharacterStore(outputs / "characters")
    saved = store.save("Stripey", reference(1), upload, "ab" * 32)
    result_ref = write_png(outputs / "20260101-personalize-0.reference.png", reference(1))
    (outputs / "20260101-personalize-0.json").write_text("{}")
    assert store.delete("STRIPEY") and store.names() == [] and not saved.folder.exists()
    assert result_ref.is_file() and (outputs / "20260101-personalize-0.json").is_file()
    assert upload.is_file()  # the upload it was made from is not the store's to delete
    assert not store.delete("Stripey")  # gone already: nothing to do


def test_bad_names_are_refused(tmp_path):
    store = CharacterStore(tmp_path / "characters")
    for bad, words in (
        ("", "name first"),
        ("   ", "name first"),
        ("x" * (MAX_NAME + 1), "at most 40"),
        ("a\x00b", "control"),
    ):
        with pytest.raises(CharacterNameError, match=words):
            store.save(bad, reference())
    assert clean_name("x" * MAX_NAME) == "x" * MAX_NAME and clean_name(" two   words ") == "two words"
    store.save("Stripey", reference(1))
    with pytest.raises(CharacterNameError, match="already saved"):
        store.save("stripey ", reference(2))
    assert np.array_equal(read_image(store.get("Stripey").reference), reference(1))  # untouched
    # Replacing is an explicit choice; the name as typed the second time is kept.
    store.save("STRIPEY", reference(2), replace=True)
    assert store.names() == ["STRIPEY"] and np.array_equal(read_image(store.get("stripey").reference), reference(2))
    assert len(list((tmp_path / "characters").iterdir())) == 1


def test_names_never_leave_the_folder(tmp_path):
    root = tmp_path / "characters"
    store = CharacterStore(root)
    names = ["../../evil", "/etc/passwd", "..", ".hidden", "a/b\\c", "C:\\x", "日本のキャラ", "Stripey"]
    for name in names:
        saved = store.save(name, reference())
        assert saved.folder.parent == root and saved.name == name
        assert not saved.folder.name.startswith(".") and "/" not in saved.folder.name and ".." not in saved.folder.name
    assert sorted(store.names()) == sorted(names)
    assert {p.name for p in tmp_path.iterdir()} == {"characters"}  # nothing written outside it
    assert folder_name("../../evil") != folder_name("evil") and folder_name("日本のキャラ").startswith("character-")
    for name in names:
        assert store.delete(name)
    assert list(root.iterdir()) == [] and tmp_path.is_dir()


def test_the_image_must_be_a_picture(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        CharacterStore(tmp_path / "c").save("x", np.zeros((64, 64), np.float32))
    assert CharacterStore(tmp_path / "c").names() == []
