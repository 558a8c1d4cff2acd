"""Peak memory of upscaling an 8 fps clip of a given length (64x64 unless a size is given), in a
fresh process.

    PYTHONPATH=. python experiments/upscale_memory.py 4     # seconds
    PYTHONPATH=. python experiments/upscale_memory.py 30
    PYTHONPATH=. python experiments/upscale_memory.py 8 256x144   # 1024x576 out
    PYTHONPATH=. python experiments/upscale_memory.py 48 64x64 2  # 2 steps instead of 20 (quicker)

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
from engine.tasks import UpscaleRequest
from engine.video_io import write_video
from engine.world.render import render
from engine.world.scene import Scene, ShapeObject

seconds = float(sys.argv[1])
w, h = (int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "64x64").split("x"))
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 20
with tempfile.TemporaryDirectory() as tmp:
    scene = Scene("blue", (ShapeObject("red", "circle", "left", 0.5, 0.5), ShapeObject("yellow", "star", "up")))
    frames = render(scene, max(w, h), 32)[:, :h, :w]  # the scene's top-left corner at other sizes
    clip = np.concatenate([frames] * max(1, round(seconds * 8 / 32)))[: max(1, round(seconds * 8))]
    src = write_video(Path(tmp) / "in.mp4", clip, 8.0, {})
    engine = Engine(cache_dir=None, outputs_dir=tmp)
    t = time.perf_counter()
    res = engine.generate(UpscaleRequest(video=str(src), steps=steps))
    took = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds_of_video": len(clip) / 8,
                "frames": len(clip),
                "out": res.metadata["size"],
                "upscale_s": round(took, 1),
                "peak_rss_mb": round(peak, 1),
            }
        )
    )
