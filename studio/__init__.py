"""The studio: Gradio Blocks UI only (no torch, no model code). build_ui(engine) -> gr.Blocks.

One module per tab builds its layout; this file wires what crosses tabs (reopen a result in its
tab, compare from history or right after a generation, send a result on, upscale the last result,
saved characters listed afresh on each page load).
All model work goes
through the one Engine, one job at a time: every engine event shares one concurrency_id with
limit 1, so waiting jobs see their queue position.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from . import animate_tab, edit_tab, personalize_tab, upscale_tab
from .animate_tab import TARGETS, build_animate_tab
from .compare import player_html, upscale_cells
from .compare_tab import build_compare_tab, compare
from .edit_tab import build_edit_tab
from .events import session_key, user_error
from .history import ANIMATIONS, EDITS
from .history_tab import build_history_tab, choices, gallery_items
from .personalize_tab import build_personalize_tab
from .sendto import SendTo
from .spaces import Spaces
from .t2v_tab import build_t2v_tab, settings_values
from .upscale_tab import build_upscale_tab

ENGINE_QUEUE = "engine"
GRADIO_CACHE_BOUND = (600, 3600)  # (how often, how old) in seconds: Blocks(delete_cache=...)
# Small clips are shown enlarged: keep their pixels sharp instead of smeared. (Gradio 6 takes
# page CSS in launch(), so app.py passes it.)
PAGE_CSS = (
    "video, #t2v-preview img, #edit-preview img, #upscale-preview img, #upscale-input-image img,"
    " #pt-preview img, #pt-prepared img, #pt-frame img, #history-gallery img,"
    " #an-preview img, #ex-preview img, #fi-preview img, #an-frame img { image-rendering: pixelated; }\n"
    # Gradio sizes gallery columns by item count: two results would each fill half the page.
    "#history-gallery .grid-container { grid-template-columns: repeat(auto-fill, minmax(120px, 150px)) !important; }\n"
    # A 64x64 reference (or a frame of a small clip) fills its box, pixel for pixel enlarged.
    "#pt-prepared img, #pt-frame img, #an-frame img { width: 100%; height: 100%; object-fit: contain; }"
)


def build_ui(engine, outputs_dir: str | Path | None = None, per_user: bool = False) -> gr.Blocks:
    """The studio on `engine`, its results in `outputs_dir`. With `per_user` (sign-in on), every
    signed-in user has their own results and saved characters (see spaces.py)."""
    spaces = Spaces(outputs_dir or engine.outputs_dir, per_user)
    history_of = lambda request: spaces.of(request).history  # noqa: E731
    tokens: dict = {}  # session -> CancelToken of its running job; emptied when the session ends
    # What the Edit and Upscale tabs show besides results (inputs as the model sees them, what
    # changed), named by their content; inside the outputs folder so the page may load it, in a
    # folder of its own so History does not list it.
    workdir = spaces.outputs / ".studio"

    # Gradio copies every file it serves (each result) into its temporary folder, which would grow
    # forever; every 10 minutes, files over an hour old go. (Previews are inline: no file per step.)
    with gr.Blocks(title="Shapes Studio", delete_cache=GRADIO_CACHE_BOUND) as demo:
        gr.Markdown("# Shapes Studio")
        signed_in = gr.Markdown("", visible=per_user, elem_id="signed-in")  # whose work this page shows
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Text to video", id="t2v", elem_id="tab-t2v"):
                t2v = build_t2v_tab(engine, tokens, ENGINE_QUEUE, spaces)
            with gr.Tab("Edit", id="edit", elem_id="tab-edit"):
                ed = build_edit_tab(engine, tokens, ENGINE_QUEUE, workdir, spaces)
            with gr.Tab("Personalize", id="personalize", elem_id="tab-personalize"):
                pt = build_personalize_tab(engine, tokens, ENGINE_QUEUE, workdir, spaces)
            with gr.Tab("Animate", id="animate", elem_id="tab-animate"):
                an = build_animate_tab(engine, tokens, ENGINE_QUEUE, workdir, spaces)
            with gr.Tab("Upscale", id="upscale", elem_id="tab-upscale"):
                up = build_upscale_tab(engine, tokens, ENGINE_QUEUE, workdir, spaces)
            hist = build_history_tab(spaces)
            cmp = build_compare_tab(spaces)

        # Where results can be sent.
        sendto = SendTo(tabs)
        sendto.register("Edit", "edit", ed.controls["video"])
        sendto.register("Personalize", "personalize", pt.clip)  # into its take-a-frame row
        for name, task in TARGETS:  # into the part it is sent for, that part shown
            sendto.register(name, "animate", an.parts[task].inbox, also=((an.part, task),))
        sendto.register("Upscale", "upscale", up.controls["video"])
        sendto.register("Compare", "compare", cmp.pick, lambda path, old: [*(old or [])[-3:], Path(path).stem])
        for choice, button, path in (
            (hist.send_choice, hist.send, hist.media_path),
            (t2v.send_choice, t2v.send, t2v.last),
            (ed.send_choice, ed.send, ed.last),
            (pt.send_choice, pt.send, pt.last),
            *((p.send_choice, p.send, p.last) for p in an.parts.values()),
            (up.send_choice, up.send, up.last),
        ):
            choice.choices = [(n, n) for n in sendto.names()]
            sendto.wire(button, choice, path)

        def refresh(current_pick, current_cmp, request: gr.Request = None):
            history = history_of(request)
            ids = {i for _, i in choices(history)}
            keep = lambda v: [x for x in (v or []) if x in ids]  # noqa: E731
            return (
                gr.Gallery(value=gallery_items(history)),
                gr.Dropdown(choices=choices(history), value=keep(current_pick)),
                gr.Dropdown(choices=choices(history), value=keep(current_cmp)),
            )

        lists = [hist.gallery, hist.pick, cmp.pick]
        for trigger in (hist.refresh.click, hist.tab.select, demo.load):
            trigger(refresh, [hist.pick, cmp.pick], lists)

        # Characters saved (or deleted) in another session show up on the next page load.
        def saved_characters(request: gr.Request = None):
            return gr.Dropdown(choices=spaces.of(request).characters.names())

        demo.load(saved_characters, None, pt.pick)

        def who(request: gr.Request = None):
            name = getattr(request, "username", None)
            return f"Signed in as **{name}**: History shows your results only · [Sign out](logout)" if name else ""

        if per_user:
            demo.load(who, None, signed_in)

        def end_session(request: gr.Request = None):
            """The page was closed: its job (if any) stops within a step, its token goes."""
            token = tokens.pop(session_key(request), None)
            if token is not None:
                token.cancel()

        demo.unload(end_session)

        # "Upscale 4x" after a result: it goes to the Upscale tab at 4x and runs there, so it ends up
        # playing beside its bicubic enlargement.
        def to_upscale(path):
            if not path:
                raise user_error("Nothing to upscale yet: make a result first.")
            return gr.Tabs(selected="upscale"), path, 4

        upscales = [
            up.run_after(button.click(to_upscale, last, [tabs, up.controls["video"], up.controls["scale"]]))
            for button, last in ((t2v.upscale4, t2v.last), (ed.upscale4, ed.last), (pt.upscale4, pt.last))
        ]
        for event in (t2v.event, ed.event, pt.event, *an.events, up.event, *upscales):
            event.then(refresh, [hist.pick, cmp.pick], lists)

        # The reopen outputs, tab by tab (each tab's controls, by name): the Upscale and Personalize
        # tabs' boards, then the Animate tab's part and its parts' controls and boards, last.
        fields = {
            "t2v": t2v.controls,
            "edit": ed.controls,
            "upscale": up.controls,
            "up_board": {"board": up.board},
            "personalize": pt.controls,
            "pt_board": {"board": pt.board},
            **an.fields(),
        }

        def filled(selected: str, **values: dict) -> list:
            """The reopen outputs: switch to `selected`; the given tabs' controls set from their values
            by name, all others skipped."""
            given = (values[k][name] if k in values else gr.skip() for k, named in fields.items() for name in named)
            return [gr.Tabs(selected=selected), *given]

        def reopen(entry_id, request: gr.Request = None):
            """A result's settings back in the tab that made it (the other tabs are left as they are);
            an upscale's input, and the result beside its bicubic enlargement, in the Upscale tab; a
            personalized clip's reference (its own copy) and settings, beside the result, in Personalize;
            an animation's picture(s) or clip and settings, beside the result, in its part of Animate."""
            e = history_of(request).get(entry_id) if entry_id else None
            if e is None:
                raise user_error("That result is gone; refresh the history.")
            if e.task in EDITS:  # an SDEdit too: the Edit tab in describe mode
                source = ed.handlers.source_for(e.meta)
                if source is None:
                    gr.Warning("The source of this edit is gone; upload it again.")
                return filled("edit", edit=edit_tab.settings_values(e.request, source))
            if e.task == "upscale":
                source = up.handlers.source_for(e.meta, e.media.parent)
                if source is None:
                    gr.Warning("The input of this upscale is gone; upload it again.")
                board = player_html(upscale_cells(e.media, e.meta), zoom=True)
                values = upscale_tab.settings_values(e.request, source)
                return filled("upscale", upscale=values, up_board={"board": board})
            if e.task == "personalize":
                reference = pt.handlers.reference_for(e.media, e.meta)
                if reference is None:
                    gr.Warning("The reference of this clip is gone; choose it again.")
                values = personalize_tab.settings_values(e.request, reference)
                board = pt.handlers.board(e.media, e.meta)
                return filled("personalize", personalize=values, pt_board={"board": board})
            if e.task in ANIMATIONS:
                values, warning = animate_tab.reopen_values(an.handlers, e.media, e.meta)
                if warning:
                    gr.Warning(warning)
                return filled("animate", **values)
            return filled("t2v", t2v=settings_values(e.request))

        hist.reopen.click(reopen, hist.selected, [tabs, *(c for named in fields.values() for c in named.values())])

        board = [tabs, cmp.pick, cmp.board]

        def compare_picked(ids, request: gr.Request = None):
            return compare(history_of(request), ids)

        hist.to_compare.click(compare_picked, hist.pick, board)
        cmp.go.click(compare_picked, cmp.pick, board)

        def compare_previous(last_path, prev_path, request: gr.Request = None):
            hist_ = history_of(request)
            ids = [Path(prev_path).stem, Path(last_path).stem] if last_path and prev_path else []
            if not ids:  # after a reload the page has forgotten its results: History has not
                newest = [e.id for e in hist_.entries()[:2]]
                if len(newest) < 2:
                    raise user_error("Make two results first; then they can be compared.")
                ids = newest[::-1]
            return compare(hist_, ids)

        t2v.compare_prev.click(compare_previous, [t2v.last, t2v.previous], board)
    return demo
