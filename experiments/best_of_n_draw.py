"""Experiment (not shipped): N candidates per held-out prompt, drawn in one batch; saves x_t at some steps, final latents and the analyser verdicts. PYTHONPATH=. python experiments/best_of_n_draw.py 48 4 runs/bon/c48.npz"""

import sys
import time
from dataclasses import replace

import numpy as np
import torch

from engine.engine import Engine
from engine.eval.t2v import held_out_prompts
from engine.requests import T2VRequest
from engine.sampling import euler, guided_velocity
from engine.tasks import candidate_seeds, initial_noise, prepare_t2v
from engine.world.analyse import analyse, score
from engine.world.captions import caption_labels
from engine.world.data import to_frames

n_prompts, n_seeds, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
offset = int(sys.argv[4]) if len(sys.argv) > 4 else 0
torch.set_num_threads(2)
eng = Engine(cache_dir=None)
items = held_out_prompts(n_prompts // 2, n_prompts - n_prompts // 2, seed=offset)
SNAP = (8, 12, 14, 16, 18, 20, 22)
rec = {k: [] for k in ("xt", "final", "sat", "prompt", "labels", "nobj", "shape_ok", "motion_ok")}
t0 = time.time()
for i, item in enumerate(items):
    req = T2VRequest(prompt=item.prompt, seed=i)
    rw = eng.rewrite(req)
    given = replace(req, prompt=rw.text) if rw is not None else req
    prep = prepare_t2v(given, eng.tae, eng.encode_prompt)
    vel = guided_velocity(eng.generator, prep.cond, prep.uncond, prep.guidance)

    def run(x, t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=eng.bf16):
            return vel(x, t).float()  # noqa: B023 - called within the iteration

    xs = {}

    def cb(step, total, x, x1h):
        if step in SNAP:
            xs[step] = x.clone()  # noqa: B023

    with torch.no_grad():
        x = euler(run, initial_noise(prep.shape, candidate_seeds(req.seed, n_seeds), eng.device), prep.times, cb)
        vids = eng.tae.decode(x, req.frames)
    sats = []
    for k in range(n_seeds):
        sc = score(analyse(to_frames(vids[k])), item.scene)
        sats.append(sc.satisfied)
        rec["shape_ok"].append(all(sc.shape))
        rec["motion_ok"].append(all(sc.motion))
    rec["xt"].append(torch.stack([xs[s] for s in SNAP], 1).half().numpy())  # (N, S, C, t, h, w)
    rec["final"].append(x.half().numpy())
    rec["sat"].append(sats)
    rec["prompt"].append(item.prompt)
    rec["labels"].append(caption_labels(item.scene, False))
    rec["nobj"].append(len(item.scene.objects))
    print(i, item.prompt, [int(s) for s in sats], f"{time.time() - t0:.0f}s", flush=True)
np.savez(
    out,
    xt=np.stack(rec["xt"]),
    final=np.stack(rec["final"]),
    sat=np.array(rec["sat"]),
    prompt=np.array(rec["prompt"]),
    labels=np.array(rec["labels"]),
    nobj=np.array(rec["nobj"]),
    shape_ok=np.array(rec["shape_ok"]).reshape(len(items), n_seeds),
    motion_ok=np.array(rec["motion_ok"]).reshape(len(items), n_seeds),
    times=prep.times.numpy(),
    snap=np.array(SNAP),
)
