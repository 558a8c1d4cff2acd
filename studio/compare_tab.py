"""Compare tab: two to four results in lock-step (the player itself is in compare.py)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .compare import CSS, JS, compare_html
from .events import user_error
from .history import History
from .history_tab import results_picker
from .spaces import Spaces


@dataclass
class CompareTab:
    pick: gr.Dropdown
    go: gr.Button
    board: gr.HTML


def compare(history: History, ids) -> tuple:
    """(switch to the tab, the picked ids, the board) for 2-4 result ids; a clear error otherwise."""
    ids = list(ids or [])
    if not 2 <= len(ids) <= 4:
        raise user_error(f"Pick two to four results to compare (you picked {len(ids)}).")
    entries = [e for i in ids if (e := history.get(i)) is not None]
    if len(entries) < 2:
        raise user_error("Some of those results were deleted; refresh and pick again.")
    return gr.Tabs(selected="compare"), ids, compare_html(entries)


def build_compare_tab(spaces: Spaces) -> CompareTab:
    with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
        with gr.Row():
            pick = results_picker(spaces, "Results (2–4)", "compare-pick")
            go = gr.Button("Compare", variant="primary", scale=0, elem_id="compare-go")
        board = gr.HTML(compare_html([]), css_template=CSS, js_on_load=JS, elem_id="compare-board")
    return CompareTab(pick, go, board)
