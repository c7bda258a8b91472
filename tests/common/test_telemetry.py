"""Telemetry of the gRPC services: the metrics endpoint and what it counts, the request id
and trace a call's log lines carry, a job's run continuing the trace it was submitted in,
and the settings behind them."""

from __future__ import annotations

import asyncio
import os
import socket
import urllib.error
import urllib.request

import pytest
from opentelemetry import trace

from forgeline.client import exceptions, telemetry
from forgeline.client.channel import ChannelOptions
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import push_folder
from forgeline.common.settings import Settings
from forgeline.common.supervisor import metrics_setting
from forgeline.common.tracing import configure_tracing, launch_span, ray_task
from forgeline.v1 import common_pb2, registry_pb2
from tests.common.fakes import GatedRunner
from tests.common.test_job_service import SPEC, client, trainer_server
from tests.conftest import serving
from tests.helpers import scrape

pytestmark = pytest.mark.integration

REGISTRY = "forgeline.v1.RegistryService"


def handled(samples: dict[str, float], service: str, method: str, code: str) -> float:
    key = f'forgeline_rpc_handled_total{{code="{code}",method="{method}",service="{service}"}}'
    return samples.get(key, 0.0)


def test_registry_counts_calls_by_code_and_the_bytes_it_moves(
    registry_server, registry_client, tmp_path
):
    port = registry_server.server.metrics_port
    assert port and port != registry_server.server.port
    before = scrape(port)
    assert before["forgeline_registry_received_bytes_total"] == 0
    folder = tmp_path / "model"
    folder.mkdir()
    payload = os.urandom(300_000)
    (folder / "weights.bin").write_bytes(payload)
    version = push_folder(registry_client, folder, "m", registry_pb2.VERSION_KIND_BASE)
    downloaded = b"".join(
        r.chunk for r in registry_client.download_artifact(f"m:{version.number}", "weights.bin")
    )
    with pytest.raises(exceptions.NotFound):
        registry_client.get_model("absent")
    # A second upload of the same bytes moves none.
    push_folder(registry_client, folder, "m", registry_pb2.VERSION_KIND_BASE)

    after = scrape(port)
    assert downloaded == payload
    assert after["forgeline_registry_received_bytes_total"] == len(payload)
    assert after["forgeline_registry_sent_bytes_total"] == len(payload)
    assert handled(after, REGISTRY, "UploadArtifact", "OK") == 1
    assert handled(after, REGISTRY, "DownloadArtifact", "OK") == 1
    assert handled(after, REGISTRY, "GetModel", "NOT_FOUND") == 1
    assert after[f'forgeline_rpc_duration_seconds_count{{method="GetModel",service="{REGISTRY}"}}']
    assert after[f'forgeline_rpc_in_flight{{method="GetModel",service="{REGISTRY}"}}'] == 0
    assert "process_cpu_seconds_total" in after  # the process registry is served beside


def test_a_refused_call_counts_as_unauthenticated(settings_for):
    from forgeline.registry.service import create_server

    settings = settings_for("registry", token="s3cret")
    with (
        serving(lambda: create_server(settings)[0]) as server,
        RegistryClient(server.address, ChannelOptions(retries=False)) as anonymous,
    ):
        with pytest.raises(exceptions.Unauthenticated):
            anonymous.get_model("m")
        samples = scrape(server.server.metrics_port)
    assert handled(samples, REGISTRY, "GetModel", "UNAUTHENTICATED") == 1


def test_the_endpoint_answers_only_get_metrics(registry_server):
    port = registry_server.server.metrics_port
    for path, method, status in (("/other", "GET", 404), ("/metrics", "POST", 405)):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == status
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"not http at all\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400")


def test_metrics_off_serves_none_and_a_taken_port_is_named(settings_for, monkeypatch):
    from forgeline.registry.service import create_server

    monkeypatch.setenv("FORGELINE_METRICS_PORT", "off")
    with serving(lambda: create_server(settings_for("registry"))[0]) as server:
        assert server.server.metrics_port is None

    async def start_on_a_taken_port(port: int) -> None:
        server = create_server(settings_for("registry", metrics_port=port, metrics=True))[0]
        try:
            await server.start()
        finally:
            await server.stop(0)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="FORGELINE_METRICS_PORT"):
            asyncio.run(start_on_a_taken_port(taken.getsockname()[1]))


def test_a_job_service_counts_jobs_by_state_and_times_them(settings_for):
    with serving(lambda: trainer_server(settings_for("trainer"), GatedRunner(steps=2))) as srv:
        trainer = client(srv)
        job = trainer.submit(SPEC)
        assert trainer.wait(job.id).state == common_pb2.JOB_STATE_SUCCEEDED
        samples = scrape(srv.server.metrics_port)
    assert samples['forgeline_jobs{kind="train",state="succeeded"}'] == 1
    assert samples['forgeline_jobs{kind="train",state="running"}'] == 0
    for state in ("queued", "running", "succeeded"):
        assert samples[f'forgeline_job_state_changes_total{{kind="train",state="{state}"}}'] == 1
    assert samples['forgeline_job_run_seconds_count{kind="train",state="succeeded"}'] == 1
    assert samples['forgeline_job_queue_seconds_count{kind="train"}'] == 1


