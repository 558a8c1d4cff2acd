"""Text-to-video tab: prompt and settings in, a live preview and the final clip out.

"Then upscale" runs the spatial upsampler on the result in the same job (one progress bar); the
clip is then shown beside its bicubic enlargement. "Upscale 4x" sends the last result to the
Upscale tab and runs it there (wired in studio/__init__.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from engine.requests import MAX_PROMPT_CHARS, CancelToken, Error, Preview, Progress, Result
from engine.tasks import T2VRequest

from .compare import CSS, JS, player_html, upscale_cells
from .events import live_preview, preview_html, progress_event, session_key, stream_updates
from .spaces import Spaces

EXAMPLES = [
    "a red circle moving left on a blue background",
    "a yellow star growing on a black background",
    "a white square moving up and a pink triangle moving right on a gray background",
    "teal ball standing still on an orange backdrop",
    "a green triangle shrinking and a purple circle moving down on a white background",
]
KNOWS = (
    "The default model knows the **shapes world**: circles, squares, triangles and stars in 11 colours "
    "(red, orange, yellow, green, cyan/teal, blue, purple/violet, pink, white, gray, black), moving left, right, "
    "up or down, standing still, growing or shrinking, on a plain background; one or two objects. "
    "Set frames to 1 for an image. Type freely: under the prompt you see how it was read, which is what the "
    "model is given, and any words it does not know."
)
THEN_UPSCALE = [("off", 0), ("2x", 2), ("4x", 4)]  # the request's `upscale`
NO_UPSAMPLER = "this model has no upsampler"


def preview_strip(frames: np.ndarray, scale: int = 2) -> np.ndarray:
    """Preview frames (T, H, W, 3) side by side, enlarged: motion reads left to right."""
    gap = np.full((frames.shape[1], 2, 3), 255, np.uint8)
    parts = []
    for f in frames:
        parts += [f, gap]
    strip = np.concatenate(parts[:-1], 1)
    return strip.repeat(scale, 0).repeat(scale, 1)


def large_preview_strip(frames: np.ndarray, count: int = 4, max_side: int = 256) -> np.ndarray:
    """An upscale's preview (T, H, W, 3): a few frames spread over the clip, at most `max_side`
    pixels on their long side (every k-th pixel: a preview, sent every step)."""
    frames = frames[:: max(1, -(-len(frames) // count))]
    k = max(1, -(-max(frames.shape[1:3]) // max_side))
    return preview_strip(frames[:, ::k, ::k], scale=1)


def then_upscale(engine, elem_id: str) -> gr.Dropdown:
    """The cascade setting of a generating tab: off, or upscale the result 2x / 4x in the same job."""
    has = engine.models.upsampler is not None
    return gr.Dropdown(
        THEN_UPSCALE,
        value=0,
        label="Then upscale",
        info="in the same job; both clips are kept" if has else f"off: {NO_UPSAMPLER}",
        interactive=has,
        elem_id=elem_id,
    )


def upscaled_view(ev: Result) -> dict:
    """For a result upscaled in the same job as it was made: its board (bicubic | upscaled) and the
    status words; {} for any other result."""
    made_from = ev.metadata.get("upscaled_from")
    if not made_from:
        return {}
    (w, h), (big_w, big_h) = ev.metadata["input_size"], ev.metadata["size"]
    return {
        "board": player_html(upscale_cells(ev.path, ev.metadata), zoom=True),
        "upscaled": f"upscaled {ev.metadata['request']['scale']}x, {w}x{h} -> {big_w}x{big_h}",
        "base": str(Path(ev.path).with_name(made_from["name"])),
    }


@dataclass
class T2VControls:
    prompt: gr.Textbox
    negative: gr.Textbox
    seed: gr.Number
    steps: gr.Slider
    guidance: gr.Slider
    frames: gr.Slider
    size: gr.Dropdown
    schedule: gr.Dropdown
    rewrite: gr.Checkbox
    upscale: gr.Dropdown

    def as_list(self) -> list:
        return [
            self.prompt,
            self.negative,
            self.seed,
            self.steps,
            self.guidance,
            self.frames,
            self.size,
            self.schedule,
            self.rewrite,
            self.upscale,
        ]


@dataclass
class T2VTab:
    controls: T2VControls
    video: gr.Video
    image: gr.Image
    last: gr.State  # this session's latest result path
    previous: gr.State  # the one before it
    compare_prev: gr.Button
    upscale4: gr.Button  # "Upscale 4x": the last result to the Upscale tab, run there
    send_choice: gr.Dropdown
    send: gr.Button
    event: gr.events.Dependency  # the generate event, to chain history refreshes on


def request_from(
    prompt, negative, seed, steps, guidance, frames, size, schedule, rewrite=True, upscale=0
) -> T2VRequest:
    return T2VRequest(
        prompt=prompt or "",
        negative_prompt=negative or "",
        seed=int(seed if seed is not None else 0),
        steps=int(steps),
        guidance=float(guidance),
        frames=int(frames),
        size=int(size),
        schedule=schedule,
        rewrite=bool(rewrite),
        upscale=int(upscale or 0),
    )


def settings_values(request: dict) -> list:
    """A stored request -> values for the tab's controls (the order of T2VControls.as_list)."""
    d = T2VRequest(prompt="")
    get = lambda k: request.get(k, getattr(d, k))  # noqa: E731
    return [
        get("prompt"),
        get("negative_prompt"),
        get("seed"),
        get("steps"),
        get("guidance"),
        get("frames"),
        get("size"),
        get("schedule"),
        get("rewrite"),
        get("upscale"),
    ]


