"""'Send to': any result can become another tab's input. A tab registers a target once (a name,
the tab to switch to, the component that takes the file, and any other of its components to set
with it: the part of the tab it is for); every result view then offers it. Most tabs only have to
call `register`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from .events import user_error


@dataclass
class Target:
    name: str
    tab_id: str
    component: gr.components.Component
    convert: Callable[[str, Any], Any]  # (media path, current value) -> new value
    also: tuple[tuple[gr.components.Component, Any], ...] = ()  # (component, value) set with it


class SendTo:
    def __init__(self, tabs: gr.Tabs):
        self.tabs = tabs
        self.targets: list[Target] = []

    def register(
        self,
        name: str,
        tab_id: str,
        component,
        convert: Callable[[str, Any], Any] | None = None,
        also: tuple[tuple[gr.components.Component, Any], ...] = (),
    ) -> None:
        """`also`: other components of the tab set when a file is sent here, e.g. the Animate tab's
        part, so a clip sent to be continued arrives in "Continue a clip" with that part shown."""
        self.targets.append(Target(name, tab_id, component, convert or (lambda path, _old: path), also))

    def names(self) -> list[str]:
        return [t.name for t in self.targets]

    def _also(self) -> list[gr.components.Component]:
        """The components targets set besides their own, each once (by identity: several targets
        may set the same one)."""
        out: list[gr.components.Component] = []
        for t in self.targets:
            out += [c for c, _ in t.also if all(c is not o for o in out)]
        return out

    def wire(self, button: gr.Button, choice: gr.Dropdown, media_path: gr.components.Component) -> None:
        """Make `button` send the file in `media_path` to the target picked in `choice`."""
        also = self._also()
        outputs = [self.tabs] + [t.component for t in self.targets] + also

        def send(name, path, *current):
            if not path:
                raise user_error("Nothing to send yet: generate or pick a result first.")
            target = next((t for t in self.targets if t.name == name), None)
            if target is None:
                raise user_error(f"Pick where to send it: {', '.join(self.names())}.")
            values = [
                t.convert(path, cur) if t is target else gr.skip() for t, cur in zip(self.targets, current, strict=True)
            ]
            extra = [next((v for c, v in target.also if c is other), gr.skip()) for other in also]
            return [gr.Tabs(selected=target.tab_id), *values, *extra]

        button.click(send, [choice, media_path] + [t.component for t in self.targets], outputs)
