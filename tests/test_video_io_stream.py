"""The streaming upload normaliser (normalize_video) and audio carried over by write_video.

Clips are made here with PyAV (lossless where a test checks exact pixels) so every check is on
real numbers: which corner a patch lands in, which source frame each output frame shows, how
long the carried audio lasts and whether its packets are the source's own bytes."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from engine.video_io import ACCEPTED, VideoInputError, VideoLimits, normalize_video, read_metadata, write_video

RED, GREEN, BLUE = (230, 40, 40), (40, 200, 60), (40, 60, 230)


def encode(path, frames, rate=8, times=None, rotation=0, codec="libx264", pix_fmt="yuv420p", audio=None):
    """Write `frames` (T, H, W, 3) to `path`; `times` (seconds) make it variable frame rate,
    `rotation` stores a display rotation as phones do, `audio` = (codec, seconds) adds a 440 Hz tone."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = pix_fmt
        if codec == "libx264":
            s.options = {"qp": "0", "preset": "ultrafast"}  # lossless luma: exact values survive
        if times is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            s.set_display_rotation(rotation)
        a = _add_tone(c, *audio) if audio else None
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if times is not None:
                f.pts, f.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            a()
    return path


def _add_tone(c, codec: str, seconds: float, rate: int = 48000):
    """Add an audio stream to `c`; returns the function that encodes the tone into it."""
    a = c.add_stream(codec, rate=rate)
    a.layout = "stereo"
    if "fltp" in {f.name for f in a.codec_context.codec.audio_formats or ()}:
        a.format = "fltp"  # LAME would take 32-bit integers first

    def write() -> None:
        x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * rate)) / rate)).astype(np.float32)
        step = 960
        for k in range(0, len(x), step):
            chunk = np.stack([x[k : k + step]] * 2)
            fmt = a.codec_context.format
            data = chunk if fmt.is_planar else chunk.T.reshape(1, -1)  # packed: channels interleaved
            data = data if fmt.name.startswith("flt") else (data * 32767).astype(np.int16)
            fr = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
            fr.sample_rate, fr.pts, fr.time_base = rate, k, Fraction(1, rate)
            for p in a.encode(fr):
                c.mux(p)
        for p in a.encode():
            c.mux(p)

    return write


def left(frame: av.AudioFrame) -> np.ndarray:
    """The first channel of a decoded audio frame, planar or packed."""
    x = frame.to_ndarray()
    return x[0] if frame.format.is_planar else x.reshape(frame.samples, -1)[:, 0]


def solid(t: int, h: int, w: int, colour) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, np.uint8), (t, h, w, 3)).copy()


@pytest.mark.parametrize("degrees,corner", [(90, (1, 0)), (-90, (0, 1)), (180, (1, 1))])
def test_rotation_is_applied_before_the_square_crop(tmp_path, degrees, corner):
    """A red patch at the top-left of the stored frame's centre square ends in the corner a
    player shows it in (bottom-left for 90 deg counter-clockwise), and the info is upright."""
    img = np.zeros((32, 64, 3), np.uint8)
    img[:8, 16:24] = RED  # the centre square of a 64x32 frame is columns 16..48
    path = encode(tmp_path / "phone.mp4", np.stack([img] * 4), rotation=degrees)
    clip = normalize_video(path, size=16)
    assert clip.frames.shape == (4, 16, 16, 3)
    assert (clip.info["width"], clip.info["height"]) == ((64, 32) if degrees == 180 else (32, 64))
    assert clip.info["rotation"] == degrees % 360 and f"turned {degrees % 360} deg" in clip.summary
    red = clip.frames[0, :, :, 0] > 120
    assert red.sum() == 16  # the 8x8 patch, area-halved to 4x4
    cy, cx = np.argwhere(red).mean(0)
    assert (cy > 8, cx > 8) == tuple(bool(c) for c in corner)


