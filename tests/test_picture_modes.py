"""Issue 28, items 1 and 2: every picture mode Pillow reads becomes the same 8-bit RGB in every
image path (video_io.to_rgb: Edit, Upscale and Animate uploads, the Personalize reference, the
command line), and a bad reference gets the engine's one-line message, without a server path,
from the command line and from the Personalize tab's handler alike.

Each picture is written with Pillow in its mode: a mid-grey (or coloured) square on a darker field,
so the expected RGB of every pixel is known. Real files, the tiny model, on the CPU in seconds."""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio.data_classes import FileData
from PIL import Image

from engine.__main__ import main
from engine.engine import Engine
from engine.reference_image import ReferenceImageError, prepare_reference
from engine.video_io import VideoInputError, read_image, to_rgb, write_png
from engine.world.characters import Character
from studio import build_ui
from studio.characters import CharacterStore
from studio.personalize_tab import PersonalizeHandlers

FIELD, SQUARE = 60, 128  # the darker field and the mid-grey square, 8-bit
RED = (200, 30, 90)  # a coloured square


def _pattern(field, square, shape=(32, 32), dtype=np.uint8) -> np.ndarray:
    """A square (rows and columns 8..23) of `square` on a field of `field`: scalars or tuples."""
    field, square = np.asarray(field, dtype), np.asarray(square, dtype)
    out = np.empty((*shape, *field.shape), dtype)
    out[:] = field
    out[8:24, 8:24] = square
    return out


def _over_white(rgb, alpha: int) -> np.ndarray:
    return np.rint(np.asarray(rgb, float) * alpha / 255 + 255 * (1 - alpha / 255))


def _p(transparent: bool) -> Image.Image:
    im = Image.fromarray(_pattern(0, 1)).convert("P")  # indices 0 (the field) and 1 (the square)
    im.putpalette([FIELD, FIELD, FIELD, *RED] + [0, 0, 0] * 254)
    if transparent:
        im.info["transparency"] = 1  # the square's index: a tRNS chunk
    return im


def _16bit(mode: str, values: np.ndarray) -> Image.Image:
    dtype = ">u2" if mode == "I;16B" else "<u2"
    return Image.frombytes(mode, values.shape[::-1], values.astype(dtype).tobytes())


# mode: (the picture, the file it is written as, what to_rgb gives: (field RGB, square RGB))
MODES = {
    "1": (lambda: Image.fromarray(_pattern(0, 255)).convert("1"), "png", ((0,) * 3, (255,) * 3)),
    "L": (lambda: Image.fromarray(_pattern(FIELD, SQUARE)), "png", ((FIELD,) * 3, (SQUARE,) * 3)),
    "LA": (  # the square half transparent: over white
        lambda: Image.fromarray(_pattern((FIELD, 255), (SQUARE, 128)), "LA"),
        "png",
        ((FIELD,) * 3, tuple(_over_white((SQUARE,) * 3, 128))),
    ),
    "P": (lambda: _p(False), "png", ((FIELD,) * 3, RED)),
    "P transparent": (lambda: _p(True), "png", ((FIELD,) * 3, (255,) * 3)),  # the square's colour is clear
    "RGB": (lambda: Image.fromarray(_pattern((FIELD, 70, 80), RED)), "png", ((FIELD, 70, 80), RED)),
    "RGBA": (
        lambda: Image.fromarray(_pattern((FIELD, 70, 80, 255), (*RED, 100))),
        "png",
        ((FIELD, 70, 80), tuple(_over_white(RED, 100))),
    ),
    "CMYK": (  # the field all black ink (K), the square cyan, magenta and yellow
        lambda: Image.fromarray(_pattern((0, 0, 0, 255 - FIELD), tuple(255 - v for v in RED) + (0,)), "CMYK"),
        "tif",
        ((FIELD,) * 3, RED),
    ),
    # 16-bit grey: v / 257 (40000 is 155.6 levels: 156); Pillow's own conversion made these white.
    "I;16": (lambda: _16bit("I;16", _pattern(FIELD * 257, 40000, dtype=np.uint16)), "png", ((FIELD,) * 3, (156,) * 3)),
    "I;16B": (
        lambda: _16bit("I;16B", _pattern(FIELD * 257, 40000, dtype=np.uint16)),
        "tif",
        ((FIELD,) * 3, (156,) * 3),
    ),
    # 32-bit integer grey: 16-bit values scale as 16-bit, 8-bit values stay, 32-bit ones stretch 0..max.
    "I 16-bit": (
        lambda: Image.fromarray(_pattern(FIELD * 257, 40000, dtype=np.int32)),
        "tif",
        ((FIELD,) * 3, (156,) * 3),
    ),
    "I 8-bit": (lambda: Image.fromarray(_pattern(FIELD, SQUARE, dtype=np.int32)), "tif", ((FIELD,) * 3, (SQUARE,) * 3)),
    "I 32-bit": (
        lambda: Image.fromarray(_pattern(1_000_000, 4_000_000, dtype=np.int32)),
        "tif",
        ((64,) * 3, (255,) * 3),
    ),
    # Float grey: 0.0..1.0 is black to white.
    "F": (
        lambda: Image.fromarray(_pattern(FIELD / 255, SQUARE / 255, dtype=np.float32)),
        "tif",
        ((FIELD,) * 3, (SQUARE,) * 3),
    ),
}


