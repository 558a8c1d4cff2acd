"""Peak memory of upscaling a 64x64 8 fps clip of a given length, in a fresh process.

    PYTHONPATH=. python experiments/upscale_memory.py 4     # seconds
    PYTHONPATH=. python experiments/upscale_memory.py 30

Prints the seconds taken and the process's peak resident memory (ru_maxrss) once the result is
written: the clip goes through the upsampler in windows and tiles, so the peak should hardly move
with length.
"""

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.engine import Engine
from engine.requests import UpscaleRequest
from engine.video_io import write_video
from engine.world.render import render
from engine.world.scene import Scene, ShapeObject

seconds = float(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    scene = Scene("blue", (ShapeObject("red", "circle", "left", 0.5, 0.5), ShapeObject("yellow", "star", "up")))
    frames = render(scene, 64, 32)
    clip = np.concatenate([frames] * max(1, round(seconds * 8 / 32)))
    src = write_video(Path(tmp) / "in.mp4", clip, 8.0, {})
    engine = Engine(cache_dir=None, outputs_dir=tmp)
    t = time.perf_counter()
    res = engine.generate(UpscaleRequest(video=str(src)))
    took = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds_of_video": len(clip) / 8,
                "frames": len(clip),
                "out": list(res.frames.shape),
                "upscale_s": round(took, 1),
                "peak_rss_mb": round(peak, 1),
            }
        )
    )
