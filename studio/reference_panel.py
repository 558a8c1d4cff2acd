"""The Personalize tab's reference: an upload (PNG, JPEG or WebP of any size), a character saved
earlier, or a frame taken from a result (sent here from any tab or History) or from an uploaded
clip. As soon as one is chosen it is shown as the model will see it (read by the engine: the
character found on its plain background, centred, 64x64) with what was done to it, or why it
cannot be used. A reference can be kept under a name for later (studio/characters.py); picking
one makes it the reference again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from engine.requests import RequestError
from engine.video_io import VideoInputError, content_digest, write_png

from .characters import CharacterNameError, CharacterStore
from .events import VIDEO_TYPES, shown_files_error, user_error
from .frames import FrameTaking
from .handler import shown_once
from .spaces import Spaces


class References(FrameTaking):
    """The reference's handlers (a part of PersonalizeHandlers): plain methods, so tests drive them
    without a browser. `workdir` keeps references as the model sees them and frames taken from
    clips (see FrameTaking), named by content; `characters` is the store of saved characters."""

    engine: Any
    workdir: Path
    characters: CharacterStore

    # -- the reference --------------------------------------------------------------------------
    def load(self, reference) -> dict:
        """A reference as the model will see it: {"view" (a PNG of it), "picture" (a PNG of the
        upload as it was read: the page shows this, never the file itself), "summary", "digest"};
        {"error"} with the reason when it cannot be used; {} for none."""
        if not reference:
            return {}
        try:
            ref = self.engine.inspect("personalize", str(reference))
        except (VideoInputError, RequestError) as e:  # engine.reference_image.ReferenceImageError is one
            return {"error": str(e)}
        picture = ref.info["picture"]
        try:
            view = shown_once(self.workdir / f"reference-{ref.digest[:16]}.png", ref.write)
            shown = shown_once(self.workdir / f"upload-{ref.digest[:16]}.png", lambda p: write_png(p, picture))
        except OSError as e:
            return shown_files_error(e, Path(reference).name)
        return {
            "view": str(view),
            "picture": str(shown),
            "summary": ref.summary,
            "digest": ref.digest,
            "image": ref.frames[0],
        }

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
        if image is None:  # the page keeps the loaded reference without its pixels: read again, as the engine does
            image = self.engine.inspect("personalize", str(reference)).frames[0]
        saved = (characters or self.characters).save(
            name, image, reference, loaded["digest"], loaded["summary"], bool(replace)
        )
        return f"Saved **{saved.name}**: pick it from the list to use it again.", {
            "sha256": loaded["digest"],
            "name": saved.name,
        }


@dataclass
class ReferencePanel:
    reference: gr.File  # the upload, a path: the engine reads it (Gradio's Image would decode it first)
    named: gr.State  # {"sha256", "name"}: the saved character the reference is, when it is one
    pick: gr.Dropdown  # the saved characters (the studio refreshes the list on page load)
    clip: gr.File  # a clip to take a frame from ("Send to Personalize" puts results here)
    connect: Callable[[gr.Markdown], None]  # wires it, with the tab's status line (built after it)


def build_reference_panel(h: References, spaces: Spaces, has: bool) -> ReferencePanel:
    """The reference's part of the tab, inside the current Blocks context; `has`: the model has a
    personalization model. Saved characters are the signed-in user's own (see Spaces)."""
    characters_of = lambda request: spaces.of(request).characters  # noqa: E731
    with gr.Row():
        with gr.Column():
            # A file, not gr.Image: Gradio's Image opens the upload with Pillow before any handler
            # runs, so a bad one got Gradio's own error (naming the server's path) instead of the
            # engine's message. The engine reads it; the page shows the picture as it was read.
            reference = gr.File(
                label="Reference: your character alone (an image)",
                file_types=["image"],
                type="filepath",
                height=90,
                elem_id="pt-reference",
            )
            picture = gr.Image(label="Your picture", interactive=False, height=120, format="png", elem_id="pt-picture")
        prepared = gr.Image(
            label="Model's view (64x64)",  # short: the box's buttons cover a longer label
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
            frame_view = gr.Image(label="Frame", interactive=False, height=160, format="png", elem_id="pt-frame")
            with gr.Column():
                frame_k = gr.Slider(0, 1, value=0, step=1, label="Frame", visible=False, elem_id="pt-frame-k")
                use = gr.Button("Use this frame", interactive=False, elem_id="pt-use-frame")
    named = gr.State(None)
    loaded = gr.State(None)  # the current reference as the model sees it (see References.load)
    taken = gr.State(None)  # the clip to take a frame from (see References.take_from)

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
            raise user_error(str(e)) from None
        except OSError as e:  # a full disk
            raise user_error(shown_files_error(e, "the frame")["error"]) from None

    use.click(on_use, [taken, frame_k], [reference, named])

    def connect(status: gr.Markdown) -> None:
        # The reference is shown as the model sees it as soon as it is chosen.
        def on_reference(path, who, request: gr.Request = None):
            got = h.load(path)
            kept = {k: v for k, v in got.items() if k != "image"} or None
            name = h.reference_name(got, who)
            line = h.reference_line(got, who)
            ready = (
                "Ready." if "view" in got else ("Choose another reference." if got else "Choose a reference to begin.")
            )
            shown = gr.Dropdown(value=name if name in characters_of(request).names() else None)
            views = gr.Image(value=got.get("picture")), gr.Image(value=got.get("view"))
            return kept, *views, line, shown, ready if has else gr.skip()

        outputs = [loaded, picture, prepared, reference_info, pick, status]
        reference.change(on_reference, [reference, named], outputs)

    return ReferencePanel(reference, named, pick, clip, connect)


def _meta_beside(media: Path) -> dict | None:
    try:
        return json.loads(Path(media).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