class T2VHandlers:
    """The engine calls behind the tab; plain methods so tests can drive them without a browser."""

    def __init__(self, engine, tokens: dict[str, CancelToken]):
        self.engine = engine
        self.tokens = tokens

    def generate(
        self,
        prompt,
        negative,
        seed,
        steps,
        guidance,
        frames,
        size,
        schedule,
        rewrite=True,
        upscale=0,
        batch=1,
        session: str = "local",
        folder=None,
    ):
        """Yields dicts per event: reading first, then status/progress, preview, result (+ results so
        far; + board, upscaled and base when it was upscaled in the same job), or error (+ cancelled)."""
        token = self.tokens[session] = CancelToken()
        results: list[str] = []
        n = max(1, int(batch or 1))
        for k in range(n):
            req = request_from(
                prompt, negative, int(seed or 0) + k, steps, guidance, frames, size, schedule, rewrite, upscale
            )
            if k == 0:
                yield {"reading": self.reading(req.prompt, req.frames, req.rewrite)}
            for ev in self.engine.run(req, cancel=token, folder=folder):
                tag = f"{k + 1}/{n} · " if n > 1 else ""
                if isinstance(ev, Progress):
                    yield progress_event(ev, tag)
                elif isinstance(ev, Preview):  # past the generation's steps: the upscale's
                    strip = preview_strip(ev.frames) if ev.step <= req.steps else large_preview_strip(ev.frames)
                    yield {"preview": strip}
                elif isinstance(ev, Result):
                    results.append(str(ev.path))
                    how = "from cache" if ev.cached else f"in {ev.metadata['seconds']:.1f}s"
                    up = upscaled_view(ev)
                    also = f" · {up['upscaled']} (the {req.size} px clip is in History too)" if up else ""
                    yield {
                        "status": f"{tag}done {how} · seed {req.seed}{also}",
                        "result": str(ev.path),
                        "results": list(results),
                        **up,
                    }
                elif isinstance(ev, Error):
                    yield {"status": ev.message, "error": ev.message, "cancelled": ev.cancelled}
                    return

    def reading(self, prompt, frames=32, rewrite=True) -> str:
        """How the prompt rewriter reads a prompt ('' when off, empty or the model has none)."""
        req = T2VRequest(prompt=prompt or "", frames=int(frames or 1), rewrite=bool(rewrite))
        found = self.engine.rewrite(req)
        return found.describe() if found is not None else ""

    def stop(self, session: str = "local") -> str:
        token = self.tokens.get(session)
        if token is not None:
            token.cancel()
        return "Stopped. Clips already finished are kept in History."


