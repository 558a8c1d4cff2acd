"""Pilot one way of conditioning the generator (docs/conditioning.md) for a fixed number of steps,
from the shipped T2V weights, with the shipped recipe's data and settings otherwise:

    python experiments/conditioning_pilot.py edit sequence --steps 300 --out ~/runs/pilot/edit-seq
    python experiments/conditioning_pilot.py pt2v encoder --steps 300 --out ~/runs/pilot/pt2v-enc

Designs: edit `channels` (Movie Gen Edit, identity samples from step 0) or `sequence`; pt2v
`encoder` (Movie Gen PT2V's vision encoder) or `sequence`; animate (given frames) `sequence`. Snapshots land in OUT/<stage>-run/
<stage>-stepN every --every steps; `bash experiments/edit_snapshot.sh SNAP`
evaluates one (an edit or a PT2V snapshot). Resumable: run the same command again.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.checkpoint import config_from_dict, load_weights, read_config  # noqa: E402
from engine.models.generator import Generator  # noqa: E402
from engine.models.tae import TAE, TAEConfig  # noqa: E402
from engine.train.common import setup  # noqa: E402
from engine.train.edit_stage import train_edit  # noqa: E402
from engine.train.personalize_stage import personalize_generator_config, train_personalize  # noqa: E402
from engine.train.recipe import PRESETS, edit_generator_config  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "models" / "shapes-v2"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task", choices=("edit", "pt2v", "animate"))
    ap.add_argument("design", choices=("channels", "sequence", "encoder"))
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", "1")))
    ap.add_argument("--preset", default="shapes-v2")
    ap.add_argument("--set", action="append", default=[], help="FIELD=VALUE of the stage's config (ints, floats)")
    ap.add_argument("--place-bias", type=float, default=0.0, help="edit, sequence: DiTConfig.place_bias")
    args = ap.parse_args()

    p = PRESETS[args.preset]
    rt = setup("cpu", args.threads)
    tae = load_weights(SHIPPED / "tae", TAE(config_from_dict(TAEConfig, read_config(SHIPPED / "tae")["config"])))
    t2v = load_weights(SHIPPED / "t2v", Generator(p.generator))
    extra = {}
    for item in args.set:
        k, v = item.split("=", 1)
        extra[k] = v if not v.replace(".", "", 1).lstrip("-").isdigit() else float(v) if "." in v else int(v)
    # A short run: a short EMA, so the snapshot is the weights of these steps rather than the start.
    loop = {"steps": args.steps, "checkpoint_every": args.every, "ema": 0.99, "warmup": 20}
    if args.task == "animate":  # given frames: the sequence design only
        from engine.train.animate_stage import AnimateTrainConfig, animate_generator_config, train_animate

        tcfg = dataclasses.replace(AnimateTrainConfig(), **(loop | extra))
        gcfg = animate_generator_config(p.generator, tae.cfg.temporal_down)
        train_animate(tcfg, gcfg, tae, t2v, rt, args.out / "animate-run")
    elif args.task == "edit":
        if args.design not in ("channels", "sequence"):
            raise SystemExit("edit designs: channels, sequence")
        tcfg = dataclasses.replace(p.edit_train, condition=args.design, **({"keep_from": 0} | loop | extra))
        gcfg = edit_generator_config(p.generator, args.design)
        if args.place_bias:
            gcfg = dataclasses.replace(gcfg, dit=dataclasses.replace(gcfg.dit, place_bias=args.place_bias))
        train_edit(tcfg, gcfg, tae, t2v, rt, args.out / "edit-run")
    else:
        if args.design not in ("encoder", "sequence"):
            raise SystemExit("pt2v designs: encoder, sequence")
        tcfg = dataclasses.replace(p.personalize_train, condition=args.design, **({"planned": 0} | loop | extra))
        gcfg = personalize_generator_config(p.generator, p.reference, args.design)
        train_personalize(tcfg, gcfg, tae, t2v, rt, args.out / "pt2v-run")


if __name__ == "__main__":
    main()
