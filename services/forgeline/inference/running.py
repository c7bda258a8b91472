"""The requests running in an inference core: by id, with who started them, the served name
they asked for and the engine they run on.

The engine is remembered per request because it can differ from the one its served name
has now: after a rollout (`forgeline.inference.rollout`) a request started on the old
engine finishes there, and aborting it must reach that engine. The owner (any object
standing for the caller) lets a call act only on the request it started, never on another
call's request holding the same id.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from forgeline.client.exceptions import AlreadyExists, InvalidArgument
from forgeline.inference.served import ServedEntry

if TYPE_CHECKING:
    from forgeline.inference.engine import Engine

# Request ids are chosen by clients and reused in engine calls and logs: printable, no spaces.
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass(frozen=True)
class Running:
    """One running request."""

    served: ServedEntry
    engine: Engine
    owner: object | None


class RunningRequests:
    """Every request running in one core, by id."""

    def __init__(self) -> None:
        self._by_id: dict[str, Running] = {}

    def start(
        self, request_id: str, served: ServedEntry, engine: Engine, owner: object | None
    ) -> str:
        """Records a request about to run; returns its id (one is picked when empty).

        Raises:
            InvalidArgument: the id is not 1-128 printable ASCII characters.
            AlreadyExists: a running request holds the id.
        """
        request_id = request_id or uuid.uuid4().hex
        if not REQUEST_ID.fullmatch(request_id):
            raise InvalidArgument("request_id", "use 1-128 printable ASCII characters")
        if request_id in self._by_id:
            raise AlreadyExists("request", request_id)
        self._by_id[request_id] = Running(served, engine, owner)
        served.running.add(request_id)
        return request_id

    def finish(self, request_id: str) -> None:
        """Forgets a request that ended; its served name learns when none runs on it."""
        running = self._by_id.pop(request_id, None)
        if running is None:
            return
        running.served.running.discard(request_id)
        if not running.served.running:
            running.served.drained.set()

    def get(self, request_id: str, owner: object | None = None) -> Running | None:
        """The running request with this id (only if `owner` started it, when given)."""
        running = self._by_id.get(request_id)
        if running is None or (owner is not None and running.owner is not owner):
            return None
        return running

    def of_base(self, base: ServedEntry) -> list[tuple[str, Running]]:
        """The requests on a base model or on its adapters."""
        return [
            (request_id, running)
            for request_id, running in self._by_id.items()
            if running.served is base or running.served.base == base.name
        ]

    def on_engine(self, engine: Engine) -> list[str]:
        """Ids of the requests running on `engine`."""
        return [request_id for request_id, r in self._by_id.items() if r.engine is engine]
