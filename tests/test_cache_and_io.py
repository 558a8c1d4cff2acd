import av
import numpy as np
import pytest
import torch

from engine.cache import TensorCache, cache_key
from engine.video_io import VideoInputError, VideoLimits, probe, read_metadata, read_video, write_png, write_video
from engine.world.render import render
from engine.world.scene import sample_scene


def test_cache_round_trip_and_damage(tmp_path):
    c = TensorCache(tmp_path)
    k = cache_key("t2v", "model", {"prompt": "a", "seed": 1})
    assert k != cache_key("t2v", "model", {"prompt": "a", "seed": 2})
    x = torch.randn(3, 4)
    c.put(k, {"x": x, "m": torch.tensor([True, False])})
    got = c.get(k)
    assert torch.equal(got["x"], x) and got["m"].tolist() == [True, False]
    raw = bytearray(c.store[k])
    raw[10] ^= 0xFF  # flip a byte inside the stored value
    c.store[k] = bytes(raw)
    assert c.get(k) is None and k not in c.store  # dropped, so the caller recomputes
    c.store[k] = b"short"
    assert c.get(k) is None


def test_video_round_trip_plays_in_browsers(tmp_path):
    frames = render(sample_scene(np.random.default_rng(0)), 64, 32)
    path = write_video(tmp_path / "a.mp4", frames, 8.0, {"prompt": "x", "seed": 3})
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: playable while downloading
    back, fps = read_video(path)
    assert back.shape == frames.shape and fps == pytest.approx(8.0)
    assert np.abs(back.astype(int) - frames).mean() < 3
    assert read_metadata(path) == {"prompt": "x", "seed": 3}


def test_odd_sizes_and_png(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (3, 33, 17, 3), dtype=np.uint8)
    back, _ = read_video(write_video(tmp_path / "odd.mp4", frames))
    assert back.shape == (3, 34, 18, 3)
    img = frames[0]
    got = read_video(write_png(tmp_path / "x.png", img, {"a": 1}))[0][0]
    assert np.array_equal(got, img)


def test_variable_frame_rate_is_resampled(tmp_path):
    # Frames shown at irregular times (0, .1, .4, .5 s).
    path = tmp_path / "vfr.mp4"
    times = [0.0, 0.1, 0.4, 0.5]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        s.codec_context.time_base = __import__("fractions").Fraction(1, 1000)
        for i, t in enumerate(times):
            f = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 40 * (i + 1), np.uint8), format="rgb24")
            f.pts, f.time_base = int(t * 1000), s.codec_context.time_base
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    video, fps = read_video(path)
    # 4 frames over 0.6 s: the average rate is 6.67 fps; ticks at 0, .15, .3, .45 s show
    # the frames that were on screen then (the second one twice), so motion keeps its speed.
    assert fps == pytest.approx(4 / 0.6)
    assert [int(round(v.mean() / 40)) for v in video] == [1, 2, 2, 3]


def test_bad_inputs_say_what_is_wrong(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoInputError, match="empty"):
        read_video(empty)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video at all " * 40)
    with pytest.raises(VideoInputError, match="not a readable video"):
        read_video(text)
    good = write_video(tmp_path / "g.mp4", np.zeros((16, 32, 32, 3), np.uint8), 8.0)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(good.read_bytes()[:200])
    with pytest.raises(VideoInputError):
        read_video(corrupt)
    with pytest.raises(VideoInputError, match="limit is"):
        probe(good, VideoLimits(max_seconds=1.0))
    with pytest.raises(VideoInputError, match="MB"):
        probe(good, VideoLimits(max_bytes=100))
    with pytest.raises(VideoInputError, match="a side"):
        probe(good, VideoLimits(max_side=16))
    with pytest.raises(VideoInputError, match="no such file"):
        probe(tmp_path / "missing.mp4")


def test_zero_frame_video_is_refused(tmp_path):
    path = tmp_path / "noframes.mkv"  # Matroska writes a header even with no frames
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=8)
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        c.start_encoding()  # write the header, then no frame at all
    with pytest.raises(VideoInputError, match="has no frames"):
        read_video(path)


@pytest.mark.parametrize("degrees,corner", [(90, (1, 0)), (-90, (0, 1)), (180, (1, 1))])
def test_phone_rotation_is_applied(tmp_path, degrees, corner):
    """A landscape clip stored with a display rotation (as phones write portrait video) is read
    upright: a red block in the stored top-left corner ends where a player shows it."""
    path = tmp_path / "phone.mp4"
    img = np.zeros((32, 64, 3), np.uint8)
    img[:8, :8] = (230, 40, 40)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(degrees)  # counter-clockwise, as VideoFrame.rotation reads it back
        for _ in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    video, _ = read_video(path)
    h, w = video.shape[1:3]
    assert (h, w) == ((32, 64) if degrees == 180 else (64, 32))
    cy, cx = np.argwhere(video[0, :, :, 0] > 150).mean(0)
    assert (cy > h / 2, cx > w / 2) == tuple(bool(c) for c in corner)
