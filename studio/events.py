"""What every tab does with its handler's event stream: progress bar, status line, errors."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import gradio as gr


def stream_updates(events: Iterable[dict], progress, status, fill: Callable[[dict, dict], None]) -> Iterator[dict]:
    """Gradio updates for a tab's events: the progress bar and status line, an error as a warning
    (a stopped job is not one) that ends the stream; fill(event, updates) adds the tab's own."""
    for ev in events:
        if "progress" in ev:
            progress(ev["progress"], desc=ev["status"])
        if "error" in ev:
            if not ev.get("cancelled"):
                gr.Warning(ev["error"])
            yield {status: f"**{ev['error']}**"}
            return
        out = {status: ev["status"]} if "status" in ev else {}
        fill(ev, out)
        yield out
