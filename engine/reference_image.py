"""A character's reference image, prepared the way the personalization model expects it.

docs/world.md (Characters): a reference shows the character alone, centred, at half box side
r = 0.3 of the image side, on a plain background of a palette colour. Users upload a PNG, JPEG or
WebP of any size, or a frame of a video. `prepare_reference` finds the character on its plain
background, crops it and scales it so that its box's half side is 0.3 of the output side, centred
on a canvas of its own background colour; anything it cannot read is refused with a
`ReferenceImageError` whose message says what was wrong and what is accepted, never a silent guess.

The box is the character's bounding box, measured to a fraction of a pixel from its anti-aliased
edge. A character that is one of the world's shapes (its area and centroid fit one closely) is
framed by the box the world draws it in instead, so a world render prepared again comes back as it
was: a star's points do not reach the sides or bottom of its box, and its bounding box would frame
it 5% too big and off-centre.

Memory is bounded by `max_side`, not by the upload: limits are checked from the header, JPEGs are
decoded at a reduced scale (`Image.draft`), and every image is reduced so that its long side is at
most `max_side` before it is analysed. Training and evaluation call `prepare_reference_array`, so
they see exactly what the engine does.
"""

from __future__ import annotations

import hashlib
import math
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from .video_io import VideoInputError, to_rgb
from .world.characters import REFERENCE_R
from .world.palette import COLOR_NAMES, PALETTE, nearest_color_index
from .world.render import shape_mask

ACCEPTED = "PNG, JPEG or WebP"
TOLERANCE = 40.0  # RGB distance within which a pixel is the background colour (safe for JPEG noise)
PLAIN_FRACTION = 0.9  # share of the border ring that must be the background colour
SPECK_FRACTION = 0.003  # components smaller than this share of the image are dust, not objects
MIN_CHARACTER_PX = 8  # the character's long side in the upload, at least
MIN_SIDE = 10  # the image's short side, at least
MAX_BYTES = 50_000_000  # the file's size, at most (the engine lowers it to its upload limit)
MAX_DECODE_PIXELS = 50_000_000  # pixels decoded at once (JPEGs count after `draft` reduced them)
CLOSE_PX = 1  # seams this wide (either side) inside a character are closed
CORE_DEPTH = 2  # pixels in from the character's edge that count as its interior
CUT_SHARE = 0.75  # an edge pixel this much covered by the character means it is cut off
_NOISE = 0.1  # coverage below this is noise (JPEG ringing), above 1 - this is full
_EDGE_EPS = 0.1  # coverage below which a pixel next to the character counts as background
_ADVICE = "use a picture of one character alone on a plain, single-colour background"
_ADVICE_SENTENCE = "Use a picture of one character alone on a plain, single-colour background."


class ReferenceImageError(VideoInputError):
    """A reference image the studio cannot use; the message is meant for the user."""


@dataclass(frozen=True)
class PreparedReference:
    image: np.ndarray  # (size, size, 3) uint8: the character alone, centred, r = 0.3, on its background
    background: tuple[int, int, int]  # the background colour found (RGB)
    box: tuple[int, int, int, int]  # the character's bounding box in the upload's pixels (x0, y0, x1, y1), exclusive
    digest: str  # sha256 hex of the uploaded file's bytes (or of the array's bytes)
    summary: str  # for the UI: "640x480 JPEG: character 210x190 px on a plain green background -> ..."
    # The upload as read: upright, RGB (transparency over the background found), long side at most
    # max_side; what the studio shows of the upload (a browser need not read the file itself).
    picture: np.ndarray | None = field(default=None, compare=False, repr=False)


# ---------------------------------------------------------------------------------------------
# Reading a file


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _why(e: Exception, path: Path) -> str:
    """Why Pillow gave up, in one line for the user: never the server's path to the upload."""
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        return e.strerror  # "Permission denied", without the errno and the path
    return " ".join(str(e).replace(str(path), path.name).split()) or type(e).__name__


