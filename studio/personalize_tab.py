"""Personalize tab: a picture of a character and a prompt in, a clip of that character doing what
the prompt says out (Movie Gen's personalized text-to-video), played beside the reference.

The reference is an upload (PNG, JPEG or WebP of any size), a character saved earlier, or a frame
taken from a result (sent here from any tab or History) or from an uploaded clip. As soon as one is
chosen the tab shows it as the model will see it (the character found on its plain background,
centred, 64x64) with what was done to it, or why it cannot be used. A reference can be kept under a
name for later (studio/characters.py); picking one makes it the reference again.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from engine.requests import MAX_PROMPT_CHARS, CancelToken, Error, Preview, Progress, Result
from engine.tasks import PersonalizeRequest
from engine.video_io import VideoInputError, content_digest, read_image, write_png

from .characters import CharacterNameError, CharacterStore
from .compare import CSS, JS, Cell, player_html
from .edit_tab import VIDEO_TYPES
from .events import (
    live_preview,
    made_from,
    preview_html,
    progress_event,
    save_npy,
    session_key,
    shown_files_error,
    stream_updates,
    write_shown,
)
from .spaces import Spaces
from .t2v_tab import large_preview_strip, preview_strip, then_upscale

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
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # stills; a GIF is probed as a clip
TAKE_MAX_SIDE = 256  # frames to take a reference from are kept at most this large (the model sees 64)
TAKE_MAX_FRAMES = 256  # and at most this many (a longer clip is sampled evenly in time)


@dataclass
class PersonalizeControls:
    reference: gr.Image
    named: gr.State  # {"sha256", "name"}: the saved character the reference is, when it is one
    prompt: gr.Textbox
    seed: gr.Number
    steps: gr.Slider
    guidance: gr.Slider
    reference_guidance: gr.Slider
    frames: gr.Slider
    schedule: gr.Dropdown
    upscale: gr.Dropdown

    def as_list(self) -> list:
        return [
            self.reference,
            self.named,
            self.prompt,
            self.seed,
            self.steps,
            self.guidance,
            self.reference_guidance,
            self.frames,
            self.schedule,
            self.upscale,
        ]


@dataclass
class PersonalizeTab:
    controls: PersonalizeControls
    handlers: PersonalizeHandlers
    clip: gr.File  # a clip to take a frame from ("Send to Personalize" puts results here)
    pick: gr.Dropdown  # the saved characters (the studio refreshes the list on page load)
    board: gr.HTML
    last: gr.State  # this session's latest result (path)
    upscale4: gr.Button
    send_choice: gr.Dropdown
    send: gr.Button
    event: gr.events.Dependency  # the generate event, to chain history refreshes on


def request_from(
    reference, reference_name, prompt, seed, steps, guidance, reference_guidance, frames, schedule, upscale=0
) -> PersonalizeRequest:
    return PersonalizeRequest(
        reference=str(reference or ""),
        prompt=prompt or "",
        reference_name=reference_name or "",
        seed=int(seed if seed is not None else 0),
        steps=int(steps),
        guidance=float(guidance),
        reference_guidance=float(reference_guidance),
        frames=int(frames),
        schedule=schedule or "linear-quadratic",
        upscale=int(upscale or 0),
    )


def settings_values(request: dict, reference: str | None) -> list:
    """A stored personalize request -> values for the tab's controls (the order of
    PersonalizeControls.as_list); `reference` is the image to load (the result's own copy of its
    reference), and keeps the character's name when it had one."""
    d = PersonalizeRequest(reference="", prompt="")
    get = lambda k: request.get(k, getattr(d, k))  # noqa: E731
    name = get("reference_name")
    named = {"sha256": content_digest(reference), "name": name} if reference and name else None
    keys = ("prompt", "seed", "steps", "guidance", "reference_guidance", "frames", "schedule", "upscale")
    return [reference, named, *(get(k) for k in keys)]


