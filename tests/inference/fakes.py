"""A fake engine with the `Engine` interface: words in, words out, no model; and a fake
registry whose aliases tests can move.

Tokens are whitespace-separated words. A base engine answers with the words of
`BASE_WORDS`, an adapter with `ADAPTER_WORDS`, one word per step, so routing, stop
strings, length limits, aborts and usage can be checked without vLLM.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from forgeline.client.exceptions import NotFound
from forgeline.client.refs import parse_ref
from forgeline.inference.engine import EngineDead
from forgeline.inference.options import EngineOptions
from forgeline.inference.outputs import (
    CompletionDelta,
    FinishReason,
    GenerateEvent,
    TokenizeResult,
    Usage,
)
from forgeline.inference.requests import GenerateRequest, TokenizeRequest
from forgeline.inference.sampling import resolve_max_tokens
from forgeline.v1 import registry_pb2

BASE_WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
ADAPTER_WORDS = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"]


@dataclass(frozen=True)
class FakeAdapter:
    """Handle of an adapter added to a `FakeEngine`."""

    name: str
    path: Path


@dataclass
class FakeEngine:
    """An engine that streams words; `step` seconds between tokens."""

    path: Path
    served_name: str
    options: EngineOptions
    max_model_len: int = 64
    step: float = 0.0
    adapters: list[str] = field(default_factory=list)
    running: dict[str, asyncio.Event] = field(default_factory=dict)
    aborted: list[str] = field(default_factory=list)
    # Requests whose stream was closed before they finished (the consumer went away).
    closed_early: list[str] = field(default_factory=list)
    stopped: bool = False
    dead: bool = False
    # Starts, but every stream ends at once without output.
    mute: bool = False

    def _prompt_tokens(self, request: GenerateRequest) -> list[str]:
        if request.messages is not None:
            words = [w for m in request.messages for w in f"{m.role}: {m.content}".split()]
            return [*words, "assistant:"] if request.add_generation_prompt else words
        if request.prompt_token_ids is not None:
            return [str(i) for i in request.prompt_token_ids]
        return (request.prompt or "").split()

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResult:
        """Word indices."""
        words = self._prompt_tokens(request.as_generate())
        return TokenizeResult(tuple(range(len(words))), self.max_model_len)

    async def generate(
        self, request: GenerateRequest, request_id: str, adapter: FakeAdapter | None = None
    ) -> AsyncIterator[GenerateEvent]:
        """Streams words one at a time for each of the `n` completions."""
        if self.dead:
            raise EngineDead("the fake engine is dead")
        if self.mute:
            return
        prompt = self._prompt_tokens(request)
        sampling = request.sampling
        budget = resolve_max_tokens(
            sampling.max_tokens, len(prompt), self.max_model_len, 16, input_field="prompt"
        )
        words = ADAPTER_WORDS if adapter is not None else BASE_WORDS
        abort = self.running[request_id] = asyncio.Event()
        texts = ["" for _ in range(sampling.n)]
        produced = 0
        complete = False
        try:
            for step in range(budget):
                if self.step:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(abort.wait(), self.step)
                if self.dead:  # died mid-stream
                    raise EngineDead("the fake engine is dead")
                if abort.is_set():
                    yield GenerateEvent(
                        request_id,
                        tuple(
                            CompletionDelta(i, "", (), finish_reason=FinishReason.ABORT)
                            for i in range(sampling.n)
                        ),
                        usage=Usage(len(prompt), produced),
                    )
                    complete = True
                    return
                word = words[step % len(words)]
                piece = word if step == 0 else f" {word}"
                deltas = []
                finished = False
                for i in range(sampling.n):
                    text = texts[i] + piece
                    stop = next((s for s in sampling.stop if s in text), None)
                    reason = None
                    if stop is not None:
                        kept = (
                            text
                            if sampling.include_stop_str_in_output
                            else text[: text.index(stop)]
                        )
                        piece_i = kept[len(texts[i]) :]
                        reason, finished = FinishReason.STOP, True
                    else:
                        piece_i = piece
                        if step == budget - 1:
                            reason, finished = FinishReason.LENGTH, True
                    texts[i] += piece_i
                    produced += 1
                    deltas.append(
                        CompletionDelta(
                            i,
                            piece_i,
                            (step,),
                            finish_reason=reason,
                            stop_reason=stop or "",
                        )
                    )
                yield GenerateEvent(
                    request_id,
                    tuple(deltas),
                    usage=Usage(len(prompt), produced) if finished else None,
                )
                if finished:
                    complete = True
                    return
        finally:
            self.running.pop(request_id, None)
            if not complete:
                self.closed_early.append(request_id)

    async def add_adapter(self, name: str, path: Path) -> FakeAdapter:
        """Records the adapter."""
        self.adapters.append(name)
        return FakeAdapter(name, path)

    async def remove_adapter(self, handle: FakeAdapter) -> None:
        """Forgets the adapter."""
        self.adapters.remove(handle.name)

    async def abort(self, request_id: str) -> None:
        """Ends a running stream with ABORT."""
        self.aborted.append(request_id)
        if request_id in self.running:
            self.running[request_id].set()

    def unfinished_requests(self) -> int:
        """Streams running now."""
        return len(self.running)

    def failure(self) -> str | None:
        """Why the engine cannot serve (set `dead` to make it die), or None."""
        return "the fake engine is dead" if self.dead else None

    async def shutdown(self) -> None:
        """Marks the engine stopped."""
        self.stopped = True


class FakeEngineFactory:
    """Engine factory for `InferenceCore` that records the engines it starts.

    Args:
        step: Seconds between tokens of its engines.
        fail_for: Served names whose engine fails to start.
        start_seconds: How long starting an engine takes (the engine exists only after it).

    Attributes:
        fail_paths: Model folders whose engine fails to start.
        mute_paths: Model folders whose engine starts but generates nothing.
    """

    def __init__(
        self, step: float = 0.0, fail_for: set[str] | None = None, start_seconds: float = 0.0
    ):
        self.step = step
        self.fail_for = fail_for or set()
        self.start_seconds = start_seconds
        self.fail_paths: set[Path] = set()
        self.mute_paths: set[Path] = set()
        self.engines: dict[str, FakeEngine] = {}
        # Every engine started, in order (a name loaded twice has two).
        self.started: list[FakeEngine] = []
        # The folder of every start asked for, in order, including those that failed.
        self.attempts: list[Path] = []

    async def __call__(self, path: Path, served_name: str, options: EngineOptions) -> FakeEngine:
        """Starts a fake engine, or fails for names in `fail_for` and `fail_paths`."""
        self.attempts.append(path)
        if self.start_seconds:
            await asyncio.sleep(self.start_seconds)
        if served_name in self.fail_for or path in self.fail_paths:
            raise RuntimeError("out of memory")
        engine = FakeEngine(
            path, served_name, options, step=self.step, mute=path in self.mute_paths
        )
        self.engines[served_name] = engine
        self.started.append(engine)
        return engine


class AliasResolver:
    """A registry stand-in for the core: numbered versions of models, each an empty folder
    under `root`, and aliases that tests move (as SetAlias would).

    Args:
        root: Where the version folders are made.
    """

    def __init__(self, root: Path):
        self.root = root
        self.kinds: dict[tuple[str, int], int] = {}
        self.aliases: dict[tuple[str, str], int] = {}

    def add(self, model: str, number: int, kind: int = registry_pb2.VERSION_KIND_BASE) -> Path:
        """Adds a READY version; returns its folder."""
        self.kinds[(model, number)] = kind
        path = self.path(model, number)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, model: str, number: int) -> Path:
        """The folder of a version."""
        return self.root / model / str(number)

    def move(self, model: str, alias: str, number: int) -> None:
        """Points `model@alias` at version `number`."""
        assert (model, number) in self.kinds
        self.aliases[(model, alias)] = number

    def resolve_version(self, ref: str) -> registry_pb2.Version:
        """The version the reference names now.

        Raises:
            NotFound: no such model, version or alias.
        """
        parsed = parse_ref(ref)
        selector = parsed.WhichOneof("selector")
        numbers = sorted(n for m, n in self.kinds if m == parsed.name)
        if selector == "version":
            number = parsed.version
        elif selector == "alias":
            number = self.aliases.get((parsed.name, parsed.alias), 0)
        else:
            number = numbers[-1] if numbers else 0
        if (parsed.name, number) not in self.kinds:
            raise NotFound("version", ref)
        return registry_pb2.Version(
            model=parsed.name,
            number=number,
            kind=self.kinds[(parsed.name, number)],
            state=registry_pb2.VERSION_STATE_READY,
        )

    def resolve_model_dir(self, ref: str) -> tuple[Path, registry_pb2.Version]:
        """The folder and version the reference names now."""
        version = self.resolve_version(ref)
        return self.path(version.model, version.number), version

    def close(self) -> None:
        """Nothing to release."""