def _decode(path: Path, max_side: int, max_bytes: int) -> tuple[Image.Image, tuple[int, int], str, str]:
    """The upload upright (EXIF orientation applied), reduced so its long side is at most
    max_side, as RGB or RGBA; its displayed size, its format's name and its digest."""
    name = path.name
    if not path.exists():
        raise ReferenceImageError(
            f"Reference image {name} not found (it may have been moved or deleted). Accepted: {ACCEPTED}."
        )
    if not path.is_file():
        raise ReferenceImageError(f"{name} is not a file. Accepted: a {ACCEPTED} image.")
    n_bytes = path.stat().st_size
    if n_bytes > max_bytes:
        raise ReferenceImageError(
            f"{name} is {n_bytes / 1e6:.3g} MB; a reference image may be at most {max_bytes / 1e6:.3g} MB. "
            f"Accepted: {ACCEPTED}."
        )
    if n_bytes == 0:
        raise ReferenceImageError(f"{name} is empty (0 bytes). Accepted: {ACCEPTED}.")
    not_image = (
        f"{name} is not an image (its contents are not {ACCEPTED} or another picture format). Accepted: {ACCEPTED}."
    )
    too_big = (
        f"{name} has too many pixels to be read safely (over {2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} "
        f"megapixels); the limit is {MAX_DECODE_PIXELS / 1e6:.0f} megapixels. Accepted: {ACCEPTED}."
    )
    with warnings.catch_warnings():
        # Pillow warns about very large images; MAX_DECODE_PIXELS below is the limit here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                img.verify()  # structure and checksums, without decoding the pixels
        except UnidentifiedImageError:
            raise ReferenceImageError(not_image) from None
        except Image.DecompressionBombError:
            raise ReferenceImageError(too_big) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
            raise ReferenceImageError(
                f"{name} is damaged or cut short and cannot be decoded ({_why(e, path)}). Accepted: {ACCEPTED}."
            ) from None
        digest = _file_digest(path)
        try:
            img = Image.open(path)  # verify() leaves the image unusable: open it again
            with img:
                fmt = img.format or "image"
                img.seek(0)  # an animated image: its first frame
                w0, h0 = img.size
                scale = max_side / max(w0, h0)
                if fmt in ("JPEG", "MPO") and scale < 1:
                    # Decode at 1/2, 1/4 or 1/8 scale directly: never the full-size pixels.
                    img.draft("RGB", (max(1, math.ceil(w0 * scale)), max(1, math.ceil(h0 * scale))))
                if img.width * img.height > MAX_DECODE_PIXELS:
                    raise ReferenceImageError(
                        f"{name} is {w0}x{h0} ({w0 * h0 / 1e6:.0f} megapixels); the limit is "
                        f"{MAX_DECODE_PIXELS / 1e6:.0f} megapixels ({ACCEPTED}; a JPEG may be larger)."
                    )
                orientation = img.getexif().get(0x0112, 1)
                shown = (h0, w0) if orientation in (5, 6, 7, 8) else (w0, h0)
                img.load()
                out = to_rgb(img, background=None)  # RGBA when it has transparency: _flatten_alpha picks the fill
                if orientation != 1:
                    out.getexif()[0x0112] = orientation
        except ReferenceImageError:
            raise
        except Image.DecompressionBombError:
            raise ReferenceImageError(too_big) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
            raise ReferenceImageError(
                f"{name} is damaged or cut short and cannot be decoded ({_why(e, path)}). Accepted: {ACCEPTED}."
            ) from None
    if max(out.size) > max_side:
        out.thumbnail((max_side, max_side), Image.Resampling.BOX)  # premultiplied for RGBA
    if orientation != 1:
        out = ImageOps.exif_transpose(out)
    return out, shown, fmt, digest


# ---------------------------------------------------------------------------------------------
# Transparency


