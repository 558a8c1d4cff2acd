"""Ship an animation-model snapshot of an attention-trained run into a model folder: only the weights
that trained are stored (bf16), the rest read from the folder's T2V checkpoint, after checking
that they are that checkpoint's, unchanged:

    python experiments/ship_animate.py RUN/animate-run/animate-step1000 assets/models/shapes-v2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.checkpoint import config_from_dict, load_weights, read_config, save_component  # noqa: E402
from engine.models.generator import Generator, GeneratorConfig  # noqa: E402
from engine.train.animate_stage import animate_frozen  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("snapshot", type=Path)
    ap.add_argument("folder", type=Path, help="the model folder: its t2v is the base, animate is written")
    args = ap.parse_args()
    meta = read_config(args.snapshot)
    cfg = config_from_dict(GeneratorConfig, meta["config"])
    snap = load_weights(args.snapshot, Generator(cfg))
    t2v = load_weights(
        args.folder / "t2v", Generator(config_from_dict(GeneratorConfig, read_config(args.folder / "t2v")["config"]))
    )
    frozen = animate_frozen(cfg)
    base = t2v.state_dict()
    changed = [k for k, v in snap.state_dict().items() if k.startswith(frozen) and not torch.equal(v, base[k])]
    if changed:
        raise SystemExit(f"error: {len(changed)} frozen weights differ from {args.folder / 't2v'}, e.g. {changed[:3]}")
    extra = {k: v for k, v in meta.items() if k not in ("kind", "config", "shared")} | {"grown_from": "t2v"}
    out = save_component(
        args.folder / "animate", "generator", cfg, snap, extra, torch.bfloat16, dict.fromkeys(frozen, "t2v")
    )
    size = (out / "model.safetensors").stat().st_size / 2**20
    print(f"{out}: {size:.1f} MB, {len(frozen)} prefixes from t2v")


if __name__ == "__main__":
    main()
