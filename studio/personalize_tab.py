"""Personalize tab: a picture of a character and a prompt in, a clip of that character doing what
the prompt says out (Movie Gen's personalized text-to-video), played beside the reference.

The reference is chosen in its own panel (studio/reference_panel.py: an upload, a saved character,
or a frame taken from a result or a clip), shown as the model will see it as soon as it is chosen.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from engine.requests import MAX_PROMPT_CHARS, CancelToken, Result
from engine.tasks import PersonalizeRequest
from engine.video_io import content_digest

from .characters import CharacterStore
from .compare import CSS, JS, Cell, player_html, upscaled_cell
from .events import live_preview, made_from
from .handler import Handler, control_values, fill_board, request_from, then_upscale, upscale4_button
from .reference_panel import References, build_reference_panel
from .spaces import Spaces

EXAMPLES = [
    "the character moving right on a green background",
    "it is growing on a black background",
    "my character moving up over a white backdrop",
]
KNOWS = (
    "Give the model **a picture of your character** and say what it does. The default model knows "
    "characters of the shapes world: a circle, square, triangle or star filled with stripes, checks or dots "
    "in two colours, alone on a plain background (a PNG, JPEG or WebP of any size). Call it *the character*, "
    "*it* or *my character* in the prompt: it can move left, right, up or down, stand still, grow or shrink, "
    "on a plain background you name. Save a character to use it again later, or take a frame from a result."
)
NO_PERSONALIZER = "this model has no personalization model (no 'personalize' folder in its model folder)"


@dataclass
class PersonalizeTab:
    controls: dict[str, gr.components.Component]  # by PersonalizeRequest field, and `named`
    handlers: PersonalizeHandlers
    clip: gr.File  # a clip to take a frame from ("Send to Personalize" puts results here)
    pick: gr.Dropdown  # the saved characters (the studio refreshes the list on page load)
    board: gr.HTML
    last: gr.State  # this session's latest result (path)
    upscale4: gr.Button
    send_choice: gr.Dropdown
    send: gr.Button
    event: gr.events.Dependency  # the generate event, to chain history refreshes on


def settings_values(request: dict, reference: str | None) -> dict:
    """A stored personalize request -> values for the tab's controls, by name; `reference` is the
    image to load (the result's own copy of its reference), and keeps the character's name (as
    `named`) when it had one."""
    values = control_values(request, PersonalizeRequest)
    name = values["reference_name"]
    named = {"sha256": content_digest(reference), "name": name} if reference and name else None
    return values | {"reference": reference, "named": named}


class PersonalizeHandlers(References, Handler):
    """The engine calls behind the tab; plain methods so tests can drive them without a browser.

    `workdir` keeps what the tab shows besides results (references as the model sees them, frames
    taken from clips), named by content; `characters` is the store of saved characters."""

    request_type = PersonalizeRequest

    def __init__(self, engine, tokens: dict[str, CancelToken], workdir: str | Path, characters: CharacterStore):
        super().__init__(engine, tokens, workdir)
        self.characters = characters

    def request(self, values: Mapping) -> PersonalizeRequest:
        """The page says which saved character the reference is by `named`: its name goes in only
        while the reference is still that character."""
        name = self.reference_name(values.get("reference"), values.get("named"))
        return request_from(PersonalizeRequest, {"reference_name": name} | dict(values))

    def result(self, req: PersonalizeRequest, ev: Result) -> dict:
        """The result + board (reference | result | upscaled)."""
        made = made_from(ev)
        who = made.metadata.get("reference", {}).get("name", "")
        out = self.done(ev, f"{who}: “{req.prompt}” · seed {req.seed}")
        return out | {"board": self.board(made.path, made.metadata, ev if made is not ev else None)}

    @staticmethod
    def board(path, meta: dict, upscaled: Result | None = None) -> str:
        """The reference as the model saw it (the result's own copy) beside the result (and its
        upscale), in the synced player."""
        path = Path(path)
        req, ref = meta.get("request", {}), meta.get("reference", {})
        fps = float(req.get("fps") or 8.0)
        cells = []
        side = meta.get("files", {}).get("reference")
        if side and (path.parent / side).is_file():
            who = f"Reference: {ref['name']}" if ref.get("name") else "Reference"
            cells.append(Cell(path.parent / side, f"{who}, as the model sees it", ref.get("summary", ""), fps))
        cells.append(Cell(path, f"Result: {req.get('prompt', '')}", settings_line(req), fps, path.stem))
        if upscaled is not None:
            cells.append(upscaled_cell(upscaled.path, upscaled.metadata, fps))
        return player_html(cells, zoom=upscaled is not None)


def settings_line(req: dict) -> str:
    return " · ".join(
        [
            f"seed {req.get('seed', 0)}",
            f"{req.get('steps', '?')} steps",
            f"follow {req.get('guidance', '?')}",
            f"look like {req.get('reference_guidance', '?')}",
        ]
    )


def build_personalize_tab(
    engine, tokens: dict[str, CancelToken], concurrency_id: str, workdir: str | Path, spaces: Spaces
) -> PersonalizeTab:
    """Build the tab inside the current Blocks context; the caller wires what crosses tabs. Saved
    characters are the signed-in user's own (see Spaces)."""
    h = PersonalizeHandlers(engine, tokens, workdir, spaces.shared.characters)
    d = PersonalizeRequest(reference="", prompt="")
    has = engine.models.personalizer is not None
    gr.Markdown(KNOWS if has else f"**Personalization is off: {NO_PERSONALIZER}.** " + KNOWS, elem_id="pt-knows")
    with gr.Row():
        with gr.Column(scale=3):
            panel = build_reference_panel(h, spaces, has)
            prompt = gr.Textbox(
                label="Prompt", lines=2, placeholder=EXAMPLES[0], max_length=MAX_PROMPT_CHARS, elem_id="pt-prompt"
            )
            gr.Examples(EXAMPLES, inputs=[prompt], label="Prompts the default model knows")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="pt-seed")
                dice = gr.Button("Random", scale=0, min_width=80, elem_id="pt-dice")
                steps = gr.Slider(1, 100, value=d.steps, step=1, label="Steps", elem_id="pt-steps")
            with gr.Row():
                guidance = gr.Slider(
                    0.0, 15.0, value=d.guidance, step=0.5, label="Follow the prompt", elem_id="pt-guidance"
                )
                reference_guidance = gr.Slider(
                    0.0, 10.0, value=d.reference_guidance, step=0.25, label="Look like the reference", elem_id="pt-look"
                )
            with gr.Accordion("Settings", open=False):
                frames = gr.Slider(1, 64, value=d.frames, step=1, label="Frames (1 = an image)", elem_id="pt-frames")
                schedule = gr.Dropdown(["linear-quadratic", "linear"], value=d.schedule, label="Schedule")
            upscale = then_upscale(engine, "pt-then-upscale")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", interactive=has, elem_id="pt-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="pt-stop")
        with gr.Column(scale=4):
            status = gr.Markdown(
                "Choose a reference to begin." if has else f"**Personalization is off: {NO_PERSONALIZER}.**",
                elem_id="pt-status",
            )
            preview = live_preview("pt-preview")
            board = gr.HTML("", css_template=CSS, js_on_load=JS, elem_id="pt-board")
            with gr.Row():
                upscale4 = upscale4_button(engine, "pt-upscale4")
                send_choice = gr.Dropdown([], label="Send result to", scale=2, elem_id="pt-send-choice")
                send = gr.Button("Send", scale=1, elem_id="pt-send")
    panel.connect(status)
    controls = dict(
        reference=panel.reference,
        named=panel.named,
        prompt=prompt,
        seed=seed,
        steps=steps,
        guidance=guidance,
        reference_guidance=reference_guidance,
        frames=frames,
        schedule=schedule,
        upscale=upscale,
    )
    last = gr.State(None)

    dice.click(lambda: random.randint(0, 2**31 - 1), None, seed)
    fill = fill_board(board, last, upscale4, engine.models.upsampler is not None)
    event = h.wire(go, stop, controls, [status, preview, board, last, upscale4], fill, spaces, concurrency_id).event
    return PersonalizeTab(controls, h, panel.clip, panel.pick, board, last, upscale4, send_choice, send, event)