def _flatten_alpha(rgba: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    """RGB of an (H, W, 4) image composited over the palette colour farthest from its opaque
    pixels' colours (None when nothing is transparent: the alpha channel is dropped)."""
    alpha = rgba[..., 3].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32)
    if alpha.min() >= 1.0:
        return rgba[..., :3].copy(), None
    opaque = rgb[alpha > 0.5]
    if len(opaque) == 0:
        raise ReferenceImageError("No character found: the image is fully transparent. " + _ADVICE_SENTENCE)
    if len(opaque) > 20_000:
        opaque = opaque[np.random.default_rng(0).choice(len(opaque), 20_000, replace=False)]
    d = np.linalg.norm(opaque[:, None, :] - PALETTE[None], axis=-1)  # (n, 11)
    # The colour whose nearest opaque pixels are farthest (a low percentile ignores stray pixels).
    fill_index = int(np.argmax(np.percentile(d, 1, axis=0)))
    fill = PALETTE[fill_index]
    out = rgb * alpha[..., None] + fill * (1.0 - alpha[..., None])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), tuple(int(v) for v in fill)


# ---------------------------------------------------------------------------------------------
# Finding the character


@dataclass(frozen=True)
class _Found:
    background: tuple[int, int, int]
    box: tuple[int, int, int, int]  # integer bounding box in the analysed image's pixels, exclusive
    centre: tuple[float, float]  # sub-pixel centre (x, y) of the character's box
    half: float  # sub-pixel half side of that box


def _ring(h: int, w: int) -> np.ndarray:
    b = max(1, round(0.02 * min(h, w)))
    ring = np.zeros((h, w), bool)
    ring[:b] = ring[-b:] = True
    ring[:, :b] = ring[:, -b:] = True
    return ring


def _colour_words(c: tuple[int, int, int]) -> str:
    idx, dist = nearest_color_index(np.array(c, np.float32))
    return f"{COLOR_NAMES[int(idx)]} " if float(dist) < TOLERANCE else ""


def _soft_extent(profile: np.ndarray) -> tuple[float, float]:
    """Sub-pixel [lo, hi) of a coverage profile: the outermost pixels count by their coverage."""
    nz = np.flatnonzero(profile > _EDGE_EPS)
    lo_i, hi_i = int(nz[0]), int(nz[-1])
    return lo_i + 1.0 - float(profile[lo_i]), hi_i + float(profile[hi_i])