def build_t2v_tab(engine, tokens: dict[str, CancelToken], concurrency_id: str, spaces: Spaces):
    """Build the tab inside the current Blocks context; the caller wires what crosses tabs."""
    h = T2VHandlers(engine, tokens)
    gr.Markdown(KNOWS)
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(
                label="Prompt", lines=2, placeholder=EXAMPLES[0], max_length=MAX_PROMPT_CHARS, elem_id="t2v-prompt"
            )
            negative = gr.Textbox(
                label="Negative prompt", placeholder="what the clip should not show", max_length=MAX_PROMPT_CHARS
            )
            reading = gr.Markdown("", elem_id="t2v-reading")
            gr.Examples(EXAMPLES, inputs=[prompt], label="Examples the default model knows")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="t2v-seed")
                dice = gr.Button("Random", scale=0, min_width=80, elem_id="t2v-dice")
                batch = gr.Slider(1, 8, value=1, step=1, label="Batch (seeds in a row)", elem_id="t2v-batch")
            with gr.Accordion("Settings", open=False):
                steps = gr.Slider(1, 100, value=T2VRequest(prompt="").steps, step=1, label="Steps")
                guidance = gr.Slider(1.0, 15.0, value=T2VRequest(prompt="").guidance, step=0.5, label="Guidance")
                frames = gr.Slider(1, 64, value=32, step=1, label="Frames (1 = an image)")
                size = gr.Dropdown([64, 128], value=64, label="Size (px)")
                schedule = gr.Dropdown(["linear-quadratic", "linear"], value="linear-quadratic", label="Schedule")
                rewrite = gr.Checkbox(
                    value=True,
                    label="Rewrite the prompt (the model is given its reading, shown under the prompt)",
                    elem_id="t2v-rewrite",
                )
            upscale = then_upscale(engine, "t2v-then-upscale")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id="t2v-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="t2v-stop")
        with gr.Column(scale=4):
            status = gr.Markdown("Ready.", elem_id="t2v-status")
            preview = live_preview("t2v-preview")
            video = gr.Video(
                label="Result", interactive=False, autoplay=True, loop=True, height=320, elem_id="t2v-video"
            )
            image = gr.Image(label="Result (image)", interactive=False, visible=False, elem_id="t2v-image")
            board = gr.HTML("", css_template=CSS, js_on_load=JS, visible=False, elem_id="t2v-upscaled")
            shelf = gr.Gallery(label="This batch", columns=4, height=140, visible=False)
            with gr.Row():
                compare_prev = gr.Button("Compare with previous", elem_id="t2v-compare-prev")
                upscale4 = gr.Button(
                    "Upscale 4x", interactive=engine.models.upsampler is not None, min_width=100, elem_id="t2v-upscale4"
                )
                send_choice = gr.Dropdown([], label="Send result to", scale=2, elem_id="t2v-send-choice")
                send = gr.Button("Send", scale=1, elem_id="t2v-send")
    controls = T2VControls(prompt, negative, seed, steps, guidance, frames, size, schedule, rewrite, upscale)
    last = gr.State(None)  # this session's latest result (path)
    previous = gr.State(None)  # the one before it, for "compare with previous"

    dice.click(lambda: random.randint(0, 2**31 - 1), None, seed)
    # The reading follows the prompt as it is typed: the rewriter is tiny (milliseconds on a CPU).
    for trigger in (prompt.change, frames.change, rewrite.change):
        trigger(h.reading, [prompt, frames, rewrite], reading, queue=False, show_progress="hidden")

    def run(
        prompt,
        negative,
        seed,
        steps,
        guidance,
        frames,
        size,
        schedule,
        rewrite,
        upscale,
        batch,
        last_path,
        prev_path,
        request: gr.Request,
        progress=gr.Progress(),
    ):
        settings = (prompt, negative, seed, steps, guidance, frames, size, schedule, rewrite, upscale)
        session = session_key(request)
        paths = {"last": last_path, "previous": prev_path}

        def fill(ev: dict, out: dict) -> None:
            if "reading" in ev:
                out[reading] = ev["reading"]
            if "preview" in ev:
                out[preview] = preview_html(ev["preview"])
            if "result" in ev:
                path, up = ev["result"], "board" in ev
                is_image = path.endswith(".png")
                # Upscaled in the same job: it plays beside its bicubic enlargement instead.
                out[video] = gr.Video(value=None if is_image or up else path, visible=not (is_image or up))
                out[image] = gr.Image(value=path if is_image and not up else None, visible=is_image and not up)
                out[board] = gr.HTML(value=ev.get("board", ""), visible=up)
                out[upscale4] = gr.Button(interactive=engine.models.upsampler is not None and not up)
                paths["previous"], paths["last"] = (paths["last"] or paths["previous"]), path
                out[last] = paths["last"]
                out[previous] = paths["previous"]
                if len(ev["results"]) > 1:
                    thumbs = [str(Path(p).with_name(Path(p).stem + ".thumb.png")) for p in ev["results"]]
                    out[shelf] = gr.Gallery(value=thumbs, visible=True)

        events = h.generate(*settings, batch=batch, session=session, folder=spaces.of(request).folder)
        yield from stream_updates(events, progress, status, fill)

    event = go.click(
        run,
        [*controls.as_list(), batch, last, previous],
        [status, preview, video, image, board, upscale4, shelf, last, previous, reading],
        concurrency_limit=1,
        concurrency_id=concurrency_id,
    )

    def do_stop(request: gr.Request):
        return h.stop(session_key(request))

    # The token stops the engine within one step; cancelling the event frees the queue slot.
    stop.click(do_stop, None, status, cancels=[event], queue=False)
    return T2VTab(controls, video, image, last, previous, compare_prev, upscale4, send_choice, send, event)
