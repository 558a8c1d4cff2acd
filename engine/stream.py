"""The bridge between a sampling loop and the events a caller iterates: the loop runs on a worker
thread with a callback, each step's events are handed over as they happen, and a caller that stops
listening (or a Stop) ends the loop within one step."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from queue import Queue

import numpy as np
import torch

from .requests import Cancelled, CancelToken, Event


def until_cancelled(parts: Iterable[np.ndarray], cancel: CancelToken) -> Iterator[np.ndarray]:
    """The parts of a clip decoded as it is written, ending the job (Cancelled) once it is stopped:
    what was written of it is removed (see results.write_result)."""
    for part in parts:
        if cancel.cancelled:
            raise Cancelled
        yield part


def stream_steps(run, on_step, events: list) -> Iterator[Event]:
    """Run `run(callback)` on a worker thread, yielding the events each step appends.

    The sampler stays an ordinary loop with a callback. Each step waits until the caller has
    handled that step's events, so a cancel set while handling them stops the very next step.
    """
    q: Queue = Queue()
    result: dict = {}
    abandoned = threading.Event()  # the caller stopped listening (closed the generator)

    def target() -> None:
        def cb(step, total, x1_hat):
            on_step(step, total, x1_hat)
            while events:
                q.put(events.pop(0))
            q.join()  # back-pressure: wait for the consumer
            if abandoned.is_set():
                raise Cancelled

        try:
            with torch.no_grad():  # grad mode is per thread
                result["latents"] = run(cb)
        except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread
            result["error"] = e
        q.put(None)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    finished = False
    try:
        while (item := q.get()) is not None:
            try:
                yield item
            finally:
                q.task_done()
        q.task_done()
        finished = True
    finally:
        if not finished:  # drain, so the worker wakes up, sees `abandoned` and stops
            abandoned.set()
            while True:
                item = q.get()
                q.task_done()
                if item is None:
                    break
        th.join()
    if "error" in result:
        raise result["error"]
    return result["latents"]