def _find_character(rgb: np.ndarray, upload_scale: tuple[float, float]) -> _Found:
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ReferenceImageError(
            f"The reference is only {w}x{h} px; it must be at least {MIN_SIDE} px a side, with the character "
            f"at least {MIN_CHARACTER_PX} px across. {_ADVICE_SENTENCE}"
        )
    pix = rgb.astype(np.float32)
    ring = _ring(h, w)
    border = pix[ring]
    median = np.median(border, axis=0)
    inlier = np.linalg.norm(border - median, axis=-1) <= TOLERANCE
    frac = float(inlier.mean())
    not_plain = (
        "The reference has no plain background (its edges vary in colour), so the character cannot be found: "
        f"{_ADVICE} (a photograph will not do)."
    )
    if frac < 0.5:
        raise ReferenceImageError(not_plain)
    bg = np.rint(np.median(border[inlier], axis=0))
    background = (int(bg[0]), int(bg[1]), int(bg[2]))
    dist = np.linalg.norm(pix - bg, axis=-1)
    raw = dist > TOLERANCE
    eight = np.ones((3, 3), bool)
    # Close first: where two pattern colours meet, a pixel blending them can match the background
    # (red and yellow make orange), leaving a one-pixel seam that is not background. Then open,
    # to drop noise and hairlines.
    closed = ndimage.binary_closing(np.pad(raw, 2), structure=eight, iterations=CLOSE_PX)[2:-2, 2:-2]
    opened = ndimage.binary_opening(closed, structure=eight)
    labels, n = ndimage.label(opened, structure=eight)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    big = [i + 1 for i in np.flatnonzero(areas >= SPECK_FRACTION * h * w)]
    raw_labels, _ = ndimage.label(raw, structure=eight)

    def full_mask(label: int) -> np.ndarray:
        ids = np.unique(raw_labels[labels == label])
        return np.isin(raw_labels, ids[ids > 0])

    def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
        ys, xs = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1

    cut_off = (
        "The character touches the edge of the reference (it is cut off): "
        "show all of it, with some plain background around it on every side."
    )
    if frac < PLAIN_FRACTION:
        # Either a busy picture, or a plain one with the character at (or over) its edge: then
        # the edge is plain apart from the character (the cut-off check below decides).
        plain_apart = False
        if len(big) == 1:
            rest = ring & ~ndimage.binary_dilation(full_mask(big[0]), structure=eight)
            ring_in = np.zeros((h, w), bool)
            ring_in[ring] = inlier
            plain_apart = rest.sum() >= 0.5 * ring.sum() and ring_in[rest].mean() >= PLAIN_FRACTION
        if not plain_apart:
            raise ReferenceImageError(not_plain)
    words = _colour_words(background)
    if not big:
        if n:
            b = bbox(labels > 0)
            raise ReferenceImageError(
                f"The only thing on the plain {words}background is {b[2] - b[0]}x{b[3] - b[1]} px, too small to be "
                f"a character: the character must be at least {MIN_CHARACTER_PX} px across and fill a good part "
                "of the picture (crop the picture closer)."
            )
        raise ReferenceImageError(f"No character found: the image is one plain {words}colour. {_ADVICE_SENTENCE}")
    if len(big) > 1:
        raise ReferenceImageError(
            f"Found {len(big)} separate objects; the reference must show one character alone on a plain "
            "background (crop the picture to one of them)."
        )
    # The character's pixels: those near its cleaned shape (thin points the opening removed come
    # back), not the JPEG noise that may touch it further out.
    mask = raw & ndimage.binary_dilation(labels == big[0], structure=eight, iterations=2)
    box = bbox(mask)
    long_side = max((box[2] - box[0]) * upload_scale[0], (box[3] - box[1]) * upload_scale[1])
    if long_side < MIN_CHARACTER_PX:
        raise ReferenceImageError(
            f"The character is only {long_side:.0f} px across, too small: it must be at least "
            f"{MIN_CHARACTER_PX} px across (use a bigger picture of it)."
        )
    # Coverage: 1 inside the character (seams closed, holes filled); at its edge, the share of
    # each pixel it covers, read from the pixel's colour (_edge_coverage); 0 beyond.
    x0, y0 = max(box[0] - 2, 0), max(box[1] - 2, 0)
    x1, y1 = min(box[2] + 2, w), min(box[3] + 2, h)
    m = mask[y0:y1, x0:x1]
    filled = ndimage.binary_fill_holes(m | ndimage.binary_closing(m, structure=eight, iterations=CLOSE_PX))
    # Interior: two pixels in from the edge (a JPEG smears colour a pixel or two either way).
    core = ndimage.binary_erosion(filled, structure=eight, iterations=CORE_DEPTH)
    if not core.any():
        core = filled
    band = ndimage.binary_dilation(filled, structure=eight) & ~core
    cov = _edge_coverage(pix[y0:y1, x0:x1] - bg, core, band, bg)
    # Cut off: the character itself reaches the image's edge, not just the colour a JPEG smears
    # around it (ringing fills the 8 x 8 blocks at a character's edge: a character 2 px from the
    # edge is whole). The edge's pixels are never interior, so `cov` measures them.
    edge = np.zeros_like(m)
    edge[:, 0], edge[:, -1], edge[0, :], edge[-1, :] = x0 == 0, x1 == w, y0 == 0, y1 == h
    if (cov[edge & m] >= CUT_SHARE).any():
        raise ReferenceImageError(cut_off)
    cov = np.clip((cov - _NOISE) / (1.0 - 2 * _NOISE), 0.0, 1.0)  # JPEG ringing is not coverage
    cov[core] = 1.0
    fit = _fit_world_shape(cov)
    if fit is not None:
        cx, cy, half = fit
    else:
        lx, hx = _soft_extent(cov.max(0))
        ly, hy = _soft_extent(cov.max(1))
        cx, cy, half = (lx + hx) / 2.0, (ly + hy) / 2.0, max(hx - lx, hy - ly) / 2.0
    return _Found(background, box, (x0 + cx, y0 + cy), half)


