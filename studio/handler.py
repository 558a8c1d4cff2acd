"""What every generating tab (Text to video, Edit, Personalize, Upscale) shares: its request built
from the request dataclass's fields by name, whose job a cancel token is and Stop, the engine's
events as the dicts a tab shows, and its run and Stop buttons wired into the page.

A tab's controls are a dict {name: component}, named by the request's fields: the page passes
their values to the run by those names (Gradio's inputs_kwargs), and the request is built from the
same names, so no list of fields has to be kept in order anywhere. A name that is no field of the
request is the tab's own (the Edit tab's mode, the Personalize tab's saved character); a field no
control sets keeps its default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_type_hints

import gradio as gr
import numpy as np

from engine.requests import CancelToken, Error, Preview, Progress, Result

from .events import preview_html, progress_event, session_key, stream_updates, write_shown
from .spaces import Spaces

Update = dict[str, Any]  # an engine event as a tab shows it: "status", "progress", "preview", "result", "error"...
Fill = Callable[[Update, dict, dict[str, Any]], None]  # (event, the page's updates, the run's inputs by name)
THEN_UPSCALE = [("off", 0), ("2x", 2), ("4x", 4)]  # a generating request's `upscale`
NO_UPSAMPLER = "this model has no upsampler"
R = TypeVar("R")


def request_from(cls: type[R], values: Mapping[str, Any]) -> R:
    """A `cls` request from values named by its fields (other names are ignored). Each is cast to
    its field's type, since Gradio hands over numbers as floats; an empty control (None, '') gives
    the field's default ('' for a required one: the request then says what is missing)."""
    types = get_type_hints(cls)
    given = {}
    for f in fields(cls):
        value = values.get(f.name)
        if value is None or value == "":
            if f.default is not MISSING:
                continue
            value = ""
        given[f.name] = types[f.name](value)
    return cls(**given)


def control_values(request: Mapping[str, Any], *types: type) -> dict[str, Any]:
    """A stored request's settings by field name, to reopen it in its tab: what it recorded, else
    the default of the first of `types` with that field ('' for a required one)."""
    out: dict[str, Any] = {}
    for cls in reversed(types):
        out |= {f.name: "" if f.default is MISSING else f.default for f in fields(cls)}
    return out | {k: v for k, v in request.items() if k in out}


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


def upscale4_button(engine, elem_id: str) -> gr.Button:
    """ "Upscale 4x" after a result: it goes to the Upscale tab and runs there (see studio/__init__.py)."""
    return gr.Button("Upscale 4x", interactive=engine.models.upsampler is not None, min_width=100, elem_id=elem_id)


def shown_once(path: Path, write: Callable[[Path], object]) -> Path:
    """A file a tab shows, named by its content: written once, complete or not there (see
    write_shown); raises OSError when it cannot be written."""
    return path if path.is_file() else write_shown(path, write)


def fill_board(board: gr.HTML, last: gr.State, upscale4: gr.Button | None = None, upsampler: bool = False) -> Fill:
    """What most tabs show of a result: its board and its path (for "Send to"); "Upscale 4x" on
    unless the result was upscaled in the same job already."""

    def fill(ev: Update, out: dict, _given: dict) -> None:
        if "result" in ev:
            out[board], out[last] = ev["board"], ev["result"]
            if upscale4 is not None:
                out[upscale4] = gr.Button(interactive=upsampler and "upscaled" not in ev)

    return fill


@dataclass(frozen=True)
class Wired:
    """A tab's run as wired into the page, to start it from another event as well."""

    event: gr.events.Dependency  # its run button's
    start: Callable[[Callable], gr.events.Dependency]  # start(trigger), e.g. start(dependency.success)