def test_variable_frame_rate_goes_by_timestamps(tmp_path):
    # Four frames on screen from 0, .1, .4 and .5 s; the stream lasts 0.6 s.
    frames = np.stack([solid(1, 16, 16, (40 * (i + 1),) * 3)[0] for i in range(4)])
    path = encode(tmp_path / "vfr.mp4", frames, rate=10, times=[0.0, 0.1, 0.4, 0.5])
    which = {fps: [round(f.mean() / 40) for f in normalize_video(path, 16, fps).frames] for fps in (8, 10, 20)}
    # Output frame k shows the last source frame whose time <= k / fps; floor(0.6 * fps) frames.
    assert which[8] == [1, 2, 2, 2]  # ticks 0, .125, .25, .375
    assert which[10] == [1, 2, 2, 2, 3, 4]  # ticks on the frames' own times keep them
    assert which[20] == [1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 4, 4]


def test_odd_non_square_frame_keeps_the_exact_centre_square(tmp_path):
    """97x61, lossless (FFV1 in RGB): red and blue margins outside the centre 61x61 square
    never reach the output, and at its own size the output is the crop, pixel for pixel."""
    rng = np.random.default_rng(0)
    img = solid(1, 61, 97, GREEN)[0]
    img[:, :18], img[:, 79:] = RED, BLUE
    img[:, 18:79] = rng.integers(0, 256, (61, 61, 3), dtype=np.uint8)
    path = encode(tmp_path / "odd.mkv", np.stack([img] * 3), codec="ffv1", pix_fmt="bgr0")
    same = normalize_video(path, size=61)
    assert np.array_equal(same.frames[0], img[:, 18:79])
    assert same.info["width"] == 97 and same.info["height"] == 61 and same.frames.shape == (3, 61, 61, 3)
    img[:, 18:79] = GREEN
    small = normalize_video(encode(tmp_path / "odd2.mkv", np.stack([img] * 3), codec="ffv1", pix_fmt="bgr0"), 16)
    assert np.array_equal(np.unique(small.frames.reshape(-1, 3), axis=0), [GREEN])


