"""Upscale tab: a clip or an image in, 2x or 4x larger out (Movie Gen's spatial upsampler), played
beside the input enlarged by bicubic, with a zoom that shows the same region of both.

Any size goes in: the whole frame is kept (aspect too), inputs above the engine's limit on the long
side are reduced first, the frame count and rate are the input's, and an image gives a PNG. On
upload the tab says what the model gets and what comes out; results from any tab or History arrive
through "Send to", and "Upscale 4x" in Text to video and Edit sends their last result here and runs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from engine.requests import UPSCALE_FACTORS, CancelToken, Preview, RequestError, Result
from engine.tasks import UpscaleRequest
from engine.video_io import VideoInputError, content_digest

from .compare import CSS, JS, player_html, upscale_cells
from .events import VIDEO_TYPES, live_preview, shown_files_error
from .handler import NO_UPSAMPLER, Handler, control_values, fill_board, large_preview_strip, shown_once
from .spaces import Spaces

KNOWS = (
    "Make a clip (or an image) **2x or 4x larger** with the spatial upsampler. Upload one, or send a result "
    "here from Text to video, Edit or History. Any size and shape goes in: the whole frame is kept, and the "
    "frame count and rate stay the input's. The result plays beside the input enlarged by bicubic: pick a zoom "
    "(or click a clip) to see the same spot of both, pixel for pixel."
)
SCALES = [(f"{k}x", k) for k in UPSCALE_FACTORS]


def settings_values(request: dict, source: str | None) -> dict:
    """A stored upscale request -> values for the tab's controls, by name; `source` is the input to
    load (the file it was made from, or its stand-in when that is gone)."""
    return control_values(request, UpscaleRequest) | {"video": source}


class UpscaleHandlers(Handler):
    """The engine calls behind the tab; plain methods so tests can drive them without a browser.

    `workdir` keeps each input as the model gets it (named by content), to show it and to stand in
    for an upload that is gone when a result is reopened."""

    request_type = UpscaleRequest

    # -- the input ------------------------------------------------------------------------------
    def load(self, video) -> dict:
        """What the model will get: {"size" [w, h], "frames", "fps", "image", "summary", "view" (the
        clip or image as it gets it), "digest", "audio"}; {"error"} when it cannot be used; {} for none."""
        if not video:
            return {}
        try:
            clip = self.engine.inspect("upscale", str(video))  # too long a clip is refused before decoding
        except (VideoInputError, RequestError) as e:
            return {"error": str(e)}
        n, h, w = clip.frames.shape[:3]
        try:
            view = shown_once(self.workdir / f"upscale-{clip.digest}{'.png' if n == 1 else '.mp4'}", clip.write)
        except OSError as e:
            return shown_files_error(e, Path(video).name)
        return {
            "size": [w, h],
            "frames": n,
            "fps": clip.fps,
            "image": n == 1,
            "summary": clip.summary,
            "view": str(view),
            "digest": clip.digest,
            "audio": bool(clip.info.get("has_audio")) and n > 1,
        }

    def input_line(self, loaded: dict | None, scale=4) -> str:
        """The line under the input: what the model gets and what comes out."""
        lines = []
        if self.engine.models.upsampler is None:
            lines.append(f"**Upscaling is off: {NO_UPSAMPLER}** (no 'upscale' folder in its model folder).")
        if loaded and "error" in loaded:
            lines.append(f"**{loaded['error']}**")
        elif loaded:
            (w, h), k = loaded["size"], int(scale or 4)
            what = (
                f"a {w}x{h} image"
                if loaded["image"]
                else f"{w}x{h}, {loaded['frames']} frames at {loaded['fps']:.4g} fps"
            )
            out = f"{w * k}x{h * k}" + (" PNG" if loaded["image"] else "")
            sound = "; its sound is kept" if loaded["audio"] else ""
            lines.append(f"The model gets **{what} -> {out}** ({k}x){sound}. The upload: {loaded['summary']}.")
        return "\n\n".join(lines)

    def source_for(self, meta: dict, folder: str | Path) -> str | None:
        """The input to reopen an upscale with: the file it was made from, else a file of the same
        content in `folder` (the result's own: a cascade's clip, a result sent here), else the input
        as the model got it (kept here), else None."""
        video = meta.get("request", {}).get("video")
        if video and Path(video).is_file():
            return str(video)
        digest = meta.get("source", {}).get("sha256", "")
        for name in (meta.get("upscaled_from", {}).get("name"), meta.get("source", {}).get("name")):
            found = Path(folder) / name if name and "/" not in name and "\\" not in name else None
            if found is not None and found.is_file() and (not digest or content_digest(found) == digest):
                return str(found)
        for suffix in (".mp4", ".png"):
            kept = self.workdir / f"upscale-{digest}{suffix}"
            if digest and kept.is_file():
                return str(kept)
        return None

    # -- upscaling ------------------------------------------------------------------------------
    def preview(self, req: UpscaleRequest, ev: Preview) -> np.ndarray:
        return large_preview_strip(ev.frames)

    def result(self, req: UpscaleRequest, ev: Result) -> dict:
        """The result + board (bicubic | upscaled)."""
        (w, h), (big_w, big_h) = ev.metadata["input_size"], ev.metadata["size"]
        out = self.done(ev, f"{w}x{h} -> {big_w}x{big_h} ({req.scale}x) · seed {req.seed}")
        return out | {"board": self.board(ev.path, ev.metadata)}

    @staticmethod
    def board(path, meta: dict) -> str:
        """An upscale result beside its input enlarged by bicubic, in the synced player with zoom."""
        return player_html(upscale_cells(path, meta), zoom=True)


@dataclass
class UpscaleTab:
    controls: dict[str, gr.components.Component]  # by UpscaleRequest field
    handlers: UpscaleHandlers
    board: gr.HTML
    status: gr.Markdown
    last: gr.State  # this session's latest upscale (path)
    send_choice: gr.Dropdown
    send: gr.Button
    event: gr.events.Dependency  # the upscale event, to chain history refreshes on
    run_after: Callable  # run_after(dependency) -> the upscale, started when `dependency` succeeds


def build_upscale_tab(
    engine, tokens: dict[str, CancelToken], concurrency_id: str, workdir: str | Path, spaces: Spaces
) -> UpscaleTab:
    """Build the tab inside the current Blocks context; the caller wires what crosses tabs."""
    h = UpscaleHandlers(engine, tokens, workdir)
    d = UpscaleRequest(video="")
    has = engine.models.upsampler is not None
    gr.Markdown(KNOWS if has else f"**Upscaling is off: {NO_UPSAMPLER}.** " + KNOWS, elem_id="upscale-knows")
    with gr.Row():
        with gr.Column(scale=3):
            source = gr.File(
                label="Clip or image to upscale",
                file_types=VIDEO_TYPES,
                type="filepath",
                height=90,
                elem_id="upscale-source",
            )
            source_info = gr.Markdown(h.input_line(None), elem_id="upscale-source-info")
            scale = gr.Radio(SCALES, value=d.scale, label="Scale", elem_id="upscale-scale")
            with gr.Row():
                seed = gr.Number(label="Seed", value=d.seed, precision=0, minimum=0, elem_id="upscale-seed")
                dice = gr.Button("Random", scale=0, min_width=80, elem_id="upscale-dice")
                steps = gr.Slider(1, 100, value=d.steps, step=1, label="Steps", elem_id="upscale-steps")
            with gr.Accordion("Settings", open=False):
                schedule = gr.Dropdown(
                    ["linear", "linear-quadratic"], value=d.schedule, label="Schedule", elem_id="upscale-schedule"
                )
            with gr.Row():
                go = gr.Button("Upscale", variant="primary", interactive=has, elem_id="upscale-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="upscale-stop")
        with gr.Column(scale=4):
            status = gr.Markdown("Upload a clip or an image to begin.", elem_id="upscale-status")
            view = gr.Video(
                label="Input, as the model gets it",
                interactive=False,
                autoplay=True,
                loop=True,
                height=200,
                elem_id="upscale-input-view",
            )
            view_image = gr.Image(
                label="Input, as the model gets it",
                interactive=False,
                visible=False,
                height=200,
                elem_id="upscale-input-image",
            )
            preview = live_preview("upscale-preview")
            board = gr.HTML("", css_template=CSS, js_on_load=JS, elem_id="upscale-board")
            with gr.Row():
                send_choice = gr.Dropdown([], label="Send result to", scale=2, elem_id="upscale-send-choice")
                send = gr.Button("Send", scale=1, elem_id="upscale-send")
    controls = dict(video=source, scale=scale, steps=steps, seed=seed, schedule=schedule)
    loaded = gr.State(None)  # the current input as the model gets it (see UpscaleHandlers.load)
    last = gr.State(None)

    dice.click(lambda: random.randint(0, 2**31 - 1), None, seed)

    def on_source(video, k):
        src = h.load(video)
        image = bool(src.get("image"))
        shown = src.get("view")
        return (
            src or None,
            h.input_line(src, k),
            gr.Video(value=None if image else shown, visible=not image),
            gr.Image(value=shown if image else None, visible=image),
            "Upload another input." if "error" in src else ("Ready." if src else "Upload a clip or an image to begin."),
        )

    source.change(on_source, [source, scale], [loaded, source_info, view, view_image, status])
    scale.change(h.input_line, [loaded, scale], source_info, queue=False, show_progress="hidden")

    fill = fill_board(board, last)
    wired = h.wire(go, stop, controls, [status, preview, board, last], fill, spaces, concurrency_id)

    def run_after(dependency: gr.events.Dependency) -> gr.events.Dependency:
        """Start an upscale with the tab's current values once `dependency` succeeds (another tab's
        "Upscale 4x" fills them first); Stop stops it too."""
        return wired.start(dependency.success)

    return UpscaleTab(controls, h, board, status, last, send_choice, send, wired.event, run_after)
