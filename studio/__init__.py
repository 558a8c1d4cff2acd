"""The studio: Gradio Blocks UI only (no torch, no model code). build_ui(engine) -> gr.Blocks.

All model work goes through the one Engine, one job at a time: every engine event shares one
concurrency_id with limit 1, so waiting jobs see their queue position.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from .compare import CSS as COMPARE_CSS
from .compare import JS as COMPARE_JS
from .compare import compare_html
from .history import History
from .sendto import SendTo
from .t2v_tab import build_t2v_tab, settings_values

ENGINE_QUEUE = "engine"
# Small clips are shown enlarged: keep their pixels sharp instead of smeared. (Gradio 6 takes
# page CSS in launch(), so app.py passes it.)
PAGE_CSS = "video, #t2v-preview img, #history-gallery img { image-rendering: pixelated; }"


def build_ui(engine, outputs_dir: str | Path | None = None) -> gr.Blocks:
    history = History(outputs_dir or engine.outputs_dir)
    tokens: dict = {}

    def choices():
        return [(e.label(), e.id) for e in history.entries()]

    def gallery_items():
        return [(str(e.thumb or e.media), f"{e.prompt} · seed {e.seed}") for e in history.entries()]

    with gr.Blocks(title="Shapes Studio") as demo:
        gr.Markdown("# Shapes Studio")
        with gr.Tabs(elem_id="tabs") as tabs:
            sendto = SendTo(tabs)
            with gr.Tab("Text to video", id="t2v", elem_id="tab-t2v"):
                t2v = build_t2v_tab(engine, tokens, ENGINE_QUEUE)
            with gr.Tab("History", id="history", elem_id="tab-history") as history_tab:
                with gr.Row():
                    refresh = gr.Button("Refresh", scale=0)
                    pick = gr.Dropdown(
                        choices(),
                        multiselect=True,
                        max_choices=4,
                        label="Pick 2–4 results to compare",
                        elem_id="history-pick",
                        scale=4,
                    )
                    to_compare = gr.Button("Compare selected", variant="primary", scale=0, elem_id="history-compare")
                gallery = gr.Gallery(
                    gallery_items(),
                    columns=8,
                    height="auto",
                    object_fit="contain",
                    allow_preview=False,
                    label="Results, newest first",
                    elem_id="history-gallery",
                )
                selected = gr.State(None)
                with gr.Row(visible=False) as detail:
                    with gr.Column(scale=2):
                        h_video = gr.Video(label="Result", interactive=False, loop=True)
                        h_image = gr.Image(label="Result", interactive=False, visible=False)
                    with gr.Column(scale=2):
                        h_info = gr.Markdown()
                        reopen = gr.Button("Reopen settings in its tab", elem_id="history-reopen")
                        download = gr.DownloadButton("Download")
                        with gr.Row():
                            send_choice = gr.Dropdown([], label="Send to", scale=3)
                            send = gr.Button("Send", scale=1)
                        h_path = gr.State(None)
                        delete = gr.Button("Delete", variant="stop", elem_id="history-delete")
            with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
                with gr.Row():
                    c_pick = gr.Dropdown(
                        choices(),
                        multiselect=True,
                        max_choices=4,
                        label="Results (2–4)",
                        elem_id="compare-pick",
                        scale=4,
                    )
                    c_go = gr.Button("Compare", variant="primary", scale=0, elem_id="compare-go")
                board = gr.HTML(
                    compare_html([]), css_template=COMPARE_CSS, js_on_load=COMPARE_JS, elem_id="compare-board"
                )

        # Where results can be sent. The edit and upscale tabs register here when they arrive.
        sendto.register("Compare", "compare", c_pick, lambda path, old: [*(old or [])[-3:], Path(path).stem])
        for choice, button, path in ((send_choice, send, h_path), (t2v.send_choice, t2v.send, t2v.last)):
            choice.choices = [(n, n) for n in sendto.names()]
            sendto.wire(button, choice, path)

        def refresh_all(current_pick=None, current_c=None):
            ids = {i for _, i in choices()}
            keep = lambda v: [x for x in (v or []) if x in ids]  # noqa: E731
            return (
                gr.Gallery(value=gallery_items()),
                gr.Dropdown(choices=choices(), value=keep(current_pick)),
                gr.Dropdown(choices=choices(), value=keep(current_c)),
            )

        for trigger in (refresh.click, history_tab.select, demo.load):
            trigger(refresh_all, [pick, c_pick], [gallery, pick, c_pick])
        t2v.event.then(refresh_all, [pick, c_pick], [gallery, pick, c_pick])

        def show(evt: gr.SelectData):
            entries = history.entries()
            if evt.index is None or evt.index >= len(entries):
                return None, gr.Row(visible=False), gr.skip(), gr.skip(), gr.skip(), gr.skip(), None
            e = entries[evt.index]
            info = f"**{e.prompt}**\n\n{e.settings_text()}\n\n{e.created} · model `{e.meta.get('model', '?')}`"
            return (
                e.id,
                gr.Row(visible=True),
                gr.Video(value=str(e.media) if e.is_video else None, visible=e.is_video),
                gr.Image(value=None if e.is_video else str(e.media), visible=not e.is_video),
                info,
                gr.DownloadButton(value=str(e.media)),
                str(e.media),
            )

        gallery.select(show, None, [selected, detail, h_video, h_image, h_info, download, h_path])

        def reopen_fn(entry_id):
            e = history.get(entry_id) if entry_id else None
            if e is None:
                raise gr.Error("That result is gone; refresh the history.")
            return [gr.Tabs(selected="t2v"), *settings_values(e.request)]

        reopen.click(reopen_fn, selected, [tabs, *t2v.controls.as_list()])

        def delete_fn(entry_id, current_pick, current_c):
            if not entry_id or not history.delete(entry_id):
                raise gr.Error("Nothing deleted: pick a result first.")
            return (None, gr.Row(visible=False), *refresh_all(current_pick, current_c))

        delete.click(delete_fn, [selected, pick, c_pick], [selected, detail, gallery, pick, c_pick])

        def compare_fn(ids):
            ids = list(ids or [])
            if not 2 <= len(ids) <= 4:
                raise gr.Error(f"Pick two to four results to compare (you picked {len(ids)}).")
            entries = [e for i in ids if (e := history.get(i)) is not None]
            return gr.Tabs(selected="compare"), ids, compare_html(entries)

        to_compare.click(compare_fn, pick, [tabs, c_pick, board])
        c_go.click(compare_fn, c_pick, [tabs, c_pick, board])

        def compare_previous(last_path, prev_path):
            if not (last_path and prev_path):
                raise gr.Error("Make two results first; then they can be compared.")
            return compare_fn([Path(prev_path).stem, Path(last_path).stem])

        t2v.compare_prev.click(compare_previous, [t2v.last, t2v.previous], [tabs, c_pick, board])
    return demo