def test_long_clip_streams_to_the_right_frames(tmp_path):
    """60 s at 30 fps (1800 frames): 480 frames at 8 fps, each showing the second it belongs to."""
    seconds = np.repeat(np.arange(60), 30)
    frames = np.repeat((seconds * 4).astype(np.uint8)[:, None, None, None], 16, 1).repeat(16, 2).repeat(3, 3)
    path = encode(tmp_path / "long.mp4", frames, rate=30)
    clip = normalize_video(path, size=8)
    assert clip.frames.shape == (480, 8, 8, 3) and clip.fps == 8.0
    shown = np.round(clip.frames.reshape(480, -1).mean(1) / 4)
    assert np.array_equal(shown, np.arange(480) // 8)
    assert clip.summary == "16x16 30 fps 60.0 s -> centre square, 8x8, 8 fps, 480 frames"
    assert clip.info["frames"] == 1800 and clip.info["duration"] == pytest.approx(60.0)


def test_digest_is_content_not_name(tmp_path):
    a = encode(tmp_path / "a.mp4", solid(4, 16, 16, RED))
    b = tmp_path / "renamed.mov"
    b.write_bytes(a.read_bytes())
    c = encode(tmp_path / "c.mp4", solid(4, 16, 16, BLUE))
    da, db, dc = (normalize_video(p, 8).digest for p in (a, b, c))
    assert da == db != dc and len(da) == 16 and int(da, 16) >= 0


def test_still_image_is_upright_by_exif_and_one_frame(tmp_path):
    """A JPEG stored landscape with EXIF orientation 6 (turn 90 deg clockwise to show) is read
    portrait: the patch at the top-left of the stored centre square shows at the top-right."""
    img = solid(1, 20, 40, (0, 0, 0))[0]
    img[:5, 10:15] = RED
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    Image.fromarray(img).save(path, quality=95, exif=exif)
    clip = normalize_video(path, size=20)
    assert clip.frames.shape == (1, 20, 20, 3) and clip.info["frames"] == 1
    assert (clip.info["width"], clip.info["height"], clip.info["rotation"]) == (20, 40, 270)
    cy, cx = np.argwhere(clip.frames[0, :, :, 0] > 120).mean(0)
    assert cy < 10 and cx > 10
    assert clip.summary == "20x40 image -> centre square, 20x20, 1 frame"


def test_gif_goes_through_pyav(tmp_path):
    path = tmp_path / "anim.gif"
    imgs = [Image.fromarray(solid(1, 24, 32, c)[0]) for c in (RED, GREEN, BLUE)]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=250, loop=0)
    clip = normalize_video(path, size=8, fps=8)
    assert clip.frames.shape == (6, 8, 8, 3)  # 0.75 s at 8 fps
    got = [int(np.argmax(f.reshape(-1, 3).mean(0))) for f in clip.frames]  # dominant channel
    assert got == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    "codec,container,expect,copied",
    [
        ("aac", "mp4", "aac", True),
        ("libopus", "webm", "opus", True),
        ("libmp3lame", "mkv", "mp3", True),
        ("pcm_s16le", "mkv", "aac", False),
        ("flac", "mkv", "aac", False),
    ],
)
def test_write_video_carries_the_source_audio(tmp_path, codec, container, expect, copied):
    """AAC, Opus and MP3 are copied packet for packet; PCM and FLAC (not for MP4 in browsers)
    become AAC. The audio is cut to the 1 s result, and the result stays a faststart H.264 MP4
    with its metadata."""
    vcodec = "libvpx" if container == "webm" else "libx264"
    src = encode(tmp_path / f"src.{container}", solid(16, 16, 16, RED), codec=vcodec, audio=(codec, 2.0))
    out = write_video(tmp_path / "out.mp4", solid(8, 16, 16, GREEN), 8.0, {"seed": 1}, audio_from=src)
    assert read_metadata(out) == {"seed": 1} and not (tmp_path / "out.mp4.part").exists()
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        a = c.streams.audio[0]
        assert a.codec_context.codec.canonical_name == expect
        assert float(a.duration * a.time_base) == pytest.approx(1.0, abs=0.05)
        rate = a.rate
        sound = np.concatenate([left(f) for f in c.decode(a)])
    with av.open(str(out)) as c:
        packets = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
    middle = sound[rate // 10 : -rate // 10]  # away from encoder warm-up and the cut
    crossings = np.count_nonzero(np.diff(np.sign(middle)) != 0) / (len(middle) / rate)
    assert crossings == pytest.approx(880, rel=0.05)  # still the 440 Hz tone
    with av.open(str(src)) as c:
        original = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
    assert len(packets) > 10
    assert (packets[5:10] == original[5:10]) == copied  # copied: the source's own packets, byte for byte


def test_write_video_without_an_audio_track_in_the_source(tmp_path):
    src = encode(tmp_path / "silent.mp4", solid(4, 16, 16, RED))
    out = write_video(tmp_path / "out.mp4", solid(4, 16, 16, RED), 8.0, audio_from=src)
    with av.open(str(out)) as c:
        assert not c.streams.audio and len(c.streams.video) == 1


def test_refusals_say_what_is_wrong_and_what_is_accepted(tmp_path):
    def refused(path, match, **kw) -> str:
        with pytest.raises(VideoInputError, match=match) as e:
            normalize_video(path, **kw)
        return str(e.value)

    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video at all " * 40)
    assert ACCEPTED in refused(text, "not a readable video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert ACCEPTED in refused(empty, "empty")
    good = write_video(tmp_path / "good.mp4", solid(16, 32, 32, RED), 8.0)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[:200])
    assert ACCEPTED in refused(cut, "damaged, cut short or not a video")
    audio_only = tmp_path / "song.m4a"
    with av.open(str(audio_only), "w", format="mp4") as c:
        _add_tone(c, "aac", 1.0)()
    assert ACCEPTED in refused(audio_only, "audio only")
    refused(good, "lasts 2 s; the limit is 1 s", limits=VideoLimits(max_seconds=1.0))
    refused(good, "MB", limits=VideoLimits(max_bytes=100))
    refused(tmp_path / "missing.mp4", "no such file")


def headerless_mkv(path: Path, frames: np.ndarray, fps: int = 8, lossless: bool = False) -> Path:
    """Frames (T, H, W, 3) as Matroska written to a pipe: the muxer cannot seek back to fill in
    the length, so the header gives no duration or frame count (as a live stream's)."""

    class Pipe:  # write-only, not seekable
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, b: bytes) -> int:
            self.data += b
            return len(b)

    pipe = Pipe()
    with av.open(pipe, "w", format="matroska") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuv420p"
        if lossless:
            s.options = {"qp": "0", "preset": "ultrafast"}
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    path.write_bytes(bytes(pipe.data))
    return path


