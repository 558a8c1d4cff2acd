"""History tab: every saved result, newest first; open one to replay, download, reopen, send or delete."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .events import user_error
from .history import History
from .spaces import Spaces


@dataclass
class HistoryTab:
    tab: gr.Tab
    refresh: gr.Button
    pick: gr.Dropdown  # results chosen for comparing
    to_compare: gr.Button
    gallery: gr.Gallery
    selected: gr.State  # the open entry's id
    media_path: gr.State  # the open entry's file (for "send to")
    reopen: gr.Button
    send_choice: gr.Dropdown
    send: gr.Button


def choices(history: History) -> list[tuple[str, str]]:
    return [(e.label(), e.id) for e in history.entries()]


def gallery_items(history: History) -> list[tuple[str, str]]:
    return [(str(e.thumb or e.media), f"{e.prompt} · seed {e.seed}") for e in history.entries()]


def results_picker(spaces: Spaces, label: str, elem_id: str) -> gr.Dropdown:
    """A row's picker of 2-4 results, by label, newest first (a signed-in user's filled on page load)."""
    initial = [] if spaces.per_user else choices(spaces.shared.history)
    return gr.Dropdown(initial, multiselect=True, max_choices=4, label=label, elem_id=elem_id, scale=4)


def entry_at(entries: list, index):
    """The entry a gallery selection names. Event data comes from the page: anything but an index
    into the list (a string, a bool, out of range) selects nothing; [row, column] takes the row."""
    if isinstance(index, list | tuple) and index:
        index = index[0]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(entries):
        return None
    return entries[index]


def build_history_tab(spaces: Spaces) -> HistoryTab:
    """The signed-in user's results only (see Spaces); everyone's without sign-in."""
    history_of = lambda request: spaces.of(request).history  # noqa: E731
    with gr.Tab("History", id="history", elem_id="tab-history") as tab:
        with gr.Row():
            refresh = gr.Button("Refresh", scale=0)
            pick = results_picker(spaces, "Pick 2–4 results to compare", "history-pick")
            to_compare = gr.Button("Compare selected", variant="primary", scale=0, elem_id="history-compare")
        gallery = gr.Gallery(
            [] if spaces.per_user else gallery_items(spaces.shared.history),
            columns=8,
            height="auto",
            object_fit="contain",
            allow_preview=False,
            label="Results, newest first",
            elem_id="history-gallery",
        )
        selected = gr.State(None)
        media_path = gr.State(None)
        with gr.Row(visible=False) as detail:
            with gr.Column(scale=2):
                video = gr.Video(label="Result", interactive=False, loop=True)
                image = gr.Image(label="Result", interactive=False, visible=False)
            with gr.Column(scale=2):
                info = gr.Markdown()
                reopen = gr.Button("Reopen settings in its tab", elem_id="history-reopen")
                download = gr.DownloadButton("Download")
                with gr.Row():
                    send_choice = gr.Dropdown([], label="Send to", scale=3)
                    send = gr.Button("Send", scale=1)
                delete = gr.Button("Delete", variant="stop", elem_id="history-delete")

    def show(evt: gr.SelectData, request: gr.Request = None):
        e = entry_at(history_of(request).entries(), evt.index)
        if e is None:
            return None, gr.Row(visible=False), gr.skip(), gr.skip(), gr.skip(), gr.skip(), None
        text = f"**{e.prompt}**\n\n{e.settings_text()}\n\n{e.created} · model `{e.meta.get('model', '?')}`"
        return (
            e.id,
            gr.Row(visible=True),
            gr.Video(value=str(e.media) if e.is_video else None, visible=e.is_video),
            gr.Image(value=None if e.is_video else str(e.media), visible=not e.is_video),
            text,
            gr.DownloadButton(value=str(e.media)),
            str(e.media),
        )

    gallery.select(show, None, [selected, detail, video, image, info, download, media_path])

    def delete_fn(entry_id, current_pick, request: gr.Request = None):
        history = history_of(request)
        if not entry_id or not history.delete(entry_id):
            raise user_error("Nothing deleted: pick a result first.")
        ids = {i for _, i in choices(history)}
        return (
            None,
            gr.Row(visible=False),
            gr.Gallery(value=gallery_items(history)),
            gr.Dropdown(choices=choices(history), value=[x for x in (current_pick or []) if x in ids]),
        )

    delete.click(delete_fn, [selected, pick], [selected, detail, gallery, pick])
    return HistoryTab(tab, refresh, pick, to_compare, gallery, selected, media_path, reopen, send_choice, send)