class PersonalizeHandlers:
    """The engine calls behind the tab; plain methods so tests can drive them without a browser.

    `workdir` keeps what the tab shows besides results (references as the model sees them, frames
    taken from clips), named by content; `characters` is the store of saved characters."""

    def __init__(self, engine, tokens: dict[str, CancelToken], workdir: str | Path, characters: CharacterStore):
        self.engine = engine
        self.tokens = tokens
        self.workdir = Path(workdir)
        self.characters = characters

    # -- the reference --------------------------------------------------------------------------
    def load(self, reference) -> dict:
        """A reference as the model will see it: {"view" (a PNG of it), "summary", "digest"};
        {"error"} with the reason when it cannot be used; {} for none."""
        if not reference:
            return {}
        try:
            ref = self.engine.inspect("personalize", str(reference))
        except VideoInputError as e:  # engine.reference_image.ReferenceImageError is one
            return {"error": str(e)}
        view = self.workdir / f"reference-{ref.digest[:16]}.png"
        if not view.is_file():
            try:
                write_shown(view, ref.write)
            except OSError as e:
                return shown_files_error(e, Path(reference).name)
        return {"view": str(view), "summary": ref.summary, "digest": ref.digest, "image": ref.frames[0]}

    @staticmethod
    def reference_name(reference, named: dict | None) -> str:
        """The saved character's name when `reference` (a loaded reference, or a path) is that
        character's image (by content), else ''."""
        if not (reference and named and named.get("sha256")):
            return ""
        if isinstance(reference, dict):
            digest = reference.get("digest", "")
        else:
            digest = content_digest(reference) if Path(reference).is_file() else ""
        return str(named.get("name") or "") if digest and digest[:16] == named["sha256"][:16] else ""

    def reference_line(self, loaded: dict | None, named: dict | None = None) -> str:
        """The line under the reference: what was done to it, or why it cannot be used."""
        if not loaded:
            return "Upload a picture of your character, pick a saved one, or take a frame from a result."
        if "error" in loaded:
            return f"**{loaded['error']}**"
        name = self.reference_name(loaded, named)
        who = f"**{name}** (saved character) · " if name else ""
        return f"{who}As the model sees it: {loaded['summary']}"

    @staticmethod
    def reference_for(media: str | Path, meta: dict) -> str | None:
        """The reference to reopen a result with: its own copy beside it (what the model saw),
        else the file it was made from when that is still there, else None."""
        media = Path(media)
        made_from = meta.get("upscaled_from")
        if made_from:  # made and upscaled in one job: the clip it was made from keeps the reference
            meta = _meta_beside(media.with_name(made_from["name"])) or meta
        name = meta.get("files", {}).get("reference")
        if name and "/" not in name and "\\" not in name and (media.parent / name).is_file():
            return str(media.parent / name)
        ref = meta.get("request", {}).get("reference")
        return str(ref) if ref and Path(ref).is_file() else None

    # -- taking a frame -------------------------------------------------------------------------
    def take_from(self, clip) -> dict:
        """A clip (or an image) to take a frame from: {"frames" (a .npy of them), "count", "name",
        "summary"}; {"error"} when it cannot be read; {} for none."""
        if not clip:
            return {}
        path = Path(clip)
        try:
            got = self.engine.take_frames(path)
        except VideoInputError as e:
            return {"error": str(e)}
        frames = got.frames
        npy = self.workdir / f"take-{got.digest[:16]}-{len(frames)}.npy"
        if not npy.is_file():
            try:
                write_shown(npy, lambda p: save_npy(p, frames))
            except OSError as e:
                return shown_files_error(e, path.name)
        return {
            "frames": str(npy),
            "count": len(frames),
            "name": path.stem,
            "digest": got.digest,
            "summary": f"{path.name}: {got.summary}",
        }

    def frame(self, taken: dict | None, k) -> np.ndarray | None:
        """Frame k of a clip loaded by take_from (clamped to the clip), or None."""
        if not taken or "frames" not in taken or not Path(taken["frames"]).is_file():
            return None
        frames = np.load(taken["frames"], mmap_mode="r")
        return np.array(frames[int(np.clip(int(k or 0), 0, len(frames) - 1))])

    def use_frame(self, taken: dict | None, k) -> str:
        """Frame k written as a PNG (named after the clip and the frame), to become the reference."""
        image = self.frame(taken, k)
        if image is None:
            raise ValueError("Send a result here (or upload a clip) first, then pick a frame.")
        k = int(np.clip(int(k or 0), 0, taken["count"] - 1))
        folder = self.workdir / f"frames-{taken['digest'][:16]}"
        return str(write_png(folder / f"{_safe_stem(taken['name'])}-frame-{k}.png", image))

    # -- saved characters -----------------------------------------------------------------------
    def save_character(
        self, name, loaded: dict | None, reference, replace=False, characters: CharacterStore | None = None
    ) -> tuple[str, dict]:
        """Keep the current reference under `name` in `characters` (default the tab's store): (the
        message, the new `named`). Raises CharacterNameError (a ValueError) with a message when it
        cannot."""
        if not loaded or "view" not in loaded:
            raise CharacterNameError("Choose a reference the model can read first; then save it under a name.")
        image = loaded.get("image")
        image = read_image(loaded["view"]) if image is None else image
        saved = (characters or self.characters).save(
            name, image, reference, loaded["digest"], loaded["summary"], bool(replace)
        )
        return f"Saved **{saved.name}**: pick it from the list to use it again.", {
            "sha256": loaded["digest"],
            "name": saved.name,
        }

    # -- generating -----------------------------------------------------------------------------
    def generate(
        self,
        reference,
        reference_name,
        prompt,
        seed,
        steps,
        guidance,
        reference_guidance,
        frames,
        schedule,
        upscale=0,
        session: str = "local",
        folder=None,
    ):
        """Yields dicts per event: status/progress, preview, then result + board (reference |
        result | upscaled), or error (+ cancelled)."""
        token = self.tokens[session] = CancelToken()
        req = request_from(
            reference, reference_name, prompt, seed, steps, guidance, reference_guidance, frames, schedule, upscale
        )
        for ev in self.engine.run(req, cancel=token, folder=folder):
            if isinstance(ev, Progress):
                yield progress_event(ev)
            elif isinstance(ev, Preview):
                if ev.step > req.steps:  # past the generation's steps: the upscale's
                    yield {"preview": large_preview_strip(ev.frames)}
                    continue
                frames_ = ev.frames[:: max(1, -(-len(ev.frames) // 8))]  # at most 8 frames side by side
                yield {"preview": preview_strip(frames_)}
            elif isinstance(ev, Result):
                how = "from cache" if ev.cached else f"in {ev.metadata['seconds']:.1f}s"
                made = made_from(ev)
                who = made.metadata.get("reference", {}).get("name", "")
                out = {"status": f"done {how} · {who}: “{req.prompt}” · seed {req.seed}", "result": str(ev.path)}
                if made is not ev:
                    (w, h), (big_w, big_h) = ev.metadata["input_size"], ev.metadata["size"]
                    out["upscaled"] = f"upscaled {req.upscale}x, {w}x{h} -> {big_w}x{big_h}"
                    out["status"] += f" · {out['upscaled']}"
                yield out | {"board": self.board(made.path, made.metadata, ev if made is not ev else None)}
            elif isinstance(ev, Error):
                yield {"status": ev.message, "error": ev.message, "cancelled": ev.cancelled}
                return

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
            (w, h), (big_w, big_h) = upscaled.metadata["input_size"], upscaled.metadata["size"]
            r = upscaled.metadata["request"]
            caption = f"{w}x{h} -> {big_w}x{big_h} · seed {r['seed']} · {r['steps']} steps"
            cells.append(Cell(upscaled.path, f"Upscaled {r['scale']}x", caption, fps, Path(upscaled.path).stem))
        return player_html(cells, zoom=upscaled is not None)

    def stop(self, session: str = "local") -> str:
        token = self.tokens.get(session)
        if token is not None:
            token.cancel()
        return "Stopped. Results already finished are kept in History."


def settings_line(req: dict) -> str:
    return " · ".join(
        [
            f"seed {req.get('seed', 0)}",
            f"{req.get('steps', '?')} steps",
            f"follow {req.get('guidance', '?')}",
            f"look like {req.get('reference_guidance', '?')}",
        ]
    )


def _meta_beside(media: Path) -> dict | None:
    try:
        return json.loads(Path(media).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None


def _safe_stem(name: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(name))[:60].strip("-.")
    return stem or "clip"


def build_personalize_tab(
    engine, tokens: dict[str, CancelToken], concurrency_id: str, workdir: str | Path, spaces: Spaces
) -> PersonalizeTab:
    """Build the tab inside the current Blocks context; the caller wires what crosses tabs. Saved
    characters are the signed-in user's own (see Spaces)."""
    h = PersonalizeHandlers(engine, tokens, workdir, spaces.shared.characters)
    characters_of = lambda request: spaces.of(request).characters  # noqa: E731
    d = PersonalizeRequest(reference="", prompt="")
    has = engine.models.personalizer is not None
    gr.Markdown(KNOWS if has else f"**Personalization is off: {NO_PERSONALIZER}.** " + KNOWS, elem_id="pt-knows")
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                reference = gr.Image(
                    label="Reference: your character alone",
                    type="filepath",
                    image_mode=None,  # the file as uploaded: the engine reads it (alpha, EXIF) itself
                    sources=["upload", "clipboard"],
                    height=220,
                    elem_id="pt-reference",
                )
                prepared = gr.Image(
                    label="What the model sees (64x64)",
                    interactive=False,
                    height=220,
                    format="png",
                    elem_id="pt-prepared",
                )
            reference_info = gr.Markdown(h.reference_line(None), elem_id="pt-reference-info")
            with gr.Accordion("Saved characters", open=True):
                with gr.Row():
                    pick = gr.Dropdown(
                        [] if spaces.per_user else spaces.shared.characters.names(),  # else filled on page load
                        value=None,
                        label="Use a saved character",
                        scale=3,
                        elem_id="pt-pick",
                    )
                    delete = gr.Button("Delete", variant="stop", scale=0, min_width=80, elem_id="pt-delete")
                with gr.Row():
                    save_name = gr.Textbox(
                        label="Save character as", max_length=40, placeholder="Stripey", scale=3, elem_id="pt-save-name"
                    )
                    replace = gr.Checkbox(value=False, label="replace", scale=0, min_width=90, elem_id="pt-replace")
                    save = gr.Button("Save", scale=0, min_width=80, elem_id="pt-save")
                characters_info = gr.Markdown("", elem_id="pt-characters-info")
            with gr.Accordion("Take a frame from a result", open=False) as take_row:
                clip = gr.File(
                    label="A result (send one here from any tab or History) or a clip",
                    file_types=VIDEO_TYPES,
                    type="filepath",
                    height=90,
                    elem_id="pt-clip",
                )
                take_info = gr.Markdown("", elem_id="pt-take-info")
                with gr.Row():
                    frame_view = gr.Image(
                        label="Frame", interactive=False, height=160, format="png", elem_id="pt-frame"
                    )
                    with gr.Column():
                        frame_k = gr.Slider(0, 1, value=0, step=1, label="Frame", visible=False, elem_id="pt-frame-k")
                        use = gr.Button("Use this frame", interactive=False, elem_id="pt-use-frame")
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
                upscale4 = gr.Button(
                    "Upscale 4x", interactive=engine.models.upsampler is not None, min_width=100, elem_id="pt-upscale4"
                )
                send_choice = gr.Dropdown([], label="Send result to", scale=2, elem_id="pt-send-choice")
                send = gr.Button("Send", scale=1, elem_id="pt-send")
    named = gr.State(None)
    controls = PersonalizeControls(
        reference, named, prompt, seed, steps, guidance, reference_guidance, frames, schedule, upscale
    )
    loaded = gr.State(None)  # the current reference as the model sees it (see PersonalizeHandlers.load)
    taken = gr.State(None)  # the clip to take a frame from (see PersonalizeHandlers.take_from)
    last = gr.State(None)

    dice.click(lambda: random.randint(0, 2**31 - 1), None, seed)

    # -- the reference: shown as the model sees it as soon as it is chosen ---------------------
    def on_reference(path, who, request: gr.Request = None):
        got = h.load(path)
        kept = {k: v for k, v in got.items() if k != "image"} or None
        name = h.reference_name(got, who)
        line = h.reference_line(got, who)
        ready = "Ready." if "view" in got else ("Choose another reference." if got else "Choose a reference to begin.")
        shown = gr.Dropdown(value=name if name in characters_of(request).names() else None)
        return kept, gr.Image(value=got.get("view")), line, shown, ready if has else gr.skip()

    reference.change(on_reference, [reference, named], [loaded, prepared, reference_info, pick, status])

    def on_pick(name, request: gr.Request = None):
        c = characters_of(request).get(name)
        if c is None:
            return gr.skip(), gr.skip(), f"**No saved character named “{name}”; it may have been deleted.**"
        return str(c.image), {"sha256": c.sha256, "name": c.name}, ""

    pick.input(on_pick, pick, [reference, named, characters_info])

    def on_save(name, got, path, over, request: gr.Request = None):
        characters = characters_of(request)
        try:
            message, who = h.save_character(name, got, path, over, characters)
        except CharacterNameError as e:
            return gr.skip(), gr.skip(), f"**{e}**", gr.skip(), gr.skip()
        except (OSError, ValueError) as e:  # a full disk, a folder another session just changed
            return gr.skip(), gr.skip(), f"**Could not save the character ({e}); try again.**", gr.skip(), gr.skip()
        return (
            who,
            gr.Dropdown(choices=characters.names(), value=who["name"]),
            message,
            h.reference_line(got, who),
            "",
        )

    save.click(
        on_save, [save_name, loaded, reference, replace], [named, pick, characters_info, reference_info, save_name]
    )

    def on_delete(name, who, got, request: gr.Request = None):
        characters = characters_of(request)
        if not name:
            return gr.skip(), "**Pick a saved character to delete first.**", gr.skip(), gr.skip()
        try:
            gone = characters.delete(name)
        except (OSError, ValueError) as e:
            return gr.skip(), f"**Could not delete “{name}” ({e}).**", gr.skip(), gr.skip()
        message = (
            f"Deleted **{name}**. Results made with it keep their own copy of its reference."
            if gone
            else f"**No saved character named “{name}”.**"
        )
        # The reference stays loaded, but no longer as that saved character.
        if who and who.get("name") == name:
            who = None
        return gr.Dropdown(choices=characters.names(), value=None), message, who, h.reference_line(got, who)

    delete.click(on_delete, [pick, named, loaded], [pick, characters_info, named, reference_info])

    # -- taking a frame from a result -----------------------------------------------------------
    def on_clip(path):
        got = h.take_from(path)
        if not got or "error" in got:
            message = f"**{got['error']}**" if got else ""
            off = (gr.Slider(visible=False), gr.Image(value=None), gr.Button(interactive=False))
            return None, message, *off, gr.skip()
        n, k = got["count"], got["count"] // 2
        return (
            got,
            f"{got['summary']} · pick a frame (0 to {n - 1})" if n > 1 else got["summary"],
            gr.Slider(minimum=0, maximum=max(1, n - 1), value=k, visible=n > 1),
            gr.Image(value=h.frame(got, k)),
            gr.Button(interactive=True),
            gr.Accordion(open=True),
        )

    clip.change(on_clip, clip, [taken, take_info, frame_k, frame_view, use, take_row])
    frame_k.change(lambda got, k: h.frame(got, k), [taken, frame_k], frame_view, queue=False, show_progress="hidden")

    def on_use(got, k):
        try:
            return h.use_frame(got, k), None
        except ValueError as e:
            raise gr.Error(str(e)) from None
        except OSError as e:  # a full disk
            raise gr.Error(shown_files_error(e, "the frame")["error"]) from None

    use.click(on_use, [taken, frame_k], [reference, named])

    # -- generating -----------------------------------------------------------------------------
    def run(
        reference,
        who,
        prompt,
        seed,
        steps,
        guidance,
        reference_guidance,
        frames,
        schedule,
        upscale,
        request: gr.Request,
        progress=gr.Progress(),
    ):
        session = session_key(request)
        name = h.reference_name(reference, who)  # the saved character's, if the reference is still it

        def fill(ev: dict, out: dict) -> None:
            if "preview" in ev:
                out[preview] = preview_html(ev["preview"])
            if "result" in ev:
                out[board] = ev["board"]
                out[last] = ev["result"]
                out[upscale4] = gr.Button(interactive=engine.models.upsampler is not None and "upscaled" not in ev)

        settings = (reference, name, prompt, seed, steps, guidance, reference_guidance, frames, schedule, upscale)
        yield from stream_updates(
            h.generate(*settings, session=session, folder=spaces.of(request).folder), progress, status, fill
        )

    event = go.click(
        run,
        controls.as_list(),
        [status, preview, board, last, upscale4],
        concurrency_limit=1,
        concurrency_id=concurrency_id,
    )

    def do_stop(request: gr.Request = None):
        return h.stop(session_key(request))

    # The token stops the engine within one step; cancelling the event frees the queue slot.
    stop.click(do_stop, None, status, cancels=[event], queue=False)
    return PersonalizeTab(controls, h, clip, pick, board, last, upscale4, send_choice, send, event)