def test_limits_hold_while_streaming_when_the_header_says_nothing(tmp_path):
    """A Matroska stream written without seeking has no duration or frame count in its header,
    so only decoding can find it too long."""
    path = headerless_mkv(tmp_path / "stream.mkv", solid(40, 16, 16, RED))
    with pytest.raises(VideoInputError, match="more than 20 frames"):
        normalize_video(path, limits=VideoLimits(max_frames=20))
    with pytest.raises(VideoInputError, match="over 3 s"):
        normalize_video(path, limits=VideoLimits(max_seconds=3.0))
    clip = normalize_video(path, size=8)  # within the limits: 40 frames at 8 fps = 5 s
    assert clip.frames.shape == (40, 8, 8, 3) and clip.info["duration"] == pytest.approx(5.0)


def test_zero_frames_and_a_file_cut_short(tmp_path):
    empty = tmp_path / "noframes.mkv"
    with av.open(str(empty), "w") as c:
        s = c.add_stream("libx264", rate=8)
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        c.start_encoding()
    with pytest.raises(VideoInputError, match="has no frames"):
        normalize_video(empty)
    # A faststart MP4 cut in half keeps its header: the first part still decodes, as in players.
    frames = np.random.default_rng(0).integers(0, 256, (32, 64, 64, 3), dtype=np.uint8)
    whole = write_video(tmp_path / "whole.mp4", frames, 8.0)
    half = tmp_path / "half.mp4"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    clip = normalize_video(half, size=8)
    assert 1 <= len(clip.frames) < 32 and "cut short" in clip.summary


def test_audio_running_longer_than_the_video_does_not_stretch_it(tmp_path):
    """WebM headers often give only the container's length, here the 3 s of audio; the video's
    1 s is what gets normalised, and it is not mistaken for a file cut short."""
    path = encode(tmp_path / "talk.webm", solid(8, 16, 16, RED), codec="libvpx", audio=("libopus", 3.0))
    clip = normalize_video(path, size=8)
    assert clip.frames.shape == (8, 8, 8, 3) and clip.info["has_audio"] and clip.info["duration"] == 1.0
    assert clip.summary == "16x16 8 fps 1.0 s -> centre square, 8x8, 8 fps, 8 frames"


def test_a_clip_written_in_parts_is_the_clip_written_whole(tmp_path):
    """write_video takes the clip as parts in order (an upscale writes each as it is decoded): the
    file is the same video, odd sizes padded the same way; parts need their count, and a part of
    another size is refused."""
    from engine.video_io import read_video, write_video

    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (10, 15, 21, 3), dtype=np.uint8)
    whole = read_video(write_video(tmp_path / "whole.mp4", clip, 8.0, {}))[0]
    parts = read_video(write_video(tmp_path / "parts.mp4", iter([clip[:4], clip[4:9], clip[9:]]), 8.0, {}, count=10))[0]
    assert whole.shape == (10, 16, 22, 3) and np.array_equal(parts, whole)
    with pytest.raises(ValueError, match="count"):
        write_video(tmp_path / "x.mp4", iter([clip]), 8.0)
    with pytest.raises(ValueError, match="every part"):
        write_video(tmp_path / "y.mp4", iter([clip, clip[:, :8]]), 8.0, count=20)
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / "y.mp4").exists()
