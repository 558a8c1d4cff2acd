"""Animate tab: the animation model's three uses, one part each, chosen at the top of the tab.

Picture to clip (image-to-video): a picture is the clip's first frame, optionally a second one its
last, and the model makes the clip between them as the prompt says. Continue a clip: the model
carries a clip on as a new prompt says, window after window, for as many seconds as asked (one
progress bar over all windows); the result is the clip followed by the new frames. Fill in frames:
a clip of N frames at R fps becomes (N - 1) K + 1 frames at K R fps, its own frames kept.

Uploads are read by the engine the way its tasks will read them, and the tab says what will happen
before anything runs: the picture as the model sees it, how many windows and new frames a
continuation makes, what filling in makes of the clip. Results play beside their picture(s) or
their source in the synced player. A result sent here (from any tab or History) arrives in the
part it was sent for; a clip sent for "Picture to clip" lets the user pick the frame to start
from (or end on).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from engine.requests import MAX_PROMPT_CHARS, CancelToken, Preview, RequestError, Result
from engine.tasks import AnimateRequest, ExtendRequest, InterpolateRequest
from engine.tasks.extend import MAX_SECONDS, given_count, plan_windows
from engine.tasks.given import WINDOW_FRAMES
from engine.tasks.interpolate import FACTORS, window_starts
from engine.video_io import VideoInputError

from .compare import CSS, JS, Cell, player_html
from .events import VIDEO_TYPES, live_preview, shown_files_error, user_error
from .frames import FrameTaking
from .handler import Handler, control_values, fill_board, preview_strip, request_from, shown_once
from .spaces import Spaces

PARTS = [("Picture to clip", "animate"), ("Continue a clip", "extend"), ("Fill in frames", "interpolate")]
REQUESTS = {"animate": AnimateRequest, "extend": ExtendRequest, "interpolate": InterpolateRequest}
# "Send to" targets, one per part: (name, part).
TARGETS = [
    ("Animate: picture to clip", "animate"),
    ("Animate: continue a clip", "extend"),
    ("Animate: fill in frames", "interpolate"),
]
EXAMPLES = [
    "a red square moving right on a blue background",
    "the circle is growing on a black background",
    "a yellow star moving up on a white background",
]
KNOWS = (
    "Bring a picture to life, carry a clip on, or make it smoother, with the animation model. **Picture to "
    "clip**: your picture is the clip's first frame (and a second one, if you give it, its last); the prompt "
    "says what happens, as in Text to video. **Continue a clip**: the model carries a clip on as a new prompt "
    f"says, for up to {MAX_SECONDS:.0f} s, window after window. **Fill in frames**: the model makes the frames "
    "between a clip's own, 2x or 4x as many, played 2x or 4x as fast. Upload, or send a result here from any "
    "tab or History."
)
NO_ANIMATOR = "this model has no animation model (no 'animate' folder in its model folder)"


def settings_values(request: Mapping, inputs: Mapping[str, str | None]) -> dict:
    """A stored request of one part -> values for that part's controls, by name; `inputs` are the
    files to load (the picture(s), or the clip: the originals, or their stand-ins when gone)."""
    task = request.get("task", "animate")
    values = control_values(request, REQUESTS[task]) | dict(inputs)
    if task == "animate":  # an empty picture box, not ''
        values["image"], values["last"] = values.get("image") or None, values.get("last") or None
    if task == "extend" and not values["seconds"]:  # asked in frames (a script, the CLI): as seconds
        values["seconds"] = round(int(values["frames"]) / float(values["fps"] or 8.0), 3)
    return values


class AnimateHandlers(FrameTaking, Handler):
    """The engine calls behind the tab's three parts; plain methods so tests drive them without a
    browser. Each part runs its own request type (picked by the run's `part`, like the Edit tab's
    mode); `workdir` keeps the inputs as the model sees them, named by content, to show them beside
    the results and to stand in for uploads that are gone when a result is reopened."""

    request_type = AnimateRequest

    def request(self, values: Mapping) -> AnimateRequest | ExtendRequest | InterpolateRequest:
        return request_from(REQUESTS[values.get("part") or "animate"], values)

    # -- the inputs -----------------------------------------------------------------------------
    def load_picture(self, path) -> dict:
        """A picture as Picture to clip reads it: {"view" (a PNG of it as the model sees it),
        "summary", "digest"}; {"error"} with the engine's reason when it cannot be used; {} for none."""
        if not path:
            return {}
        try:
            got = self.engine.inspect("animate", str(path), size=AnimateRequest.size)
        except (VideoInputError, RequestError) as e:
            return {"error": str(e)}
        try:
            view = shown_once(self.workdir / f"picture-{got.digest}.png", got.write)
        except OSError as e:
            return shown_files_error(e, Path(path).name)
        return {"view": str(view), "summary": got.summary, "digest": got.digest}

    def load_clip(self, path) -> dict:
        """A clip (or a picture: one frame) as Continue and Fill in read it: {"view" (an MP4 of it
        as the model sees it), "summary", "digest", "frames" (the count), "fps"}; {"error"} with the
        engine's reason when it cannot be used; {} for none."""
        if not path:
            return {}
        d = ExtendRequest(video="", prompt="")
        try:
            got = self.engine.inspect("edit", str(path), size=d.size, fps=d.fps)  # as an upload is read
        except (VideoInputError, RequestError) as e:
            return {"error": str(e)}
        try:
            view = shown_once(self.workdir / f"clip-{got.digest}.mp4", got.write)
        except OSError as e:
            return shown_files_error(e, Path(path).name)
        n = len(got.frames)
        summary = got.summary + ("; its sound is kept" if got.info.get("has_audio") and n > 1 else "")
        return {"view": str(view), "summary": summary, "digest": got.digest, "frames": n, "fps": got.fps}

    @staticmethod
    def picture_line(first: dict | None, last: dict | None = None, frames=AnimateRequest.frames) -> str:
        """The line under the pictures: each as the model sees it, or why it cannot be used."""
        if not first:
            lines = ["Upload a picture (or send one here, or take one from a clip below): the clip starts on it."]
        elif "error" in first:
            lines = [f"**{first['error']}**"]
        else:
            lines = [f"First picture, as the model sees it: {first['summary']}"]
        if last and "error" in last:
            lines.append(f"**Last picture: {last['error']}**")
        elif last:
            lines.append(f"Last picture (frame {int(frames or AnimateRequest.frames)}): {last['summary']}")
        return "\n\n".join(lines)

    @staticmethod
    def clip_line(loaded: dict | None) -> str:
        """The line under a clip: what the model gets of it, or why it cannot be used."""
        if not loaded:
            return "Upload a clip (or send a result here)."
        if "error" in loaded:
            return f"**{loaded['error']}**"
        return f"As the model sees it: {loaded['summary']}"

    def extend_plan(self, loaded: dict | None, seconds, steps) -> str:
        """What continuing makes, before it runs: new frames, windows, steps, and the result's length."""
        if not loaded or "error" in loaded:
            return ""
        n, fps = loaded["frames"], loaded["fps"]
        new = ExtendRequest(video="", prompt="", seconds=float(seconds or 0)).new_frames
        if new < 1:
            return f"**Add at least one frame ({1 / fps:g} s).**"
        stride = self.engine.models.tae.cfg.temporal_down
        windows = plan_windows(given_count(n, stride), new, WINDOW_FRAMES, stride)
        steps = int(steps or 1)
        return (
            f"Makes **{new} new frames in {_n(windows, 'window')}** ({_n(windows * steps, 'step')} "
            f"in all): {n} + {new} = **{n + new} frames**, {(n + new) / fps:.1f} s at {fps:g} fps."
        )

    def fill_plan(self, loaded: dict | None, factor, steps) -> str:
        """What filling in makes, before it runs: N frames at R fps -> (N - 1) K + 1 at K R fps."""
        if not loaded or "error" in loaded:
            return ""
        n, fps, k = loaded["frames"], loaded["fps"], int(factor or 2)
        if n < 2:
            return "**A picture has one frame: filling in frames needs a clip of at least 2.**"
        total = (n - 1) * k + 1
        windows = len(window_starts(total))
        return (
            f"**{n} frames at {fps:g} fps -> {total} frames at {fps * k:g} fps** ({k}x; "
            f"{_n(windows, 'window')}, {_n(windows * int(steps or 1), 'step')} in all). The clip's own "
            f"frames are kept; the model makes the {total - n} between them."
        )

    # -- the inputs of a result, to show and to reopen with -------------------------------------
    def _kept(self, kind: str, path, digest: str) -> str | None:
        """The input as the model saw it (kept here, by content), made again from `path` when only
        that is left and is still the same file; None when neither is."""
        suffix = ".png" if kind == "picture" else ".mp4"
        kept = self.workdir / f"{kind}-{digest}{suffix}"
        if digest and kept.is_file():
            return str(kept)
        if path and Path(path).is_file():
            got = self.load_picture(path) if kind == "picture" else self.load_clip(path)
            if got.get("digest") == digest:
                return got["view"]
        return None

    def input_for(self, kind: str, path, digest: str) -> str | None:
        """The file to reopen a result with: the original upload, else the input as the model saw
        it (its stand-in), else None."""
        return str(path) if path and Path(path).is_file() else self._kept(kind, path, digest)

    def inputs_for(self, meta: dict) -> tuple[dict[str, str | None], list[str]]:
        """A result's inputs to reopen it with, by control name, and which of them are gone."""
        req = meta.get("request", {})
        if req.get("task") == "animate":
            names = {"image": "first picture", "last": "last picture"}
            given = {k: self.input_for("picture", req.get(k), meta[k].get("sha256", "")) for k in names if meta.get(k)}
            gone = [names[k] for k in names if meta.get(k) and given[k] is None]
            return given, gone
        source = self.input_for("clip", req.get("video"), meta.get("source", {}).get("sha256", ""))
        return {"video": source}, ["clip"] if source is None else []

    def board(self, path, meta: dict) -> str:
        """A result beside what it was made from, in the synced player: the picture(s) then the clip;
        or the source clip then the result (continued: the source, then the new frames; filled in:
        at K times its rate)."""
        path, req = Path(path), meta.get("request", {})
        fps, task = float(req.get("fps") or 8.0), req.get("task")
        cells = []
        if task == "animate":
            for key, title in (("image", "First picture"), ("last", "Last picture")):
                seen = meta.get(key)
                view = seen and self._kept("picture", req.get(key), seen.get("sha256", ""))
                if view:
                    cells.append(Cell(view, f"{title}, as the model sees it", seen.get("summary", ""), fps))
            result = Cell(path, f"Result: {req.get('prompt', '')}", _settings(req, meta), fps, path.stem)
        else:
            seen = meta.get("source", {})
            view = self._kept("clip", req.get("video"), seen.get("sha256", ""))
            if view:
                cells.append(Cell(view, "Source, as the model sees it", seen.get("summary", ""), fps))
            if task == "extend":
                title = f"Continued: {req.get('prompt', '')}"
            else:
                title = f"Filled in {req.get('factor')}x" + (f": {req['prompt']}" if req.get("prompt") else "")
                fps *= int(req.get("factor") or 2)
            result = Cell(path, title, _settings(req, meta), fps, path.stem)
        return player_html([*cells, result])

    # -- running --------------------------------------------------------------------------------
    def updates(self, req, token: CancelToken, folder=None, tag: str = ""):
        """The engine's events, with the window each step is in when a job has several (one
        progress bar over all windows: each window is `steps` of it)."""
        for ev in super().updates(req, token, folder, tag):
            if "progress" in ev and not isinstance(req, AnimateRequest):
                step, total = ev["progress"]
                windows = total // req.steps
                if windows > 1:
                    where = f"window {(step - 1) // req.steps + 1}/{windows} · "
                    ev = ev | {"status": tag + where + ev["status"][len(tag) :]}
            yield ev

    def preview(self, req, ev: Preview) -> np.ndarray:
        # The tab has no upscaling in the same job: every step is its own request's (the base
        # class takes steps past req.steps for an upscale's), over all windows.
        k = self.preview_frames or len(ev.frames)
        return preview_strip(ev.frames[:: max(1, -(-len(ev.frames) // k))])

    def result(self, req, ev: Result) -> dict:
        """The result + its board."""
        m = ev.metadata
        if isinstance(req, AnimateRequest):
            what = f"“{req.prompt}” · {req.frames} frames · seed {req.seed}"
        elif isinstance(req, ExtendRequest):
            w = m.get("windows", 1)
            what = f"+{m.get('new_frames')} frames in {_n(w, 'window')}: “{req.prompt}” · seed {req.seed}"
        else:
            n = len(ev.frames)
            what = f"{req.factor}x: {n} frames at {req.fps * req.factor:g} fps · seed {req.seed}"
        return self.done(ev, what) | {"board": self.board(ev.path, m)}


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _settings(req: dict, meta: dict) -> str:
    """A result's caption on its board."""
    parts = [f"seed {req.get('seed', 0)}", f"{req.get('steps', '?')} steps"]
    if req.get("task") == "extend":
        w = meta.get("windows", 1)
        parts = [f"+{meta.get('new_frames', '?')} frames, {_n(w, 'window')}", *parts]
    parts += [f"follow {req.get('guidance', '?')}", f"keep {req.get('frames_guidance', '?')}"]
    return " · ".join(parts)


def reopen_values(h: AnimateHandlers, media, meta: dict) -> tuple[dict[str, dict], str | None]:
    """A result reopened in the tab: the values of the tab's reopen fields (see AnimateTab.fields:
    its part, that part's controls and board), and a warning when an input is gone."""
    task = meta.get("request", {}).get("task")
    given, gone = h.inputs_for(meta)
    values = settings_values(meta.get("request", {}), given) | {"board": h.board(media, meta)}
    it = "it" if len(gone) == 1 else "them"
    warning = f"The {' and '.join(gone)} of this result {'is' if it == 'it' else 'are'} gone; upload {it} again."
    warning = warning if gone else None
    return {"an_part": {"part": task}, f"an_{task}": values}, warning


@dataclass
class Part:
    """One part of the tab, as the page wires it."""

    row: gr.Row
    controls: dict[str, gr.components.Component]  # by its request's fields
    inbox: gr.components.Component  # where "Send to" puts a result for this part
    board: gr.HTML
    last: gr.State  # this session's latest result of the part (path)
    send_choice: gr.Dropdown
    send: gr.Button
    event: gr.events.Dependency  # its run, to chain history refreshes on


@dataclass
class AnimateTab:
    part: gr.Radio
    parts: dict[str, Part]  # by task
    handlers: AnimateHandlers

    @property
    def events(self) -> list[gr.events.Dependency]:
        return [p.event for p in self.parts.values()]

    def fields(self) -> dict[str, dict[str, gr.components.Component]]:
        """What a reopen sets, by name (see reopen_values): the part, and each part's controls and board."""
        out = {"an_part": {"part": self.part}}
        return out | {f"an_{task}": p.controls | {"board": p.board} for task, p in self.parts.items()}


def _seed_row(prefix: str, d) -> tuple[gr.Number, gr.Slider]:
    with gr.Row():
        seed = gr.Number(label="Seed", value=d.seed, precision=0, minimum=0, elem_id=f"{prefix}-seed")
        dice = gr.Button("Random", scale=0, min_width=80, elem_id=f"{prefix}-dice")
        steps = gr.Slider(1, 100, value=d.steps, step=1, label="Steps", elem_id=f"{prefix}-steps")
    dice.click(lambda: random.randint(0, 2**31 - 1), None, seed)
    return seed, steps


def _guidance_row(prefix: str, d, keep: str) -> tuple[gr.Slider, gr.Slider]:
    """Follow the prompt (s_T) and keep to the given frames (s_F), side by side."""
    with gr.Row():
        guidance = gr.Slider(
            0.0, 15.0, value=d.guidance, step=0.5, label="Follow the prompt", elem_id=f"{prefix}-guidance"
        )
        frames_guidance = gr.Slider(0.0, 10.0, value=d.frames_guidance, step=0.25, label=keep, elem_id=f"{prefix}-keep")
    return guidance, frames_guidance


def _settings_accordion(prefix: str, d) -> tuple[gr.Dropdown, gr.Checkbox]:
    with gr.Accordion("Settings", open=False):
        schedule = gr.Dropdown(
            ["linear-quadratic", "linear"], value=d.schedule, label="Schedule", elem_id=f"{prefix}-schedule"
        )
        rewrite = gr.Checkbox(
            value=d.rewrite,
            label="Give the model the prompt rewriter's reading of the prompt",
            elem_id=f"{prefix}-rewrite",
        )
    return schedule, rewrite


def _outputs(prefix: str, status_text: str, view: str = "") -> tuple:
    """A part's right-hand column: status, the source as the model sees it (with `view`, its
    label), live preview, board, "Send result to"."""
    status = gr.Markdown(status_text, elem_id=f"{prefix}-status")
    shown = None
    if view:
        shown = gr.Video(
            label=view, interactive=False, autoplay=True, loop=True, height=200, elem_id=f"{prefix}-source-view"
        )
    preview = live_preview(f"{prefix}-preview")
    board = gr.HTML("", css_template=CSS, js_on_load=JS, elem_id=f"{prefix}-board")
    with gr.Row():
        send_choice = gr.Dropdown([], label="Send result to", scale=2, elem_id=f"{prefix}-send-choice")
        send = gr.Button("Send", scale=1, elem_id=f"{prefix}-send")
    return status, shown, preview, board, send_choice, send


def _run_buttons(prefix: str, label: str, has: bool) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        go = gr.Button(label, variant="primary", interactive=has, elem_id=f"{prefix}-generate")
        stop = gr.Button("Stop", variant="stop", elem_id=f"{prefix}-stop")
    return go, stop


def build_animate_tab(
    engine, tokens: dict[str, CancelToken], concurrency_id: str, workdir: str | Path, spaces: Spaces
) -> AnimateTab:
    """Build the tab inside the current Blocks context; the caller wires what crosses tabs."""
    h = AnimateHandlers(engine, tokens, workdir)
    has = engine.models.animator is not None
    gr.Markdown(KNOWS if has else f"**Animation is off: {NO_ANIMATOR}.** " + KNOWS, elem_id="an-knows")
    part = gr.Radio(PARTS, value="animate", label="What to do", elem_id="an-part")
    waiting = {
        "animate": "Upload a picture to begin.",
        "extend": "Upload a clip to begin.",
        "interpolate": "Upload a clip to begin.",
    }
    off = f"**Animation is off: {NO_ANIMATOR}.**"
    parts: dict[str, Part] = {}

    def wire(task: str, row, controls: dict, inbox, go, stop, shows: tuple) -> None:
        status, _view, preview, board, send_choice, send = shows
        last = gr.State(None)
        inputs = controls | {"part": gr.State(task)}  # the request this part runs
        fill = fill_board(board, last)
        event = h.wire(go, stop, inputs, [status, preview, board, last], fill, spaces, concurrency_id).event
        parts[task] = Part(row, controls, inbox, board, last, send_choice, send, event)

    # -- Picture to clip ---------------------------------------------------------------------------
    d = AnimateRequest(image="", prompt="")
    with gr.Row(visible=True) as row:
        with gr.Column(scale=3):
            with gr.Row():
                image = gr.Image(
                    label="First picture",
                    type="filepath",
                    image_mode=None,  # the file as uploaded: the engine reads it (alpha, EXIF) itself
                    sources=["upload", "clipboard"],
                    height=200,
                    elem_id="an-image",
                )
                last_image = gr.Image(
                    label="Last picture (optional)",
                    type="filepath",
                    image_mode=None,
                    sources=["upload", "clipboard"],
                    height=200,
                    elem_id="an-last",
                )
            picture_info = gr.Markdown(h.picture_line(None), elem_id="an-picture-info")
            with gr.Accordion("Take a picture from a clip", open=False) as take_row:
                clip = gr.File(
                    label="A result (send one here from any tab or History) or a clip",
                    file_types=VIDEO_TYPES,
                    type="filepath",
                    height=90,
                    elem_id="an-clip",
                )
                take_info = gr.Markdown("", elem_id="an-take-info")
                with gr.Row():
                    frame_view = gr.Image(
                        label="Frame", interactive=False, height=160, format="png", elem_id="an-frame"
                    )
                    with gr.Column():
                        frame_k = gr.Slider(0, 1, value=0, step=1, label="Frame", visible=False, elem_id="an-frame-k")
                        use_first = gr.Button("Use as first picture", interactive=False, elem_id="an-use-first")
                        use_last = gr.Button("Use as last picture", interactive=False, elem_id="an-use-last")
            prompt = gr.Textbox(
                label="Prompt: what happens",
                lines=2,
                placeholder=EXAMPLES[0],
                max_length=MAX_PROMPT_CHARS,
                elem_id="an-prompt",
            )
            gr.Examples(EXAMPLES, inputs=[prompt], label="Prompts the default model knows")
            seed, steps = _seed_row("an", d)
            guidance, frames_guidance = _guidance_row("an", d, "Keep to the pictures")
            frames = gr.Slider(
                2,
                WINDOW_FRAMES,
                value=d.frames,
                step=1,
                label="Frames",
                info=f"at {d.fps:g} fps; for a longer clip, continue it",
                elem_id="an-frames",
            )
            schedule, rewrite = _settings_accordion("an", d)
            go, stop = _run_buttons("an", "Animate", has)
        with gr.Column(scale=4):
            shows = _outputs("an", waiting["animate"] if has else off)
    controls = dict(
        image=image,
        last=last_image,
        prompt=prompt,
        seed=seed,
        steps=steps,
        guidance=guidance,
        frames_guidance=frames_guidance,
        frames=frames,
        schedule=schedule,
        rewrite=rewrite,
    )
    wire("animate", row, controls, clip, go, stop, shows)
    first_loaded, last_loaded = gr.State(None), gr.State(None)  # each picture as the model sees it
    taken = gr.State(None)  # the clip to take a picture from (see FrameTaking.take_from)

    # Each picture is shown as the model sees it as soon as it is chosen.
    def on_first(path, other, n):
        got = h.load_picture(path)
        ready = "Ready." if "view" in got else ("Choose another picture." if got else waiting["animate"])
        return got or None, h.picture_line(got, other, n), ready if has else gr.skip()

    def on_last(path, first, n):
        got = h.load_picture(path)
        return got or None, h.picture_line(first, got, n)

    image.change(on_first, [image, last_loaded, frames], [first_loaded, picture_info, shows[0]])
    last_image.change(on_last, [last_image, first_loaded, frames], [last_loaded, picture_info])
    frames.change(
        h.picture_line, [first_loaded, last_loaded, frames], picture_info, queue=False, show_progress="hidden"
    )

    def on_clip(path):
        got = h.take_from(path)
        hidden = (
            gr.Slider(visible=False),
            gr.Image(value=None),
            gr.Button(interactive=False),
            gr.Button(interactive=False),
        )
        if not got or "error" in got:
            return None, f"**{got['error']}**" if got else "", *hidden, gr.skip(), gr.skip()
        if got["count"] == 1:  # a picture (a PNG result sent here): it is the first picture
            return None, f"{got['summary']} · now the first picture", *hidden, gr.skip(), path
        n = got["count"]
        return (
            got,
            f"{got['summary']} · pick a frame (0 to {n - 1}) to start from, or to end on",
            gr.Slider(minimum=0, maximum=n - 1, value=0, visible=True),
            gr.Image(value=h.frame(got, 0)),
            gr.Button(interactive=True),
            gr.Button(interactive=True),
            gr.Accordion(open=True),
            gr.skip(),
        )

    clip.change(on_clip, clip, [taken, take_info, frame_k, frame_view, use_first, use_last, take_row, image])
    frame_k.change(lambda got, k: h.frame(got, k), [taken, frame_k], frame_view, queue=False, show_progress="hidden")

    def use_frame(got, k):
        try:
            return h.use_frame(got, k)
        except ValueError as e:
            raise user_error(str(e)) from None
        except OSError as e:  # a full disk
            raise user_error(shown_files_error(e, "the frame")["error"]) from None

    use_first.click(use_frame, [taken, frame_k], image)
    use_last.click(use_frame, [taken, frame_k], last_image)

    # -- Continue a clip ---------------------------------------------------------------------------
    d = ExtendRequest(video="", prompt="")
    with gr.Row(visible=False) as row:
        with gr.Column(scale=3):
            source = gr.File(
                label="Clip to continue (or a picture)",
                file_types=VIDEO_TYPES,
                type="filepath",
                height=90,
                elem_id="ex-source",
            )
            source_info = gr.Markdown(h.clip_line(None), elem_id="ex-source-info")
            ex_prompt = gr.Textbox(
                label="Prompt: what happens next",
                lines=2,
                placeholder=EXAMPLES[0],
                max_length=MAX_PROMPT_CHARS,
                elem_id="ex-prompt",
            )
            seconds = gr.Slider(
                1 / d.fps,
                MAX_SECONDS,
                value=3.0,
                step=1 / d.fps,  # one frame
                label="Seconds to add",
                elem_id="ex-seconds",
            )
            plan = gr.Markdown("", elem_id="ex-plan")
            ex_seed, ex_steps = _seed_row("ex", d)
            ex_guidance, ex_keep = _guidance_row("ex", d, "Keep to the clip so far")
            ex_schedule, ex_rewrite = _settings_accordion("ex", d)
            go, stop = _run_buttons("ex", "Continue", has)
        with gr.Column(scale=4):
            shows = _outputs("ex", waiting["extend"] if has else off, "Source, as the model sees it")
    source_view = shows[1]
    controls = dict(
        video=source,
        prompt=ex_prompt,
        seconds=seconds,
        seed=ex_seed,
        steps=ex_steps,
        guidance=ex_guidance,
        frames_guidance=ex_keep,
        schedule=ex_schedule,
        rewrite=ex_rewrite,
    )
    wire("extend", row, controls, source, go, stop, shows)
    ex_loaded = gr.State(None)  # the clip as the model sees it (see AnimateHandlers.load_clip)

    def on_extend_source(video, s, k):
        src = h.load_clip(video)
        ready = "Ready." if "view" in src else ("Upload another clip." if src else waiting["extend"])
        view = gr.Video(value=src.get("view"))
        return src or None, h.clip_line(src), h.extend_plan(src, s, k), view, ready if has else gr.skip()

    source.change(on_extend_source, [source, seconds, ex_steps], [ex_loaded, source_info, plan, source_view, shows[0]])
    for trigger in (seconds.change, ex_steps.change):
        trigger(h.extend_plan, [ex_loaded, seconds, ex_steps], plan, queue=False, show_progress="hidden")

    # -- Fill in frames ----------------------------------------------------------------------------
    d = InterpolateRequest(video="")
    with gr.Row(visible=False) as row:
        with gr.Column(scale=3):
            fi_source = gr.File(
                label="Clip to fill in", file_types=VIDEO_TYPES, type="filepath", height=90, elem_id="fi-source"
            )
            fi_info = gr.Markdown(h.clip_line(None), elem_id="fi-source-info")
            factor = gr.Radio([(f"{k}x", k) for k in FACTORS], value=d.factor, label="Frames", elem_id="fi-factor")
            fi_plan = gr.Markdown("", elem_id="fi-plan")
            fi_prompt = gr.Textbox(
                label="Prompt (optional): what the clip shows",
                lines=1,
                max_length=MAX_PROMPT_CHARS,
                elem_id="fi-prompt",
            )
            fi_seed, fi_steps = _seed_row("fi", d)
            with gr.Accordion("Guidance", open=False):
                gr.Markdown("The clip's own frames pin it down: no guidance (1.0) is the default.")
                fi_guidance, fi_keep = _guidance_row("fi", d, "Keep to the frames")
            fi_schedule, fi_rewrite = _settings_accordion("fi", d)
            go, stop = _run_buttons("fi", "Fill in", has)
        with gr.Column(scale=4):
            shows = _outputs("fi", waiting["interpolate"] if has else off, "Source, as the model sees it")
    fi_view = shows[1]
    controls = dict(
        video=fi_source,
        factor=factor,
        prompt=fi_prompt,
        seed=fi_seed,
        steps=fi_steps,
        guidance=fi_guidance,
        frames_guidance=fi_keep,
        schedule=fi_schedule,
        rewrite=fi_rewrite,
    )
    wire("interpolate", row, controls, fi_source, go, stop, shows)
    fi_loaded = gr.State(None)

    def on_fill_source(video, k, n):
        src = h.load_clip(video)
        usable = "view" in src and src["frames"] > 1
        ready = "Ready." if usable else ("Upload another clip." if src else waiting["interpolate"])
        view = gr.Video(value=src.get("view"))
        return src or None, h.clip_line(src), h.fill_plan(src, k, n), view, ready if has else gr.skip()

    fi_source.change(on_fill_source, [fi_source, factor, fi_steps], [fi_loaded, fi_info, fi_plan, fi_view, shows[0]])
    for trigger in (factor.change, fi_steps.change):
        trigger(h.fill_plan, [fi_loaded, factor, fi_steps], fi_plan, queue=False, show_progress="hidden")

    # -- the parts -----------------------------------------------------------------------------------
    rows = [parts[task].row for _, task in PARTS]

    def on_part(chosen):
        return [gr.Row(visible=task == chosen) for _, task in PARTS]

    part.change(on_part, part, rows, queue=False, show_progress="hidden")
    return AnimateTab(part, parts, h)