def _write(tmp_path: Path, kind: str) -> tuple[Path, np.ndarray]:
    """The picture of `kind` as a file, and the RGB to_rgb should read from it."""
    make, ext, (field, square) = MODES[kind]
    image = make()
    path = tmp_path / f"{kind.replace(' ', '-').replace(';', '')}.{ext}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Pillow 12 on some modes' PNG writing
        image.save(path, transparency=image.info["transparency"]) if "transparency" in image.info else image.save(path)
    return path, _pattern(field, square)


@pytest.mark.parametrize("kind", list(MODES))
def test_every_mode_reads_as_the_rgb_it_shows(tmp_path, kind):
    path, want = _write(tmp_path, kind)
    with Image.open(path) as img:
        mode = img.mode
        got = np.asarray(to_rgb(img))
    assert mode == kind.split()[0], mode  # the file keeps its mode
    assert got.shape == (32, 32, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want).max() <= 1, (got[0, 0], got[16, 16], want[16, 16])
    if path.suffix == ".png":  # the uploads' reader (Edit, Upscale, Animate) is the same conversion
        assert np.array_equal(read_image(path), got)


def test_transparency_is_kept_for_the_reference_and_composited_for_the_uploads(tmp_path):
    rgba = Image.fromarray(_pattern((0, 0, 0, 0), (*RED, 255)))  # the square alone, on nothing
    assert to_rgb(rgba, background=None).mode == "RGBA"  # the reference picks its own fill
    assert np.array_equal(np.asarray(to_rgb(rgba, background=(0, 0, 255)))[0, 0], (0, 0, 255))
    assert to_rgb(Image.fromarray(_pattern(FIELD, SQUARE)), background=None).mode == "RGB"  # no alpha: RGB
    # La (premultiplied) has no Pillow conversion to RGBA of its own.
    la = Image.fromarray(_pattern((FIELD, 255), (SQUARE, 255)), "LA").convert("La")
    assert np.array_equal(np.asarray(to_rgb(la))[16, 16], (SQUARE,) * 3)
    # An Edit upload of the transparent picture is the same picture on white.
    png = tmp_path / "clear.png"
    rgba.save(png)
    assert np.array_equal(read_image(png), _pattern((255,) * 3, RED))


# -- the same picture in 8 and 16 bits, through Edit and the Personalize reference ----------------
@pytest.fixture()
def engine(tiny_model_dir, tmp_path):
    return Engine(tiny_model_dir, device="cpu", cache_dir=None, outputs_dir=tmp_path / "out")


