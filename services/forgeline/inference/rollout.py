"""Served models that follow their alias: a new version rolled in without failing a request.

A model loaded with `follow` (`forgeline deploy law@production --follow`) keeps its served
name on whatever version the alias points at. One follower task per such model asks the
registry every `follow_seconds` (`FORGELINE_INFERENCE_FOLLOW_SECONDS`) where the alias
points. When it points at another version, the follower rolls the model over:

1. pulls that version and starts a second engine for it, with the same engine options,
   while the old engine keeps serving;
2. checks that the new engine answers (one greedy token);
3. switches: the entry's engine and version change in one step on the event loop, so a new
   request goes wholly to the old engine or wholly to the new one, and the supervisor
   watches the new engine instead of the old (a death of the new engine fails the model
   exactly as before);
4. drains: requests already running on the old engine finish there (the core remembers
   each request's engine); any still running after `drain_seconds` are aborted;
5. stops the old engine.

When the new version cannot be pulled or started, or does not answer, its engine is
stopped, the old one keeps serving, and the reason becomes the model's `rollout_error`
(and is logged). The follower tries again only once the alias moves again; an alias moved
back to the serving version clears the error.

Adapters are refused on a followed model (`adapter_placement`): an adapter is trained on
one base version, and following would move the base under it.

Unloading the model (loading over it once FAILED, closing the service) stops its follower;
a rollout under way stops too, and its new engine with it. A model whose engine died is
FAILED and not rolled until it is loaded again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import aclosing
from typing import TYPE_CHECKING

from forgeline.client.exceptions import InvalidArgument
from forgeline.client.refs import parse_ref
from forgeline.inference.engine import Engine
from forgeline.inference.outputs import FinishReason
from forgeline.inference.requests import GenerateRequest
from forgeline.inference.resolver import check_loadable, pin
from forgeline.inference.sampling import SamplingParams
from forgeline.inference.served import ServedEntry, ServedState
from forgeline.v1 import registry_pb2

if TYPE_CHECKING:
    from forgeline.inference.core import InferenceCore

log = logging.getLogger(__name__)

# How often the registry is asked where a followed alias points.
FOLLOW_SECONDS = 5.0
# How long requests running on the old engine may take to finish before they are aborted.
DRAIN_SECONDS = 300.0
# How long a new engine may take to answer its check.
CHECK_SECONDS = 120.0
# How often a drain looks at the requests left, and how long aborted ones get to end.
_DRAIN_POLL_SECONDS = 0.05
_ABORT_GRACE_SECONDS = 5.0


class RolloutFailed(Exception):
    """A new version could not take over; the message says why."""


def check_follow(ref: str) -> None:
    """Checks that a model loaded with `follow` names an alias.

    Raises:
        InvalidArgument: on `follow`, `ref` is not a `name@alias` reference.
    """
    if parse_ref(ref).WhichOneof("selector") != "alias":
        raise InvalidArgument(
            "follow",
            f"follow needs a name@alias ref (e.g. {ref.split(':')[0]}@production); "
            f"{ref!r} names no alias",
        )


async def check_answers(engine: Engine, name: str) -> None:
    """Checks that an engine generates: one greedy token from a one-token prompt.

    Raises:
        RolloutFailed: it generated nothing, failed, or took over `CHECK_SECONDS`.
    """
    request = GenerateRequest(
        model=name, prompt_token_ids=(0,), sampling=SamplingParams(max_tokens=1, temperature=0)
    )
    tokens = 0
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            events = engine.generate(request, f"rollout-check-{uuid.uuid4().hex}", None)
            async with aclosing(events):
                async for event in events:
                    for delta in event.deltas:
                        if delta.finish_reason in (FinishReason.ABORT, FinishReason.ERROR):
                            raise RolloutFailed(f"its check ended {delta.finish_reason.name}")
                        tokens += len(delta.token_ids)
    except TimeoutError:
        raise RolloutFailed(f"it did not answer within {CHECK_SECONDS:g}s") from None
    except RolloutFailed:
        raise
    except Exception as exc:
        raise RolloutFailed(f"it failed its check: {type(exc).__name__}: {exc}") from exc
    if tokens < 1:
        raise RolloutFailed("it generated nothing")


class Rollouts:
    """The followers of one inference core's followed models.

    Args:
        core: The core whose entries, resolver, engine factory and supervisor are used.
    """

    def __init__(self, core: InferenceCore):
        self._core = core
        # Served name -> the followed entry and the task following it.
        self._followers: dict[str, tuple[ServedEntry, asyncio.Task]] = {}
        # Served name -> the old engine its requests are draining from.
        self._draining: dict[str, Engine] = {}

    def follow(self, entry: ServedEntry) -> None:
        """Starts following the alias of a READY entry loaded with `follow` (else nothing)."""
        if not entry.follows or entry.state is not ServedState.READY:
            return
        task = asyncio.create_task(self._follow(entry), name=f"follow-{entry.name}")
        self._followers[entry.name] = (entry, task)
        log.info("%s follows %s every %gs", entry.name, entry.follows, self._core.follow_seconds)

    def draining(self, name: str) -> list[Engine]:
        """The old engine whose requests are finishing for `name`, if a rollout drains one."""
        engine = self._draining.get(name)
        return [engine] if engine is not None else []

    async def stop(self, entry: ServedEntry) -> None:
        """Stops following `entry`; a rollout under way stops, its engines with it."""
        follower = self._followers.get(entry.name)
        if follower is None or follower[0] is not entry:
            return
        del self._followers[entry.name]
        follower[1].cancel()
        await asyncio.gather(follower[1], return_exceptions=True)

    async def close(self) -> None:
        """Stops every follower."""
        for entry, _ in list(self._followers.values()):
            await self.stop(entry)

    async def _follow(self, entry: ServedEntry) -> None:
        assert entry.version is not None
        seen = entry.version.number
        problem = ""
        while self._core._served.get(entry.name) is entry:
            await asyncio.sleep(self._core.follow_seconds)
            if entry.state is not ServedState.READY:
                continue  # FAILED: it serves again only once loaded again
            try:
                target = await asyncio.to_thread(self._core.resolver.resolve_version, entry.follows)
            except Exception as exc:
                # The registry is away, or the alias was deleted: keep serving, ask again.
                if str(exc) != problem:
                    log.warning(
                        "%s cannot tell where %s points: %s", entry.name, entry.follows, exc
                    )
                problem = str(exc)
                continue
            problem = ""
            if target.number == seen:
                continue
            seen = target.number
            assert entry.version is not None
            if target.number == entry.version.number:
                entry.rollout_error = ""  # moved back to what serves
                continue
            try:
                await self._roll(entry, target)
            except Exception:
                # A bug here must not end the following; the next move is tried anyway.
                log.exception("moving %s to %s failed", entry.name, pin(target))

    async def _roll(self, entry: ServedEntry, target: registry_pb2.Version) -> None:
        """Moves `entry` to `target`, or leaves it serving with `rollout_error` set."""
        name, old_engine, old_version = entry.name, entry.engine, entry.version
        assert old_engine is not None and old_version is not None
        log.info("%s moved to %s; starting it beside %s", entry.follows, pin(target), name)
        try:
            engine, version = await self._start_checked(entry, pin(target))
        except Exception as exc:  # RolloutFailed, or the registry's refusal to pull
            entry.rollout_error = f"{pin(target)}: {exc}"
            log.error("%s keeps serving %s: %s", name, pin(old_version), entry.rollout_error)
            return
        # The switch: no await between the check above and here.
        entry.engine, entry.version, entry.rollout_error = engine, version, ""
        self._core._engines.watch(name, engine, self._core.watch_seconds)
        self._draining[name] = old_engine
        log.info("%s serves %s; draining %s", name, pin(version), pin(old_version))
        try:
            await self._drain(name, old_engine)
        finally:
            if self._draining.get(name) is old_engine:
                del self._draining[name]
            await self._core._engines.stop(name, old_engine)

    async def _start_checked(
        self, entry: ServedEntry, pinned: str
    ) -> tuple[Engine, registry_pb2.Version]:
        """Pulls `pinned`, starts an engine for it and checks that it answers.

        Raises:
            RolloutFailed, Exception: why it cannot take over (no engine is left running).
        """
        core, name = self._core, entry.name
        path, version = await asyncio.to_thread(core.resolver.resolve_model_dir, pinned)
        check_loadable(version)
        try:
            engine = await core._engines.start(core.engine_factory, path, name, entry.options)
        except Exception as exc:
            raise RolloutFailed(f"the engine did not start: {type(exc).__name__}: {exc}") from exc
        try:
            await check_answers(engine, name)
            if core._served.get(name) is not entry or entry.state is not ServedState.READY:
                raise RolloutFailed(f"{name} stopped serving while the new engine started")
        except BaseException:
            await core._engines.stop(name, engine)
            raise
        return engine, version

    async def _drain(self, name: str, engine: Engine) -> None:
        """Waits until no request runs on `engine`, aborting those left after the drain time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._core.drain_seconds
        aborted = False
        while running := self._core._running.on_engine(engine):
            if loop.time() >= deadline:
                if aborted:
                    log.warning(
                        "%d requests on the old engine of %s did not end", len(running), name
                    )
                    return
                log.warning(
                    "aborting %d requests still running on the old engine of %s after %gs",
                    len(running),
                    name,
                    self._core.drain_seconds,
                )
                for request_id in running:
                    await engine.abort(request_id)
                aborted, deadline = True, loop.time() + _ABORT_GRACE_SECONDS
            await asyncio.sleep(_DRAIN_POLL_SECONDS)
