"""Instruction editing, measured exactly on the shapes world (issue: Movie Gen Edit at our scale).

For held-out sources (every object a held-out combination, never trained on) and free-phrased
instructions, per task:
- followed: the analysed result is the target scene (background, each object's colour, shape and
  motion, no extra object);
- PSNR against the true target clip, and PSNR against the source on the pixels the edit must leave
  alone (where source and target are the same; an added object's place is the target's own draw).
Sources go in as H.264 MP4 files, as an upload would. Baselines on the same sources: "do nothing"
(the result is the source) and SDEdit through the T2V model with the target's caption, at each
strength given (the best one is reported). Also: edits of the T2V model's own outputs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from ..tasks import EditRequest, SDEditRequest, T2VRequest
from ..video_io import normalize_video, write_video
from ..world.analyse import analyse, score, source_scene
from ..world.captions import canonical_caption
from ..world.edits import EDIT_TASKS, EditPair, apply_edit, canonical_instruction, free_instruction, sample_pair
from ..world.render import render


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 clips (T, H, W, 3), over the pixels where mask (T, H, W) is True."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        d = d[mask]
    mse = float(d.mean()) if d.size else 0.0
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def untouched(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pixels an edit must leave alone: the same in source and target, one pixel away from any
    change (anti-aliased edges spill into their neighbours). (T, H, W) bool."""
    changed = np.any(source != target, -1)  # (T, H, W)
    grown = changed.copy()
    grown[:, 1:] |= changed[:, :-1]
    grown[:, :-1] |= changed[:, 1:]
    grown[:, :, 1:] |= changed[:, :, :-1]
    grown[:, :, :-1] |= changed[:, :, 1:]
    return ~grown


def _measure(result: np.ndarray, pair: EditPair, src: np.ndarray, tgt: np.ndarray) -> dict:
    return {
        "followed": bool(score(analyse(result), pair.target).satisfied),
        "psnr_target": psnr(result, tgt),
        "psnr_keep": psnr(result, src, untouched(src, tgt)),
    }


def _summary(rows: list[dict]) -> dict:
    if not rows:
        return {"n": 0}
    return {
        "n": len(rows),
        "followed": round(float(np.mean([r["followed"] for r in rows])), 3),
        "psnr_target": round(float(np.mean([r["psnr_target"] for r in rows])), 2),
        "psnr_keep": round(float(np.mean([r["psnr_keep"] for r in rows])), 2),
    }


def evaluate_edit(
    engine,
    n: int = 12,
    base: EditRequest | None = None,
    strengths: tuple[float, ...] = (0.5, 0.75),
    tasks: tuple[str, ...] = EDIT_TASKS,
    t2v_sources: int = 12,
    seed: int = 123,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """The issue's table: per task the edit model, "do nothing" and SDEdit (best of `strengths`),
    then the share followed when the source is the T2V model's own output."""
    base = base or EditRequest(video="")
    size, frames = base.size, 32
    out: dict = {"edit": {}, "nothing": {}, "sdedit": {}, "sdedit_by_strength": {}}
    # SDEdit at the edit model's settings (its own strength; the seed is the case's).
    shared = {
        f.name: getattr(base, f.name)
        for f in fields(SDEditRequest)
        if f.name in ("steps", "guidance", "size", "fps", "schedule", "rewrite")
    }
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            rng = np.random.default_rng([seed, EDIT_TASKS.index(task)])
            rows: dict[str, list] = {"edit": [], "nothing": []} | {f"sdedit@{s}": [] for s in strengths}
            for i in range(n):
                pair = sample_pair(rng, held_out=True, task=task)
                src, tgt = render(pair.source, size, frames), render(pair.target, size, frames)
                path = write_video(Path(tmp) / f"{task}-{i}.mp4", src, base.fps, {})
                uploaded = normalize_video(path, size, base.fps).frames  # the H.264 source as the model sees it
                instruction = free_instruction(rng, pair)
                if engine.models.editor is not None:
                    res = engine.generate(replace(base, video=str(path), instruction=instruction, seed=i))
                    row = _measure(res.frames, pair, src, tgt)
                    rows["edit"].append(row)
                    log(
                        f"{task:10s} {'ok ' if row['followed'] else 'BAD'} {instruction!r} -> {res.metadata['given']!r}"
                    )
                rows["nothing"].append(_measure(uploaded, pair, src, tgt))
                for s in strengths:
                    req = SDEditRequest(video=str(path), prompt=canonical_caption(pair.target), **shared, seed=i)
                    res = engine.generate(replace(req, strength=s))
                    rows[f"sdedit@{s}"].append(_measure(res.frames, pair, src, tgt))
            out["edit"][task] = _summary(rows["edit"])
            out["nothing"][task] = _summary(rows["nothing"])
            by_strength = {s: _summary(rows[f"sdedit@{s}"]) for s in strengths}
            out["sdedit_by_strength"][task] = by_strength
            if strengths:
                best = max(strengths, key=lambda s: (by_strength[s]["followed"], by_strength[s]["psnr_target"]))
                out["sdedit"][task] = by_strength[best] | {"strength": best}
            log(f"{task}: edit {out['edit'][task]} nothing {out['nothing'][task]} sdedit {out['sdedit'].get(task)}")
        if engine.models.editor is not None and t2v_sources:
            out["t2v_sources"] = _edit_t2v_outputs(engine, base, t2v_sources, seed, Path(tmp), log)
    return out


def _edit_t2v_outputs(engine, base: EditRequest, n: int, seed: int, tmp: Path, log) -> dict:
    """Edit what the studio just made: a held-out prompt generated by the T2V model, then an edit
    of it. The target is the edit applied to what the analyser reads in the generated clip, so a
    generation that reads as no clear scene is skipped (counted in `unreadable`)."""
    rng = np.random.default_rng([seed, 99])
    followed, unreadable = [], 0
    for i in range(n):
        task = EDIT_TASKS[i % len(EDIT_TASKS)]
        pair = sample_pair(rng, held_out=True, task=task)
        gen = engine.generate(T2VRequest(prompt=canonical_caption(pair.source), seed=i), out=tmp / f"t2v-{i}.mp4")
        seen = source_scene(gen.frames)
        if seen is None or len(seen.objects) != len(pair.source.objects):
            unreadable += 1
            continue
        # The same edit, pointed at what the generated clip shows (its object order may differ).
        edit = pair.edit
        if edit.target is not None:
            named = pair.source.objects[edit.target]
            match = [k for k, o in enumerate(seen.objects) if o.color == named.color]
            if not match:
                unreadable += 1
                continue
            edit = replace(edit, target=match[0])
        try:
            target = apply_edit(seen, edit)
        except AssertionError:  # the edit would clash with a colour the generation drew instead
            unreadable += 1
            continue
        edited = EditPair(seen, target, edit, canonical_instruction(seen, edit))
        res = engine.generate(replace(base, video=str(gen.path), instruction=free_instruction(rng, edited), seed=i))
        ok = bool(score(analyse(res.frames), target).satisfied)
        followed.append(ok)
        log(f"t2v source {task:10s} {'ok ' if ok else 'BAD'} {edited.instruction!r}")
    share = round(float(np.mean(followed)), 3) if followed else None
    return {"n": len(followed), "followed": share, "unreadable": unreadable}