def _two_colours(v_core: np.ndarray, bg: np.ndarray) -> np.ndarray | None:
    """The character's two colours (relative to the background), when it shows two clearly
    different ones: the means of its interior pixels nearest the two commonest palette colours."""
    idx, _ = nearest_color_index(v_core + bg)
    counts = np.bincount(idx, minlength=len(PALETTE))
    first, second = np.argsort(counts)[::-1][:2]
    if counts[second] < 0.05 * len(v_core):
        return None
    c = np.stack([v_core[idx == first].mean(0), v_core[idx == second].mean(0)])
    n1, n2 = (c * c).sum(-1)
    sin2 = 1.0 - float(c[0] @ c[1]) ** 2 / max(float(n1 * n2), 1e-6)
    return c if sin2 > 0.05 else None  # nearly parallel (black, gray, white): not separable


def _edge_coverage(v: np.ndarray, core: np.ndarray, band: np.ndarray, bg: np.ndarray, radius: int = 3) -> np.ndarray:
    """How much of each pixel in `band` the character covers, from its colour v (relative to the
    background). An anti-aliased pixel is a blend of the background and the character's colours
    (both of them where the pattern meets the edge): its share is the sum of their weights. With
    one colour (or two the background cannot tell apart), it is the projection on the colour of
    the nearby interior pixel whose direction from the background matches best."""
    h, w = core.shape
    ys, xs = np.nonzero(band)
    p = v[ys, xs]  # (n, 3)
    cov = np.zeros(core.shape)
    two = _two_colours(v[core], bg) if core.sum() >= 8 else None
    if two is not None:
        c1, c2 = two
        gram = np.array([[c1 @ c1, c1 @ c2], [c1 @ c2, c2 @ c2]], np.float64)
        ab = np.linalg.solve(gram, np.stack([p @ c1, p @ c2]).astype(np.float64))  # (2, n)
        a_only = np.maximum(p @ c1 / max(c1 @ c1, (1.5 * TOLERANCE) ** 2), 0.0)
        b_only = np.maximum(p @ c2 / max(c2 @ c2, (1.5 * TOLERANCE) ** 2), 0.0)
        share = np.where(ab[0] < 0, b_only, np.where(ab[1] < 0, a_only, ab[0] + ab[1]))
        cov[ys, xs] = np.clip(share, 0.0, 1.0)
        return cov
    pn = np.linalg.norm(p, axis=-1)
    best_cos = np.full(len(ys), -np.inf)
    share = np.zeros(len(ys))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            qy, qx = ys + dy, xs + dx
            ok = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
            ok[ok] = core[qy[ok], qx[ok]]
            if not ok.any():
                continue
            c = v[qy[ok], qx[ok]]
            cn2 = np.maximum((c * c).sum(-1), (1.5 * TOLERANCE) ** 2)  # palette colours are >= 80 apart
            dot = (p[ok] * c).sum(-1)
            cos = dot / np.sqrt(cn2) / np.maximum(pn[ok], 1e-6)
            idx = np.flatnonzero(ok)
            better = cos > best_cos[idx]
            best_cos[idx[better]] = cos[better]
            share[idx[better]] = dot[better] / cn2[better]
    far = np.isinf(best_cos)  # no interior pixel nearby (a thin part): the nearest one's distance
    if far.any():
        _, (iy, ix) = ndimage.distance_transform_edt(~core, return_indices=True)
        ref = np.linalg.norm(v[iy[ys[far], xs[far]], ix[ys[far], xs[far]]], axis=-1)
        share[far] = pn[far] / np.maximum(ref, 1.5 * TOLERANCE)
    cov[ys, xs] = np.clip(share, 0.0, 1.0)
    return cov


