"""Who may use a model's one KV cache: a lock, and a ticket per generation.

A `Model` holds one session (a KV cache and scratch buffers), so two generations cannot
run on it at once. The choice here is to wait, not to fail: every call that touches the
session (`generate` as a whole, each `Stepper.step`, `forward`, `reset`, `score`) holds
`Session.lock`, so calls from several Python threads take turns and each gets the
result it would have had alone. The lock is re-entrant: an `on_token` callback may call
the model on the same thread.

Taking turns is not enough for steppers, whose generation spans many calls: a second
`start()` (or a `generate`, `forward`, `reset`, `score`) in between would reuse the
cache under the first one. So each of those takes a new ticket (`claim`), and a stepper
whose ticket is no longer the latest refuses to step (`StaleStepperError`) instead of
producing text from someone else's cache. An abandoned stepper holds nothing: it is
simply never stepped again.

Numba's thread count is per Python thread, so `use` also sets it on whichever thread
is stepping (the notebook's, or a dashboard's worker) from the model's setting.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from workbench.errors import StaleStepperError
from workbench.kernels.jit import set_threads


class Session:
    """The lock and the current ticket of one model's session."""

    def __init__(self, threads: Callable[[], int]):
        self.lock = threading.RLock()
        self._threads = threads
        self._ticket = 0

    def claim(self) -> int:
        """A new ticket: from now on only its holder may use the session. Call under `lock`."""
        self._ticket += 1
        return self._ticket

    @contextlib.contextmanager
    def take(self):
        """Hold the session for a call that resets or extends the cache on its own
        (`forward`, `reset`, `score`): any stepper started before is stale after it."""
        with self.lock:
            self.claim()
            set_threads(self._threads())
            yield

    @contextlib.contextmanager
    def use(self, ticket: int):
        """Hold the session for one step of the generation holding `ticket`, if it is
        still the latest."""
        with self.lock:
            if ticket != self._ticket:
                raise StaleStepperError(
                    "this generation was superseded: a later start(), generate(), forward(), reset() or score() "
                    "on the same model reused its KV cache; start a new one")
            set_threads(self._threads())
            yield
