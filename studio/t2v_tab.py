"""Text-to-video tab: prompt and settings in, a live preview and the final clip out.

"Then upscale" runs the spatial upsampler on the result in the same job (one progress bar); the
clip is then shown beside its bicubic enlargement. "Upscale 4x" sends the last result to the
Upscale tab and runs it there (wired in studio/__init__.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr

from engine.requests import MAX_PROMPT_CHARS, CancelToken, Result
from engine.tasks import T2VRequest
from engine.tasks.t2v import MAX_LORA_SCALE

from .compare import CSS, JS, player_html, upscale_cells
from .events import live_preview
from .handler import Handler, control_values, then_upscale, upscale4_button
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
# A model trained on other footage (python -m engine train --data ...) has no world rewriter: its
# prompts go in as typed, and the world's examples would mislead.
OWN_MODEL = (
    "This model (**{name}**) was trained on footage of its own: describe the clip in the words its captions "
    "used; the prompt is given to it as typed. Width, height and frames (1 = an image) are under Settings."
)


def upscaled_view(ev: Result) -> dict:
    """For a result upscaled in the same job as it was made: its board (bicubic | upscaled) and the
    clip it was made from; {} for any other result."""
    made_from = ev.metadata.get("upscaled_from")
    if not made_from:
        return {}
    return {
        "board": player_html(upscale_cells(ev.path, ev.metadata), zoom=True),
        "base": str(Path(ev.path).with_name(made_from["name"])),
    }


@dataclass
class T2VTab:
    controls: dict[str, gr.components.Component]  # by T2VRequest field
    video: gr.Video
    image: gr.Image
    last: gr.State  # this session's latest result path
    previous: gr.State  # the one before it
    compare_prev: gr.Button
    upscale4: gr.Button  # "Upscale 4x": the last result to the Upscale tab, run there
    send_choice: gr.Dropdown
    send: gr.Button
    event: gr.events.Dependency  # the generate event, to chain history refreshes on


def settings_values(request: dict) -> dict:
    """A stored request -> values for the tab's controls, by name. The tab sets width and height
    alone: a request saved as a square (`size`, width and height 0) reopens as that square."""
    values = control_values(request, T2VRequest)
    return values | {"width": values["width"] or values["size"], "height": values["height"] or values["size"]}


class T2VHandlers(Handler):
    """The engine calls behind the tab; plain methods so tests can drive them without a browser."""

    request_type = T2VRequest
    preview_frames = None  # every frame of the preview, side by side
    stopped = "Stopped. Clips already finished are kept in History."

    def run(self, session: str = "local", folder=None, batch=1, **values):
        """Yields dicts per event: reading first, then status/progress, preview, result (+ results so
        far; + board, upscaled and base when it was upscaled in the same job), or error (+ cancelled).
        A batch runs consecutive seeds, one job each."""
        token = self.tokens[session] = CancelToken()
        first = self.request(values)
        yield {"reading": self.reading(first.prompt, first.frames, first.rewrite)}
        results: list[str] = []
        n = max(1, int(batch or 1))
        for k in range(n):
            req, tag = replace(first, seed=first.seed + k), f"{k + 1}/{n} · " if n > 1 else ""
            for ev in self.updates(req, token, folder, tag):
                if "result" in ev:
                    results.append(ev["result"])
                    ev["results"] = list(results)
                yield ev
                if "error" in ev:
                    return

    def result(self, req: T2VRequest, ev: Result) -> dict:
        style = f" · style {req.lora} x{req.lora_scale:g}" if req.lora else ""
        out = self.done(ev, f"seed {req.seed}{style}") | upscaled_view(ev)
        if "upscaled" in out:
            height, width = req.frame_shape
            out["status"] += f" (the {width}x{height} clip is in History too)"
        return out

    def reading(self, prompt, frames=32, rewrite=True) -> str:
        """How the prompt rewriter reads a prompt ('' when off, empty or the model has none)."""
        req = T2VRequest(prompt=prompt or "", frames=int(frames or 1), rewrite=bool(rewrite))
        found = self.engine.rewrite(req)
        return found.describe() if found is not None else ""


def build_t2v_tab(engine, tokens: dict[str, CancelToken], concurrency_id: str, spaces: Spaces):
    """Build the tab inside the current Blocks context; the caller wires what crosses tabs."""
    h = T2VHandlers(engine, tokens)
    limits = engine.limits_for("generator")  # what the loaded model's position tables allow
    styles = engine.lora_names()
    world = engine.models.rewriter is not None
    gr.Markdown(KNOWS if world else OWN_MODEL.format(name=engine.models.folder.name), elem_id="t2v-knows")
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(
                label="Prompt",
                lines=2,
                placeholder=EXAMPLES[0] if world else "",
                max_length=MAX_PROMPT_CHARS,
                elem_id="t2v-prompt",
            )
            negative = gr.Textbox(
                label="Negative prompt", placeholder="what the clip should not show", max_length=MAX_PROMPT_CHARS
            )
            reading = gr.Markdown("", elem_id="t2v-reading")
            if world:
                gr.Examples(EXAMPLES, inputs=[prompt], label="Examples the default model knows")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="t2v-seed")
                dice = gr.Button("Random", scale=0, min_width=80, elem_id="t2v-dice")
                batch = gr.Slider(1, 8, value=1, step=1, label="Batch (seeds in a row)", elem_id="t2v-batch")
            with gr.Accordion("Settings", open=False):
                steps = gr.Slider(1, 100, value=T2VRequest(prompt="").steps, step=1, label="Steps")
                guidance = gr.Slider(1.0, 15.0, value=T2VRequest(prompt="").guidance, step=0.5, label="Guidance")
                frames = gr.Slider(
                    1, limits.max_frames, value=min(32, limits.max_frames), step=1, label="Frames (1 = an image)"
                )
                # The sides in the model's patch steps, up to its position tables; 64 is what the
                # shipped model was trained at (other shapes work, further from it less well).
                side = dict(minimum=limits.size_multiple, step=limits.size_multiple)
                with gr.Row():
                    width = gr.Slider(
                        **side, maximum=limits.max_width, value=64, label="Width (px)", elem_id="t2v-width"
                    )
                    height = gr.Slider(
                        **side, maximum=limits.max_height, value=64, label="Height (px)", elem_id="t2v-height"
                    )
                schedule = gr.Dropdown(["linear-quadratic", "linear"], value="linear-quadratic", label="Schedule")
                rewrite = gr.Checkbox(
                    value=True,
                    label="Rewrite the prompt (the model is given its reading, shown under the prompt)",
                    elem_id="t2v-rewrite",
                )
                has_animator = engine.models.animator is not None
                factorised = gr.Checkbox(
                    value=False,
                    label="Through an image: make the first frame as a picture, then animate it (Emu Video)",
                    info=None if has_animator else "off: this model has no animation model",
                    interactive=has_animator,
                    elem_id="t2v-factorised",
                )
            # Styles (LoRA adapters) the model folder has; the row is not shown without any.
            with gr.Row(visible=bool(styles), elem_id="t2v-style"):
                lora = gr.Dropdown(
                    [("none", ""), *((name, name) for name in styles)],
                    value="",
                    label="Style (LoRA)",
                    elem_id="t2v-lora",
                )
                lora_scale = gr.Slider(
                    0.0, MAX_LORA_SCALE, value=1.0, step=0.05, label="Style strength", elem_id="t2v-lora-scale"
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
                upscale4 = upscale4_button(engine, "t2v-upscale4")
                send_choice = gr.Dropdown([], label="Send result to", scale=2, elem_id="t2v-send-choice")
                send = gr.Button("Send", scale=1, elem_id="t2v-send")
    controls = dict(
        prompt=prompt,
        negative_prompt=negative,
        seed=seed,
        steps=steps,
        guidance=guidance,
        frames=frames,
        width=width,
        height=height,
        schedule=schedule,
        rewrite=rewrite,
        factorised=factorised,
        upscale=upscale,
        lora=lora,
        lora_scale=lora_scale,
    )
    last = gr.State(None)  # this session's latest result (path)
    previous = gr.State(None)  # the one before it, for "compare with previous"

    dice.click(lambda: random.randint(0, 2**31 - 1), None, seed)
    # The reading follows the prompt as it is typed: the rewriter is tiny (milliseconds on a CPU).
    for trigger in (prompt.change, frames.change, rewrite.change):
        trigger(h.reading, [prompt, frames, rewrite], reading, queue=False, show_progress="hidden")

    def fill(ev: dict, out: dict, given: dict) -> None:
        if "reading" in ev:
            out[reading] = ev["reading"]
        if "result" in ev:
            path, up = ev["result"], "board" in ev
            is_image = path.endswith(".png")
            # Upscaled in the same job: it plays beside its bicubic enlargement instead.
            out[video] = gr.Video(value=None if is_image or up else path, visible=not (is_image or up))
            out[image] = gr.Image(value=path if is_image and not up else None, visible=is_image and not up)
            out[board] = gr.HTML(value=ev.get("board", ""), visible=up)
            out[upscale4] = gr.Button(interactive=engine.models.upsampler is not None and not up)
            # The run's own copy of the two paths: a batch moves them on with each result.
            given["previous"], given["last"] = (given["last"] or given["previous"]), path
            out[last], out[previous] = given["last"], given["previous"]
            if len(ev["results"]) > 1:
                thumbs = [str(Path(p).with_name(Path(p).stem + ".thumb.png")) for p in ev["results"]]
                out[shelf] = gr.Gallery(value=thumbs, visible=True)

    inputs = controls | {"batch": batch, "last": last, "previous": previous}
    shows = [status, preview, video, image, board, upscale4, shelf, last, previous, reading]
    event = h.wire(go, stop, inputs, shows, fill, spaces, concurrency_id).event
    return T2VTab(controls, video, image, last, previous, compare_prev, upscale4, send_choice, send, event)