# The world's shapes (engine.world.render) by half box side r: area / r^2 and how far below the
# box's centre the shape's centroid lies, / r. The star does not fill its box (its points reach
# 0.951 r to either side and 0.809 r down), nor does the triangle's centroid sit at its centre.
_STAR_AREA = 10 * 0.5 * 0.45 * math.sin(math.radians(36))
# The last number is the overlap with the shape at which the character is taken to be one: a
# world star must be recognised (its bounding box would frame it off-centre and 5% too big; JPEG
# noise on a 64 px star brings the overlap down to about 0.84, other shapes reach 0.73 with it);
# other shapes would be framed about the same by their bounding box, so they must match closely.
_WORLD_SHAPES = (
    ("circle", math.pi, 0.0, 0.92),
    ("square", 4.0, 0.0, 0.9),
    ("triangle", 2.0, 1.0 / 3.0, 0.85),
    ("star", _STAR_AREA, 0.0, 0.8),
)


def _fit_world_shape(cov: np.ndarray) -> tuple[float, float, float] | None:
    """(cx, cy, r) of the world shape drawn with coverage `cov`, from its area and centroid, when
    it is one: a reference is centred on that shape's box, so a world reference prepared again
    comes back as it was (a star's bounding box is not its box). None for any other shape, which
    is then framed by its bounding box."""
    area = float(cov.sum())
    if area < 16:
        return None
    py, px = np.mgrid[: cov.shape[0], : cov.shape[1]] + 0.5
    mx, my = float((cov * px).sum()) / area, float((cov * py).sum()) / area
    k = max(1, math.ceil(max(cov.shape) / 256))  # compare on at most 256 x 256 points
    solid, px, py = cov[::k, ::k] >= 0.5, px[::k, ::k], py[::k, ::k]
    best = None
    for shape, area_k, below, enough in _WORLD_SHAPES:
        r = math.sqrt(area / area_k)
        cx, cy = mx, my - below * r
        drawn = shape_mask(shape, px, py, cx, cy, r)
        iou = float((drawn & solid).sum() / max((drawn | solid).sum(), 1))
        if iou >= enough and (best is None or iou > best[0]):
            best = (iou, cx, cy, r)
    return None if best is None else best[1:]


# ---------------------------------------------------------------------------------------------
# Cropping and scaling


def _crop_scale(rgb: np.ndarray, found: _Found, size: int) -> np.ndarray:
    """The square of side half / REFERENCE_R around the centre, padded with the background colour
    where it leaves the image, resized to size x size."""
    h, w = rgb.shape[:2]
    side = found.half / REFERENCE_R
    cx, cy = found.centre
    bx0, by0 = cx - side / 2.0, cy - side / 2.0
    # A canvas of the background colour holding the square, with the image's part pasted in.
    ox, oy = math.floor(bx0) - 1, math.floor(by0) - 1
    cw, ch = math.ceil(bx0 + side) + 1 - ox, math.ceil(by0 + side) + 1 - oy
    canvas = np.empty((ch, cw, 3), np.uint8)
    canvas[:] = found.background
    sx0, sy0 = max(ox, 0), max(oy, 0)
    sx1, sy1 = min(ox + cw, w), min(oy + ch, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - oy : sy1 - oy, sx0 - ox : sx1 - ox] = rgb[sy0:sy1, sx0:sx1]
    resample = Image.Resampling.BOX if side >= size else Image.Resampling.BICUBIC
    box = (bx0 - ox, by0 - oy, bx0 - ox + side, by0 - oy + side)
    out = Image.fromarray(canvas).resize((size, size), resample, box=box)
    return np.asarray(out, dtype=np.uint8).copy()


