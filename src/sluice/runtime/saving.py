"""The coordinator's writer: saves object states and checkpoints, then commits the events they follow from.

The coordinator hands over, after starting to publish what a batch of events caused, the waiters of
those publications (``Bus.publish_many_nowait``), copies of the states that changed, the offset of the
last event applied (the checkpoint), new latest outputs and the applied messages. A thread of its own
waits until the bus has written the publications, writes the rest to the state store and then commits
the messages on the bus, in the order handed over; hand-overs that queue up while it writes are merged into one write
(the newest copy of each state wins). Publishing, saving and committing therefore keep their order
(what is saved was published; what is committed was saved), while the coordinator goes on applying
events during the write. A failed write is raised in the coordinator's thread at its next call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from sluice.bus.base import Consumer, Message
from sluice.state.base import LatestOutput, ObjectState, StateStore, object_row


def copy_state(s: ObjectState) -> ObjectState:
    """A copy of ``s`` that later changes to ``s`` do not reach."""
    return ObjectState(*object_row("", s)[1:])


class StateWriter:
    """Writes one run's states to ``state`` (project ``project``) in a background thread; see the module doc."""

    def __init__(self, state: StateStore, run_id: str, project: str) -> None:
        self.state = state
        self.run_id = run_id
        self.project = project
        self._states: dict[int, ObjectState] = {}
        self._checkpoint: int | None = None
        self._outputs: list[LatestOutput] = []
        self._applied: list[tuple[Consumer, list[Message]]] = []
        self._published: list[Callable[[], None]] = []
        self._cond = threading.Condition()
        self._writing = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=f"state-writer-{run_id}", daemon=True)
        self._thread.start()

    def submit(
        self,
        states: Sequence[ObjectState],
        applied: Sequence[Message] = (),
        consumer: Consumer | None = None,
        outputs: Sequence[LatestOutput] = (),
        published: Sequence[Callable[[], None]] = (),
    ) -> None:
        """Queue copies of ``states``, the checkpoint (the last of ``applied``), ``outputs`` and the commit of
        ``applied`` on ``consumer``, to be written once every waiter of ``published`` has returned (the bus has
        written what those events caused). Raises the error of an earlier write (or publication) that failed."""
        copies = [copy_state(s) for s in states]
        with self._cond:
            self._raise()
            for s in copies:
                self._states[s.object_id] = s
            if applied:
                self._checkpoint = applied[-1].offset
                if consumer is not None:
                    self._applied.append((consumer, list(applied)))
            self._outputs.extend(outputs)
            self._published.extend(published)
            self._cond.notify()

    def flush(self) -> None:
        """Wait until everything submitted is written and committed; raises the error of a failed write."""
        with self._cond:
            while (self._pending() or self._writing) and self._error is None:
                self._cond.wait()
            self._raise()

    def close(self) -> None:
        """Write what is queued, then stop the thread (errors are raised by :meth:`flush`, not here)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=60)

    def _pending(self) -> bool:
        return bool(self._states or self._outputs or self._applied or self._published or self._checkpoint is not None)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending() and not self._closed:
                    self._cond.wait()
                if not self._pending() or self._error is not None:
                    return
                states, self._states = list(self._states.values()), {}
                checkpoint, self._checkpoint = self._checkpoint, None
                outputs, self._outputs = self._outputs, []
                applied, self._applied = self._applied, []
                published, self._published = self._published, []
                self._writing = True
            try:
                for wait in published:  # what is saved and committed was published
                    wait()
                if states or checkpoint is not None:
                    self.state.save(self.run_id, states, checkpoint=checkpoint)
                if outputs:
                    self.state.record_outputs(self.project, outputs)
                for consumer, messages in applied:
                    consumer.commit(messages)
            except BaseException as exc:  # handed to the coordinator's thread
                with self._cond:
                    self._error = exc
                    self._writing = False
                    self._cond.notify_all()
                return
            with self._cond:
                self._writing = False
                self._cond.notify_all()
