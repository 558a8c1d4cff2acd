"""Edit tab: a source clip and what to change in, the edited clip out beside the source.

Two modes. "Say what to change" is instruction editing (Movie Gen Edit): the edit model sees the
source and the instruction, with one guidance scale to follow the instruction and one to keep the
source. "Describe the result" is SDEdit through the T2V model: the source is noised part-way
(strength) and denoised towards a prompt. On upload the tab shows the source as the model will see
it (centre square, 64x64, 8 fps); after an edit, source, result and what changed play in step.
"Then upscale" upscales the edit in the same job (the upscaled clip joins the board, with zoom);
"Upscale 4x" sends the last edit to the Upscale tab and runs it there.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from engine.requests import MAX_PROMPT_CHARS, CancelToken, RequestError, Result
from engine.tasks import EDIT_TASK_CHOICES, EditRequest, SDEditRequest, T2VRequest
from engine.video_io import VideoInputError, write_png, write_video

from .compare import CSS, JS, Cell, player_html, upscaled_cell
from .events import VIDEO_TYPES, live_preview, made_from, save_npy, shown_files_error, write_shown
from .handler import Handler, control_values, fill_board, request_from, then_upscale, upscale4_button
from .history import describes
from .spaces import Spaces

EXAMPLES = [
    "make the circle yellow",
    "change the background to white",
    "turn the circle into a star",
    "remove the green star",
    "add a yellow square moving up",
    "make the circle move up",
]
KNOWS = (
    "Upload a clip (MP4, MOV, WebM, MKV, AVI or GIF) or an image, or send a result here from Text to video "
    "or History. The model sees its centre square at 64x64 and 8 fps (shown under the upload). Then **say what "
    "to change**: recolor an object, change the background, reshape, remove or add an object, or change how it "
    "moves. Or **describe the result** as a Text to video prompt (SDEdit: the source is noised part-way, then "
    "drawn again towards the prompt)."
)
MODES = [("Say what to change", "instruction"), ("Describe the result", "sdedit")]
TASK_LABELS = [("auto (read from the instruction)", "auto")] + [(t, t) for t in EDIT_TASK_CHOICES if t != "auto"]
DIFF_GAIN = 4  # |result - source| is amplified this much so small changes show
CHANGED = 24  # a pixel counts as changed when a channel moved by more than this (of 255)


@dataclass
class EditTab:
    controls: dict[str, gr.components.Component]  # by EditRequest and SDEditRequest field, and the mode
    handlers: EditHandlers
    board: gr.HTML
    last: gr.State  # this session's latest edit (path)
    upscale4: gr.Button  # "Upscale 4x": the last edit to the Upscale tab, run there
    send_choice: gr.Dropdown
    send: gr.Button
    event: gr.events.Dependency  # the edit event, to chain history refreshes on


def settings_values(request: dict, source: str | None) -> dict:
    """A stored edit (or SDEdit) request -> values for the tab's controls, by name; `source` is the
    clip to load (the original upload, or its stand-in when that is gone)."""
    values = control_values(request, EditRequest, SDEditRequest)
    return values | {"video": source, "mode": "sdedit" if describes(request) else "instruction"}


def difference(result: np.ndarray, source: np.ndarray) -> np.ndarray:
    """What changed, as a clip: per pixel the largest channel change, amplified, white on black."""
    n = min(len(result), len(source))
    d = np.abs(result[:n].astype(np.int16) - source[:n].astype(np.int16)).max(-1)  # (T, H, W)
    d = np.clip(d * DIFF_GAIN, 0, 255).astype(np.uint8)
    return np.repeat(d[..., None], 3, -1)


def _given(req: EditRequest | SDEditRequest, meta: dict) -> str:
    """What the model was asked: the instruction as read (or as typed), or the result described."""
    return meta.get("given") or (req.instruction if isinstance(req, EditRequest) else req.prompt)


class EditHandlers(Handler):
    """The engine calls behind the tab; plain methods so tests can drive them without a browser.

    `workdir` keeps what the tab shows besides results (the source as the model sees it, what
    changed): files named by content, so a source uploaded twice is read once."""

    request_type = EditRequest

    def request(self, values: Mapping) -> EditRequest | SDEditRequest:
        """An instruction edit, or in describe mode an SDEdit; strength 0 is each one's default
        (an edit's task's own, SDEdit's)."""
        if values.get("mode") != "sdedit":
            return request_from(EditRequest, values)
        default = {} if values.get("strength") else {"strength": SDEditRequest.strength}
        return request_from(SDEditRequest, dict(values) | default)

    # -- the source ---------------------------------------------------------------------------
    def load(self, video) -> dict:
        """An upload as the model will see it: {"summary", "view" (an MP4 of the 64x64 clip),
        "frames" (its .npy), "digest", "fps"}; {"error"} with the reason when it cannot be used."""
        if not video:
            return {}
        d = EditRequest(video="")
        try:
            clip = self.engine.inspect("edit", str(video), size=d.size, fps=d.fps)
        except (VideoInputError, RequestError) as e:
            return {"error": str(e)}
        summary = clip.summary
        if clip.info.get("has_audio"):
            summary += "; its sound is kept in the result"
        kept = self._kept(clip.digest, summary, clip.fps)
        if kept is None:
            stem = self.workdir / clip.digest[:16]
            try:
                write_shown(stem.with_suffix(".npy"), lambda p: save_npy(p, clip.frames))
                if len(clip.frames) == 1:
                    write_shown(stem.with_suffix(".png"), clip.write)
                write_shown(stem.with_suffix(".mp4"), clip.write)  # written last: it marks the others complete
            except OSError as e:  # a full disk: nothing half-made is left to be taken as complete
                for suffix in (".npy", ".png", ".mp4"):
                    stem.with_suffix(suffix).unlink(missing_ok=True)
                return shown_files_error(e, Path(video).name)
            kept = self._kept(clip.digest, summary, clip.fps)
        return kept

    def _kept(self, digest: str, summary: str, fps: float) -> dict | None:
        """The files of a source read before (by its content digest), or None."""
        stem = self.workdir / digest[:16]
        view, frames = stem.with_suffix(".mp4"), stem.with_suffix(".npy")
        if not (digest and view.is_file() and frames.is_file()):
            return None
        return {"summary": summary, "view": str(view), "frames": str(frames), "digest": digest, "fps": fps}

    def source_for(self, meta: dict) -> str | None:
        """The clip to reopen an edit with: the original upload, else the source as the model saw
        it, kept here, else None."""
        video = meta.get("request", {}).get("video")
        if video and Path(video).is_file():
            return str(video)
        digest = meta.get("source", {}).get("sha256", "")
        kept = self.workdir / f"{digest[:16]}.mp4"
        return str(kept) if digest and kept.is_file() else None

    # -- reading what was typed -----------------------------------------------------------------
    def reading(self, mode, instruction, prompt, edit_task="auto", rewrite=True, source: dict | None = None) -> str:
        """How the instruction (or the prompt, in describe mode) is read, for the line under it."""
        if mode == "sdedit":
            found = self.engine.rewrite(T2VRequest(prompt=prompt or "", rewrite=bool(rewrite)))
            return found.describe() if found is not None else ""
        lines = []
        if self.engine.models.editor is None:
            lines.append("**This model has no edit model**: only *Describe the result* works with it.")
        if (instruction or "").strip():
            frames = None
            if source and source.get("frames") and Path(source["frames"]).is_file():
                frames = np.load(source["frames"])
            r = self.engine.read_instruction(instruction, frames)
            line = f"Read as: **{r.describe()}**"
            if edit_task and edit_task != "auto":
                also = f"; the instruction reads as {r.task}" if r.task and r.task != edit_task else ""
                line += f" · task **{edit_task}** (chosen{also})"
            elif r.task:
                line += f" · task **{r.task}** (read from the instruction)"
            else:
                line += " · task: can't tell: say it as one of the examples, or pick the task"
            if rewrite and r.canonical:
                line += f" · the model is given “{r.canonical}”"
            lines.append(line)
        return "\n\n".join(lines)

    # -- editing --------------------------------------------------------------------------------
    def result(self, req: EditRequest | SDEditRequest, ev: Result) -> dict:
        """The result + board (source | result | what changed) + diff; upscaled in the same job, the
        result is the upscaled clip and the board adds it (+ "upscaled")."""
        edited = made_from(ev)
        what = edited.metadata.get("edit_task") or "described"
        out = self.done(ev, f"{what}: “{_given(req, edited.metadata)}” · seed {req.seed}")
        return out | self._board(req, edited, upscaled=ev if edited is not ev else None)

    def _board(self, req: EditRequest | SDEditRequest, ev: Result, upscaled: Result | None = None) -> dict:
        """Source | result | what changed (| the result upscaled), for the synced player; and the
        difference clip's path."""
        seen = ev.metadata.get("source", {})
        src = self._kept(seen.get("sha256", ""), seen.get("summary", ""), req.fps)  # the rate the model saw
        src = src or self.load(req.video)  # not uploaded through the tab (a script, a test)
        if "frames" not in src:  # the upload went away mid-job: show the result alone
            return {"board": player_html([Cell((upscaled or ev).path, "Result")]), "diff": None}
        diff = difference(ev.frames, np.load(src["frames"]))
        changed = float((diff[..., 0] > CHANGED * DIFF_GAIN).mean())
        # Named by the result's whole path: a signed-in user's folder name is not guessable, so neither is this.
        key = hashlib.sha256(str(Path(ev.path).resolve()).encode()).hexdigest()[:16]
        image = Path(ev.path).suffix == ".png"
        src_path = self.workdir / f"{src['digest'][:16]}.png" if image else Path(src["view"])
        try:
            if image:
                diff_path = write_shown(self.workdir / f"diff-{key}.png", lambda p: write_png(p, diff[0]))
            else:
                diff_path = write_shown(self.workdir / f"diff-{key}.mp4", lambda p: write_video(p, diff, src["fps"]))
        except OSError:  # a full disk after the result was saved: show it without what changed
            diff_path = None
        fps = src["fps"]
        cells = [
            Cell(src_path, "Source, as the model sees it", src["summary"], fps),
            Cell(ev.path, f"Result: {_given(req, ev.metadata)}", _settings(req, ev.metadata), fps, Path(ev.path).stem),
        ]
        if diff_path is not None:
            caption = f"|result − source| × {DIFF_GAIN}; {changed:.0%} of pixels changed"
            cells.append(Cell(diff_path, "What changed", caption, fps))
        if upscaled is not None:
            cells.append(upscaled_cell(upscaled.path, upscaled.metadata, fps))
        board = player_html(cells, zoom=upscaled is not None)
        return {"board": board, "diff": diff_path and str(diff_path), "changed": changed}


def _settings(req: EditRequest | SDEditRequest, meta: dict) -> str:
    parts = [f"seed {req.seed}", f"{req.steps} steps"]
    if isinstance(req, EditRequest):
        parts += [f"task {meta.get('edit_task', req.edit_task)}", f"follow {req.guidance}"]
        parts.append(f"keep {req.source_guidance}")
        parts.append(f"strength {meta.get('strength', req.strength)}")
    else:
        parts += [f"guidance {req.guidance}", f"strength {req.strength}"]
    return " · ".join(parts)


def build_edit_tab(
    engine, tokens: dict[str, CancelToken], concurrency_id: str, workdir: str | Path, spaces: Spaces
) -> EditTab:
    """Build the tab inside the current Blocks context; the caller wires what crosses tabs."""
    h = EditHandlers(engine, tokens, workdir)
    d = EditRequest(video="")
    gr.Markdown(KNOWS)
    with gr.Row():
        with gr.Column(scale=3):
            source = gr.File(
                label="Source clip or image", file_types=VIDEO_TYPES, type="filepath", height=90, elem_id="edit-source"
            )
            source_info = gr.Markdown("", elem_id="edit-source-info")
            mode = gr.Radio(MODES, value="instruction", label="Mode", elem_id="edit-mode")
            with gr.Column(visible=True) as say:
                instruction = gr.Textbox(
                    label="What to change",
                    lines=2,
                    placeholder=EXAMPLES[0],
                    max_length=MAX_PROMPT_CHARS,
                    elem_id="edit-instruction",
                )
                reading = gr.Markdown("", elem_id="edit-reading")
                gr.Examples(EXAMPLES, inputs=[instruction], label="Instructions the default model knows")
                edit_task = gr.Dropdown(TASK_LABELS, value="auto", label="Task", elem_id="edit-task")
            with gr.Column(visible=False) as describe:
                prompt = gr.Textbox(
                    label="The result, described",
                    lines=2,
                    placeholder="a yellow circle moving left on a blue background",
                    max_length=MAX_PROMPT_CHARS,
                    elem_id="edit-prompt",
                )
                prompt_reading = gr.Markdown("", elem_id="edit-prompt-reading")
            strength = gr.Slider(
                0.0,
                1.0,
                value=d.strength,
                step=0.05,
                label="Strength: how far from the source it starts (1 = anew; 0 = the default)",
                elem_id="edit-strength",
            )
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="edit-seed")
                dice = gr.Button("Random", scale=0, min_width=80, elem_id="edit-dice")
                steps = gr.Slider(1, 100, value=d.steps, step=1, label="Steps", elem_id="edit-steps")
            with gr.Row():
                guidance = gr.Slider(
                    0.0, 15.0, value=d.guidance, step=0.5, label="Follow the instruction", elem_id="edit-guidance"
                )
                source_guidance = gr.Slider(
                    0.0, 10.0, value=d.source_guidance, step=0.25, label="Keep the source", elem_id="edit-keep"
                )
            with gr.Accordion("Settings", open=False):
                schedule = gr.Dropdown(["linear-quadratic", "linear"], value=d.schedule, label="Schedule")
                rewrite = gr.Checkbox(
                    value=True,
                    label="Give the model its reading of the instruction (or prompt), shown under it",
                    elem_id="edit-rewrite",
                )
            upscale = then_upscale(engine, "edit-then-upscale")
            with gr.Row():
                go = gr.Button("Edit", variant="primary", elem_id="edit-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="edit-stop")
        with gr.Column(scale=4):
            status = gr.Markdown("Upload a source to begin.", elem_id="edit-status")
            source_view = gr.Video(
                label="Source, as the model sees it",
                interactive=False,
                autoplay=True,
                loop=True,
                height=240,
                elem_id="edit-source-view",
            )
            preview = live_preview("edit-preview")
            board = gr.HTML("", css_template=CSS, js_on_load=JS, elem_id="edit-board")
            with gr.Row():
                upscale4 = upscale4_button(engine, "edit-upscale4")
                send_choice = gr.Dropdown([], label="Send result to", scale=2, elem_id="edit-send-choice")
                send = gr.Button("Send", scale=1, elem_id="edit-send")
    controls = dict(
        video=source,
        mode=mode,
        instruction=instruction,
        prompt=prompt,
        edit_task=edit_task,
        seed=seed,
        steps=steps,
        guidance=guidance,
        source_guidance=source_guidance,
        strength=strength,
        schedule=schedule,
        rewrite=rewrite,
        upscale=upscale,
    )
    loaded = gr.State(None)  # the current source's files (see EditHandlers.load)
    last = gr.State(None)

    dice.click(lambda: random.randint(0, 2**31 - 1), None, seed)

    def on_source(video):
        src = h.load(video)
        if "error" in src:
            return None, f"**{src['error']}**", gr.Video(value=None), "Upload another source."
        if not src:
            return None, "", gr.Video(value=None), "Upload a source to begin."
        return src, f"Source as the model sees it: {src['summary']}", gr.Video(value=src["view"]), "Ready."

    src_event = source.change(on_source, source, [loaded, source_info, source_view, status])

    def on_mode(m):
        say_mode = m != "sdedit"
        return (
            gr.Column(visible=say_mode),
            gr.Column(visible=not say_mode),
            gr.Slider(label="Follow the instruction" if say_mode else "Follow the prompt"),
            gr.Slider(visible=say_mode),
        )

    mode.change(on_mode, mode, [say, describe, guidance, source_guidance], queue=False, show_progress="hidden")

    # The reading follows the instruction as it is typed (a few rules, milliseconds).
    read_inputs = [mode, instruction, prompt, edit_task, rewrite, loaded]
    for trigger in (instruction.change, edit_task.change, rewrite.change, mode.change):
        trigger(h.reading, read_inputs, reading, queue=False, show_progress="hidden")
    src_event.then(h.reading, read_inputs, reading, queue=False, show_progress="hidden")
    for trigger in (prompt.change, rewrite.change, mode.change):
        trigger(h.reading, read_inputs, prompt_reading, queue=False, show_progress="hidden")

    fill = fill_board(board, last, upscale4, engine.models.upsampler is not None)
    event = h.wire(go, stop, controls, [status, preview, board, last, upscale4], fill, spaces, concurrency_id).event
    return EditTab(controls, h, board, last, upscale4, send_choice, send, event)