class Handler:
    """The engine calls behind a generating tab: plain methods, so tests drive them without a
    browser. A tab names its request type and says what a result shows (`result`)."""

    request_type: ClassVar[type]
    preview_frames: ClassVar[int | None] = 8  # at most this many frames side by side in a preview; None: all
    stopped: ClassVar[str] = "Stopped. Results already finished are kept in History."

    def __init__(self, engine, tokens: dict[str, CancelToken], workdir: str | Path | None = None) -> None:
        self.engine = engine
        self.tokens = tokens  # session -> the cancel token of its running job (shared by every tab)
        # What the tab shows besides results (uploads as the model sees them), named by content;
        # Text to video shows none.
        self.workdir = Path(workdir or ".")

    def request(self, values: Mapping[str, Any]):
        return request_from(self.request_type, values)

    def run(self, session: str = "local", folder: str | Path | None = None, **values) -> Iterator[Update]:
        """One job, from values named by the request's fields: yields status/progress, preview, then
        the result (see `result`), or an error (+ cancelled). Results go to `folder` (default the
        engine's outputs folder)."""
        token = self.tokens[session] = CancelToken()
        yield from self.updates(self.request(values), token, folder)

    def updates(self, req, token: CancelToken, folder=None, tag: str = "") -> Iterator[Update]:
        """The engine's events for one request, as the tab shows them; `tag` goes before the status
        ('2/3 · ' in a batch)."""
        for ev in self.engine.run(req, cancel=token, folder=folder):
            if isinstance(ev, Progress):
                yield progress_event(ev, tag)
            elif isinstance(ev, Preview):
                yield {"preview": self.preview(req, ev)}
            elif isinstance(ev, Result):
                out = self.result(req, ev)
                yield out | {"status": tag + out["status"]}
            elif isinstance(ev, Error):
                yield {"status": ev.message, "error": ev.message, "cancelled": ev.cancelled}

    def preview(self, req, ev: Preview) -> np.ndarray:
        if ev.step > req.steps:  # past the request's own steps: the upscale that follows in the same job
            return large_preview_strip(ev.frames)
        k = self.preview_frames
        return preview_strip(ev.frames if k is None else ev.frames[:: max(1, -(-len(ev.frames) // k))])

    def result(self, req, ev: Result) -> Update:
        """{"status", "result" (its path), ...what the tab shows of it}."""
        raise NotImplementedError

    @staticmethod
    def done(ev: Result, what: str) -> Update:
        """A result as a tab shows it: its path, and the status "done in 1.2s · <what>", with how it was
        upscaled when that was in the same job ("upscaled" too)."""
        how = "done from cache" if ev.cached else f"done in {ev.metadata['seconds']:.1f}s"
        out = {"status": f"{how} · {what}", "result": str(ev.path)}
        if ev.metadata.get("upscaled_from"):
            (w, h), (big_w, big_h) = ev.metadata["input_size"], ev.metadata["size"]
            out["upscaled"] = f"upscaled {ev.metadata['request']['scale']}x, {w}x{h} -> {big_w}x{big_h}"
            out["status"] += f" · {out['upscaled']}"
        return out

    def stop(self, session: str = "local") -> str:
        token = self.tokens.get(session)
        if token is not None:
            token.cancel()
        return self.stopped

    # -- in the page ------------------------------------------------------------------------------
    def wire(
        self,
        go: gr.Button,
        stop: gr.Button,
        inputs: Mapping[str, gr.components.Component],
        shows: list[gr.components.Component],
        fill: Fill,
        spaces: Spaces,
        concurrency_id: str,
    ) -> Wired:
        """Run on `go` with the values of `inputs` (named components), into `shows` (the status line
        first, the live preview second, then what `fill` updates); Stop stops it. Every engine event
        shares one concurrency id with limit 1, so waiting jobs see their queue position."""
        status, preview = shows[:2]

        def run(request: gr.Request, progress=gr.Progress(), **values):
            def show(ev: Update, out: dict) -> None:
                if "preview" in ev:
                    out[preview] = preview_html(ev["preview"])
                fill(ev, out, values)

            events = self.run(session_key(request), spaces.of(request).folder, **values)
            yield from stream_updates(events, progress, status, show)

        kwargs = dict(inputs_kwargs=dict(inputs), outputs=shows, concurrency_limit=1, concurrency_id=concurrency_id)
        event = go.click(run, **kwargs)

        def stop_job(request: gr.Request = None) -> str:
            return self.stop(session_key(request))

        # The token stops the engine within one step; cancelling the event frees the queue slot.
        stop.click(stop_job, None, status, cancels=[event], queue=False)

        def start(trigger: Callable) -> gr.events.Dependency:
            started = trigger(run, **kwargs)
            stop.click(None, None, None, cancels=[started], queue=False)
            return started

        return Wired(event, start)
