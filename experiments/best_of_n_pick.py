"""Experiment (not shipped): judge-picked best-of-N on the saved candidates, per snapshot step and N. PYTHONPATH=. python experiments/best_of_n_pick.py runs/bon/c48.npz JUDGE_DIR"""

import sys

import numpy as np
import torch

from engine.checkpoint import config_from_dict, load_weights, read_config
from engine.models.judge import Judge, JudgeConfig, log_agreement, want_from_reading
from engine.models.rewrite import PromptRewriter, RewriterConfig

d = np.load(sys.argv[1])
jdir = sys.argv[2]
judge = load_weights(jdir, Judge(config_from_dict(JudgeConfig, read_config(jdir)["config"]))).eval()
rw = load_weights(
    "assets/models/shapes-v2/rewrite",
    PromptRewriter(config_from_dict(RewriterConfig, read_config("assets/models/shapes-v2/rewrite")["config"])),
).eval()
sat, nobj = d["sat"].astype(bool), d["nobj"]
P, N = sat.shape
times, snap = d["times"], list(d["snap"])
print(
    f"baseline (cand 0): {sat[:, 0].mean():.3f}  1obj {sat[nobj == 1, 0].mean():.3f} 2obj {sat[nobj == 2, 0].mean():.3f}"
)
for n in range(2, N + 1):
    print(f"oracle N={n}: {sat[:, :n].any(1).mean():.3f}  2obj {sat[nobj == 2, :n].any(1).mean():.3f}")
wants = [want_from_reading(r.read) for r in rw(list(d["prompt"]))]
with torch.no_grad():
    for si, step in list(enumerate(snap)) + [(None, 24)]:
        x = torch.from_numpy(d["final"] if si is None else d["xt"][:, :, si]).float()  # (P, N, C, t, h, w)
        t = 1.0 if si is None else float(times[step])
        r = judge(x.flatten(0, 1), torch.full((P * N,), t))
        rows = []
        for n in range(2, N + 1):
            picked = []
            for p in range(P):
                sl = slice(p * N, p * N + n)
                sub = type(r)(r.background[sl], r.present[sl], r.shape[sl], r.motion[sl])
                picked.append(sat[p, int(log_agreement(sub, wants[p]).argmax())])
            picked = np.array(picked)
            rows.append(f"N={n}: {picked.mean():.3f} (2obj {picked[nobj == 2].mean():.3f})")
        print(f"step {step:2d} t={t:.3f}  " + "  ".join(rows), flush=True)
