"""Serving commands: `deploy`, `undeploy`, `served`, `generate`, `chat`, `api-key`.

They talk to the inference service (`FORGELINE_INFERENCE_ADDRESS`, or `--inference`) over
gRPC; `generate` and `chat` stream tokens as they are produced.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from forgeline.cli.context import (
    address_of,
    client_options,
    console,
    err_console,
    message_dict,
    print_json,
)
from forgeline.client.inference import InferenceClient
from forgeline.client.labels import label
from forgeline.client.refs import RefError, parse_ref
from forgeline.common.settings import ServiceName
from forgeline.inference.options import Dtype
from forgeline.v1 import inference_pb2

InferenceOption = Annotated[
    str | None,
    typer.Option("--inference", help="Inference service address [FORGELINE_INFERENCE_ADDRESS]."),
]
_DTYPES = {
    Dtype.AUTO: inference_pb2.ENGINE_DTYPE_AUTO,
    Dtype.FLOAT32: inference_pb2.ENGINE_DTYPE_FLOAT32,
    Dtype.BFLOAT16: inference_pb2.ENGINE_DTYPE_BFLOAT16,
    Dtype.FLOAT16: inference_pb2.ENGINE_DTYPE_FLOAT16,
}


def inference_client(address: str | None = None) -> InferenceClient:
    """An inference client for the configured (or given) address."""
    return InferenceClient(address_of(ServiceName.INFERENCE, address), client_options())


def _state(model: inference_pb2.ServedModel) -> str:
    return label(inference_pb2.ServedModelState, model.state)


def _kind(model: inference_pb2.ServedModel) -> str:
    return label(inference_pb2.ServedModelKind, model.kind)


def _table(models: list[inference_pb2.ServedModel]) -> Table:
    following = any(m.follows for m in models)
    columns = ["name", "kind", "base", "version", *(["follows"] if following else [])]
    table = Table(*columns, "state", "context", "running")
    for m in models:
        version = f"{m.ref.name}:{m.version}" if m.ref.name else ""
        state = _state(m) + (f" ({m.error})" if m.error else "")
        if m.rollout_error:
            state += f"; rollout failed: {m.rollout_error}"
        follows = [m.follows] if following else []
        context, running = str(m.max_model_len), str(m.running_requests)
        table.add_row(m.name, _kind(m), m.parent, version, *follows, state, context, running)
    return table


def _check_follow(ref: str, adapters: list[str]) -> None:
    """Refuses `--follow` for a reference without an alias, or with adapters.

    Raises:
        typer.BadParameter: on `--follow`, saying what to give instead.
    """
    try:
        selector = parse_ref(ref).WhichOneof("selector")
    except RefError:
        return  # the service names what is wrong with the reference
    if selector != "alias":
        raise typer.BadParameter(
            f"--follow needs a name@alias REF (e.g. {ref.split(':')[0]}@production) to "
            f"follow; {ref!r} names no alias",
            param_hint="--follow",
        )
    if adapters:
        raise typer.BadParameter(
            "a model deployed with --follow takes no --adapter: an adapter is trained on "
            "one base version, and --follow moves the base to new versions",
            param_hint="--follow",
        )


def deploy(
    ref: Annotated[str, typer.Argument(help="Registry version: name, name:N or name@alias.")],
    name: Annotated[str, typer.Option(help="Served name; default the model name.")] = "",
    adapter: Annotated[
        list[str] | None,
        typer.Option("--adapter", help="An ADAPTER version to add on top (repeatable)."),
    ] = None,
    max_model_len: Annotated[int, typer.Option(help="Context length; 0: the model's.")] = 0,
    dtype: Annotated[Dtype, typer.Option(help="Weight and compute dtype.")] = Dtype.AUTO,
    kv_cache_bytes: Annotated[int, typer.Option(help="KV-cache size; 0: the default.")] = 0,
    gpu_memory_utilization: Annotated[float, typer.Option(help="GPU memory share, 0..1.")] = 0.0,
    tensor_parallel_size: Annotated[int, typer.Option(help="GPUs to shard over.")] = 0,
    enable_lora: Annotated[
        bool | None, typer.Option(help="Allow adapters (on when --adapter is given).")
    ] = None,
    max_loras: Annotated[int, typer.Option(help="Adapters in one batch; 0: 1.")] = 0,
    max_lora_rank: Annotated[int, typer.Option(help="Highest adapter rank; 0: 16.")] = 0,
    quantization: Annotated[str, typer.Option(help="vLLM quantization method; '' detects.")] = "",
    enforce_eager: Annotated[bool, typer.Option(help="No CUDA graphs or compilation.")] = False,
    seed: Annotated[int | None, typer.Option(help="Engine random seed.")] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="REF is name@alias: keep serving whatever version the alias points at, "
            "moving to each new one without failing requests.",
        ),
    ] = False,
    inference: InferenceOption = None,
) -> None:
    """Serve a registry version (and adapters on it) on the inference service.

    With --follow, the served name follows the alias: when the alias moves (`forgeline
    models promote`), the service starts the new version beside the old, switches new
    requests to it once it answers, and stops the old one when its requests have finished.
    """
    adapters = adapter or []
    if follow:
        _check_follow(ref, adapters)
    engine = inference_pb2.EngineOptions(
        max_model_len=max_model_len,
        dtype=_DTYPES[dtype],
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        kv_cache_bytes=kv_cache_bytes,
        max_loras=max_loras,
        max_lora_rank=max_lora_rank,
        enable_lora=bool(adapters) if enable_lora is None else enable_lora,
        quantization=quantization,
        enforce_eager=enforce_eager,
    )
    if seed is not None:
        engine.seed = seed
    with inference_client(inference) as client:
        err_console.print(f"loading {ref} (this starts an engine; it can take a while)")
        served = client.load_model(ref, served_name=name, engine=engine, follow=follow)
        if served.state != inference_pb2.SERVED_MODEL_STATE_READY:
            err_console.print(f"[red]error:[/] {served.name} failed to load: {served.error}")
            raise typer.Exit(1)
        added = [client.load_adapter(a, base_served_name=served.name) for a in adapters]
    console.print(_table([served, *added]))


def undeploy(
    name: Annotated[str, typer.Argument(help="Served name of a model or adapter.")],
    inference: InferenceOption = None,
) -> None:
    """Stop serving a model (its adapters too) or remove an adapter."""
    with inference_client(inference) as client:
        kinds = {m.name: m.kind for m in client.list_models()}
        if kinds.get(name) == inference_pb2.SERVED_MODEL_KIND_ADAPTER:
            client.unload_adapter(name)
        else:
            client.unload_model(name)
    console.print(f"{name} is no longer served")


def served(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print them as a JSON list, nothing else.")
    ] = False,
    inference: InferenceOption = None,
) -> None:
    """List the served models and adapters."""
    with inference_client(inference) as client:
        models = client.list_models()
    if as_json:
        print_json([message_dict(m) for m in models])
    else:
        console.print(_table(models))


def _sampling(
    max_tokens: int, temperature: float | None, top_p: float | None, seed: int | None, stop
) -> inference_pb2.SamplingParams:
    sampling = inference_pb2.SamplingParams(max_tokens=max_tokens, stop=stop or [])
    if temperature is not None:
        sampling.temperature = temperature
    if top_p is not None:
        sampling.top_p = top_p
    if seed is not None:
        sampling.seed = seed
    return sampling


MaxTokens = Annotated[int, typer.Option(help="Most tokens to generate.")]
Temperature = Annotated[float | None, typer.Option(help="0 is greedy; default the model's.")]
TopP = Annotated[float | None, typer.Option(help="Nucleus sampling mass.")]
Seed = Annotated[int | None, typer.Option(help="Sampling seed.")]
System = Annotated[str | None, typer.Option(help="A system message to start with.")]


def generate(
    name: Annotated[str, typer.Argument(help="Served model or adapter.")],
    prompt: Annotated[str, typer.Argument(help="The prompt; '-' reads standard input.")],
    raw: Annotated[bool, typer.Option(help="Complete the text as is, no chat template.")] = False,
    system: System = None,
    max_tokens: MaxTokens = 256,
    temperature: Temperature = None,
    top_p: TopP = None,
    seed: Seed = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    inference: InferenceOption = None,
) -> None:
    """Generate a reply to one prompt, streamed to standard output."""
    text = sys.stdin.read() if prompt == "-" else prompt
    sampling = _sampling(max_tokens, temperature, top_p, seed, stop)
    with inference_client(inference) as client:
        if raw:
            pieces = client.stream_text(name, text, sampling=sampling)
        else:
            messages = [*([("system", system)] if system else []), ("user", text)]
            pieces = client.stream_text(name, messages=messages, sampling=sampling)
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")


def chat(
    name: Annotated[str, typer.Argument(help="Served model or adapter.")],
    system: System = None,
    max_tokens: MaxTokens = 512,
    temperature: Temperature = None,
    top_p: TopP = None,
    seed: Seed = None,
    inference: InferenceOption = None,
) -> None:
    """Chat interactively, replies streamed; /reset starts over, /exit or Ctrl-D quits."""
    sampling = _sampling(max_tokens, temperature, top_p, seed, None)
    start = [("system", system)] if system else []
    history: list[tuple[str, str]] = list(start)
    interactive = sys.stdin.isatty()
    with inference_client(inference) as client:
        if interactive:
            err_console.print(f"chatting with {name}; /reset starts over, /exit quits")
        while True:
            if interactive:
                err_console.print("[bold]you>[/] ", end="")
            line = sys.stdin.readline()
            if not line:
                break
            line = line.strip()
            if line in ("/exit", "/quit"):
                break
            if line == "/reset":
                history = list(start)
                continue
            if not line:
                continue
            history.append(("user", line))
            reply = []
            for piece in client.stream_text(name, messages=history, sampling=sampling):
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            history.append(("assistant", "".join(reply)))


def api_key(
    name: Annotated[str, typer.Option(help="Who the key is for (shown in logs).")],
    models: Annotated[
        list[str] | None, typer.Option("--model", help="Allowed served name (repeatable).")
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
) -> None:
    """Make a gateway API key: prints the key (once) and its keys-file entry."""
    from forgeline.gateway.keys import ApiKey, digest, new_key

    key = new_key()
    entry = ApiKey(
        name=name,
        sha256=digest(key),
        models=frozenset(models) if models else None,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
    ).entry()
    err_console.print("key (shown once; the gateway stores only its sha256):")
    console.print(key)
    err_console.print("entry for the FORGELINE_GATEWAY_KEYS_FILE 'keys' list:")
    console.print(json.dumps(entry))


def register(app: typer.Typer) -> None:
    """Adds the serving commands to the `forgeline` app."""
    app.command()(deploy)
    app.command()(undeploy)
    app.command()(served)
    app.command()(generate)
    app.command()(chat)
    app.command("api-key")(api_key)