def _already_prepared(rgb: np.ndarray, found: _Found, size: int, tolerance: float = 0.75) -> bool:
    """size x size, the character centred at r = REFERENCE_R to within `tolerance` pixels."""
    if rgb.shape[:2] != (size, size):
        return False
    cx, cy = found.centre
    return (
        abs(cx - size / 2) <= tolerance
        and abs(cy - size / 2) <= tolerance
        and abs(found.half - REFERENCE_R * size) <= tolerance
    )


def _prepare(
    rgb: np.ndarray,
    size: int,
    upload_size: tuple[int, int],
    what: str,
    digest: str,
    transparent_fill: tuple[int, int, int] | None,
) -> PreparedReference:
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    h, w = rgb.shape[:2]
    scale = (upload_size[0] / w, upload_size[1] / h)
    found = _find_character(rgb, scale)
    if _already_prepared(rgb, found, size):
        # A prepared reference (a result's NAME.reference.png) is kept exactly: resampling it
        # again would move its pixels, and reopening a result would no longer reproduce it.
        image = rgb.copy()
    else:
        image = _crop_scale(rgb, found, size)
    b = found.box
    box = (
        math.floor(b[0] * scale[0]),
        math.floor(b[1] * scale[1]),
        min(math.ceil(b[2] * scale[0]), upload_size[0]),
        min(math.ceil(b[3] * scale[1]), upload_size[1]),
    )
    if transparent_fill is not None:
        where = f"a transparent background (filled with {_colour_words(found.background) or 'a plain colour '}"
        where = where.rstrip() + ")"
    else:
        where = f"a plain {_colour_words(found.background)}background"
    summary = (
        f"{upload_size[0]}x{upload_size[1]} {what}: character {box[2] - box[0]}x{box[3] - box[1]} px on {where} "
        f"-> centred, r = {REFERENCE_R:g}, {size}x{size}"
    )
    return PreparedReference(image, found.background, box, digest, summary, rgb)


def prepare_reference(
    path: str | Path, size: int = 64, max_side: int = 1024, max_bytes: int = MAX_BYTES
) -> PreparedReference:
    """Read an uploaded reference image (PNG, JPEG, WebP, or anything Pillow reads: the first frame
    of an animation) and prepare it: the character alone, centred, r = 0.3, size x size, on its
    background colour. Raises ReferenceImageError, with a message for the user, on anything unusable."""
    path = Path(path)
    img, shown, fmt, digest = _decode(path, max_side, max_bytes)
    arr = np.asarray(img)
    fill = None
    if arr.shape[-1] == 4:
        arr, fill = _flatten_alpha(arr)
    return _prepare(arr, size, shown, fmt, digest, fill)


def prepare_reference_array(rgb: np.ndarray, size: int = 64) -> PreparedReference:
    """The same for pixels already in memory (a video frame, a rendered reference): (H, W, 3) uint8,
    or (H, W, 4) with alpha. Training and evaluation use this, so they see what the engine does."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4) or rgb.dtype != np.uint8:
        raise ReferenceImageError(
            f"A reference array must be (H, W, 3) uint8 RGB (or (H, W, 4) with alpha); got {rgb.shape} {rgb.dtype}."
        )
    rgb = np.ascontiguousarray(rgb)
    digest = hashlib.sha256(rgb.tobytes()).hexdigest()
    fill = None
    if rgb.shape[-1] == 4:
        rgb, fill = _flatten_alpha(rgb)
    return _prepare(rgb, size, (rgb.shape[1], rgb.shape[0]), "array", digest, fill)