def test_a_job_runs_in_the_trace_it_was_submitted_in_and_logs_its_id(
    settings_for, spans, json_logs
):
    with serving(lambda: trainer_server(settings_for("trainer"), GatedRunner(steps=1))) as srv:
        trainer = client(srv)
        with trace.get_tracer("test").start_as_current_span("cli command") as root:
            job = trainer.submit(SPEC)
        trainer.wait(job.id)
    trace_id = root.get_span_context().trace_id
    name = "forgeline.v1.TrainerService/SubmitTrainJob"
    sent = spans.named(name, trace.SpanKind.CLIENT)
    submit = spans.named(name, trace.SpanKind.SERVER)
    run = spans.named("job train")
    assert sent.parent.span_id == root.get_span_context().span_id
    assert submit.parent.span_id == sent.context.span_id
    assert run.parent.span_id == submit.context.span_id
    assert run.context.trace_id == trace_id
    assert run.attributes["forgeline.job_id"] == job.id
    assert run.attributes["forgeline.job_state"] == "JOB_STATE_SUCCEEDED"
    queued = json_logs.matching(message=f"queued {job.id}")
    assert queued and queued[0]["service"] == "trainer"
    assert queued[0]["trace_id"] == format(trace_id, "032x")


def test_a_ray_task_continues_the_trace_of_its_launch(spans):
    tracer = trace.get_tracer("test")

    def work(x: int) -> int:
        return x + 1

    assert ray_task(work, "ray task work") is work  # untraced: submitted as it is
    with tracer.start_as_current_span("job train"), launch_span("ray submit work"):
        task = ray_task(work, "ray task work")
    assert task(1) == 2  # as a worker runs it: no current span of its own
    launch, remote = spans.named("ray submit work"), spans.named("ray task work")
    assert remote.parent.span_id == launch.context.span_id
    assert remote.context.trace_id == spans.named("job train").context.trace_id


def test_a_call_logs_its_service_and_the_request_id_it_was_sent(registry_server, json_logs, spans):
    with RegistryClient(registry_server.address, ChannelOptions(retries=False)) as registry:
        token = telemetry.request_id.set("req-42")  # the SDK sends it as x-request-id
        try:
            with pytest.raises(exceptions.NotFound):
                registry.get_model("absent")
        finally:
            telemetry.request_id.reset(token)
        with pytest.raises(exceptions.NotFound):
            registry.get_model("absent")
    lines = json_logs.matching(logger="forgeline.common.interceptors")
    assert [line["service"] for line in lines] == ["registry", "registry"]
    assert lines[0]["request_id"] == "req-42"
    assert len(lines[1]["request_id"]) == 32 and lines[1]["request_id"] != "req-42"
    server_span = [s for s in spans.spans() if s.kind is trace.SpanKind.SERVER]
    assert lines[0]["trace_id"] == format(server_span[0].context.trace_id, "032x")


@pytest.mark.parametrize(
    ("value", "port", "listen"),
    [("", 50051, 51051), ("", 0, 0), ("9100", 50051, 9100), ("0", 50051, 0), ("off", 1, None)],
)
def test_the_metrics_port_setting(monkeypatch, value, port, listen):
    monkeypatch.setenv("FORGELINE_METRICS_PORT", value)
    assert Settings.load("registry", port=port).metrics_listen_port == listen


@pytest.mark.parametrize("value", ["nine", "-1", "70000"])
def test_a_bad_metrics_port_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("FORGELINE_METRICS_PORT", value)
    with pytest.raises(ValueError, match="FORGELINE_METRICS_PORT"):
        Settings.load("registry")


def test_a_metrics_port_past_65535_is_refused():
    with pytest.raises(ValueError, match="FORGELINE_METRICS_PORT"):
        _ = Settings.load("registry", port=65000, metrics_port=None).metrics_listen_port


def test_the_suite_refuses_one_metrics_port_for_every_service():
    assert [metrics_setting({"FORGELINE_METRICS_PORT": v}) for v in ("", "0", "OFF")] == [
        "",
        "0",
        "off",
    ]
    with pytest.raises(ValueError, match="FORGELINE_METRICS_PORT=9100"):
        metrics_setting({"FORGELINE_METRICS_PORT": "9100"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "udp"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    ],
)
def test_bad_tracing_variables_are_named(monkeypatch, env, message):
    from forgeline.common import tracing

    monkeypatch.setattr(tracing, "_done", False)
    with pytest.raises(ValueError, match=message):
        configure_tracing("registry", env)


def test_tracing_stays_off_unless_an_exporter_is_asked_for(monkeypatch):
    from forgeline.common import tracing

    for env in ({}, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}):
        assert tracing._exporter_name(env) == "none"
        monkeypatch.setattr(tracing, "_done", False)
        assert not configure_tracing("registry", env)
    assert tracing._exporter_name({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x"}) == "otlp"
    assert tracing._exporter_name(
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}
    ) == ("none")