def _grey_character(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A grey striped star on black as an 8-bit and a 16-bit greyscale PNG (v * 257)."""
    grey = np.asarray(
        Image.fromarray(Character("star", "white", "gray", "hstripes").reference("black", 96)).convert("L")
    )
    eight = tmp_path / "star8.png"
    Image.fromarray(grey).save(eight)
    sixteen = tmp_path / "star16.png"
    _16bit("I;16", grey.astype(np.uint16) * 257).save(sixteen)
    with Image.open(sixteen) as img:
        assert img.mode == "I;16"
    return eight, sixteen, grey


def test_8_and_16_bit_pictures_give_the_same_pixels_in_edit_and_personalize(engine, tmp_path):
    eight, sixteen, grey = _grey_character(tmp_path)
    # Edit (and Upscale) read an image through the engine's normalisation.
    edit8, edit16 = (engine.inspect("edit", str(p)) for p in (eight, sixteen))
    assert np.array_equal(edit8.frames, edit16.frames)
    up8, up16 = (engine.inspect("upscale", str(p)) for p in (eight, sixteen))  # at its own size
    assert np.array_equal(up8.frames, up16.frames) and np.array_equal(up16.frames[0, ..., 0], grey)
    assert np.array_equal(read_image(sixteen), np.repeat(grey[..., None], 3, -1))  # not 120 levels brighter
    # The Personalize reference: the 16-bit one is found on its black background, not refused as white.
    ref8, ref16 = (engine.inspect("personalize", str(p)) for p in (eight, sixteen))
    assert np.array_equal(ref8.frames, ref16.frames) and ref8.frames.shape == (1, 64, 64, 3)
    assert "plain black background" in ref16.summary, ref16.summary
    assert np.array_equal(ref8.info["picture"], ref16.info["picture"])  # what the tab shows of the upload
    # The tab's handler shows both the same way.
    h = PersonalizeHandlers(engine, {}, tmp_path / "work", CharacterStore(tmp_path / "characters"))
    got8, got16 = h.load(str(eight)), h.load(str(sixteen))
    assert "view" in got16 and np.array_equal(got8["image"], got16["image"])
    assert np.array_equal(read_image(got16["picture"]), np.repeat(grey[..., None], 3, -1))  # 96 px: kept as it is


# -- bad references ------------------------------------------------------------------------------
def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says width x height (8-bit grey) with a few rows of data: a
    decompression bomb's shape, a few hundred bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def _truncated(path: Path) -> Path:
    data = write_png(path, Character("star", "red", "cyan", "hstripes").reference("white", 128)).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _bytes(data: bytes):
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return make


BAD = {  # kind: (make, what the message says)
    "not an image": (_bytes(b"notes, not a picture\n" * 20), "is not an image"),
    "random bytes": (_bytes(np.random.default_rng(0).bytes(4000)), "is not an image"),
    "zero bytes": (_bytes(b""), r"is empty \(0 bytes\)"),
    "truncated PNG": (_truncated, "is damaged or cut short"),
    "decompression bomb": (lambda p: _png_header(p, 20000, 20000), "has too many pixels to be read safely"),
    "too many pixels": (lambda p: _png_header(p, 10000, 10000), "is 10000x10000 \\(100 megapixels\\); the limit is 50"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_reference_gets_one_line_without_a_path_from_the_cli_and_the_tab(
    engine, tiny_model_dir, tmp_path, capsys, kind
):
    make, words = BAD[kind]
    (tmp_path / "upload").mkdir()
    bad = make(tmp_path / "upload" / "bad.png")
    with pytest.raises(ReferenceImageError) as e:
        prepare_reference(bad)
    message = str(e.value)
    assert "\n" not in message and message.startswith("bad.png "), message
    assert str(tmp_path) not in message and "/" not in message and "Errno" not in message, message
    assert re.search(words, message), message
    # The command line says the same, as one line, and exits 2.
    argv = ["personalize", "--reference", str(bad), "--prompt", "the character moving right", "--frames", "1"]
    argv += ["--steps", "1", "--model", str(tiny_model_dir), "--device", "cpu", "--cache-dir", ""]
    assert main([*argv, "--out", str(tmp_path / "out.png")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    # The Personalize tab's handler: shown under the reference when chosen, and again on Generate.
    h = PersonalizeHandlers(engine, {}, tmp_path / "work", CharacterStore(tmp_path / "characters"))
    assert h.load(str(bad)) == {"error": message}
    assert h.reference_line(h.load(str(bad))) == f"**{message}**"
    events = list(h.run(reference=str(bad), prompt="the character moving right", seed=0, steps=1, frames=1))
    assert len(events) == 1 and events[0]["error"] == message and not events[0]["cancelled"], events
    assert not (tmp_path / "out.png").exists() and not list((tmp_path / "out").rglob("*.png"))


def test_the_edit_path_refuses_a_decompression_bomb_in_one_line(tmp_path):
    bomb = _png_header(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(VideoInputError) as e:
        read_image(bomb)
    message = str(e.value)
    assert message.startswith("bomb.png has too many pixels to be read safely") and "4096 px a side" in message
    assert "\n" not in message and str(tmp_path) not in message


def test_the_page_takes_the_reference_as_a_file_and_shows_the_engines_line(engine, tmp_path):
    """Gradio's Image opened the upload with Pillow before any handler ran (a bad one got Gradio's
    error, naming the server's path): the reference is now a file, which Gradio only passes on."""
    demo = build_ui(engine, tmp_path / "out")
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    reference, picture = blocks["pt-reference"], blocks["pt-picture"]
    assert isinstance(reference, gr.File) and reference.type == "filepath"
    (on_reference,) = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_reference"]
    assert on_reference.inputs[0] is reference and picture in on_reference.outputs
    (tmp_path / "upload").mkdir()
    eight, sixteen, grey = _grey_character(tmp_path / "upload")
    for kind in ("random bytes", "decompression bomb", "truncated PNG"):
        bad = BAD[kind][0](tmp_path / "upload" / "bad.png")
        given = reference.preprocess(FileData(path=str(bad), orig_name="bad.png"))  # nothing opened: no error
        assert str(given) == str(bad)
        loaded, shown, prepared, line, _pick, status = on_reference.fn(given, None)
        message = prepare_reference_message(bad)
        assert line == f"**{message}**" and loaded == {"error": message} and status == "Choose another reference."
        assert shown.value is None and prepared.value is None
    # A good 16-bit one: shown as it was read (its own grey levels), and as the model sees it.
    loaded, shown, prepared, line, _pick, status = on_reference.fn(str(sixteen), None)
    assert status == "Ready." and line.startswith("As the model sees it: 96x96 PNG: character")
    assert np.array_equal(read_image(shown.value["path"]), np.repeat(grey[..., None], 3, -1))


def prepare_reference_message(path: Path) -> str:
    with pytest.raises(ReferenceImageError) as e:
        prepare_reference(path)
    return str(e.value)
