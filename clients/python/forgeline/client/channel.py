"""Channels to Forgeline services: bearer token, optional TLS, retries on UNAVAILABLE,
trace context and request id on every call (`forgeline.client.telemetry`).

Retries use gRPC's own retry policy (service config), with exponential backoff, for the
calls that are safe to repeat (`IDEMPOTENT_METHODS`), so reads ride out a service restart
while a write is never sent twice. Job watches reconnect by themselves (`JobClient.watch`),
and uploads and downloads resume from what arrived (`transfer`, `cache`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import grpc

from forgeline.client.telemetry import TracingInterceptor

# Only calls that are safe to repeat are retried: reads, and writes whose repetition changes
# nothing (linking the same blob to the same path). Creating a version, submitting a job,
# committing or loading a model are not: after UNAVAILABLE the caller cannot know whether
# the first attempt took effect, and the SDK surfaces the error instead of doubling it.
IDEMPOTENT_METHODS: dict[str, tuple[str, ...]] = {
    "forgeline.v1.RegistryService": (
        "GetModel",
        "ListModels",
        "GetVersion",
        "ListVersions",
        "StatUpload",
        "LinkArtifact",
        "DownloadArtifact",
        "GetManifest",
        "ListAliasHistory",
        "ListEvaluations",
        "GetLineage",
    ),
    "forgeline.v1.TrainerService": ("GetTrainJob", "ListTrainJobs", "PlanTrainJob"),
    "forgeline.v1.QuantizerService": ("GetQuantizeJob", "ListQuantizeJobs"),
    "forgeline.v1.EvaluatorService": ("GetEvalJob", "ListEvalJobs", "GetEvalReport"),
    "forgeline.v1.InferenceService": ("ListServedModels", "Tokenize"),
}

RETRY_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": service, "method": method}
                    for service, methods in IDEMPOTENT_METHODS.items()
                    for method in methods
                ],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


@dataclass(frozen=True)
class ChannelOptions:
    """How to reach a service.

    Attributes:
        token: Bearer token sent on every call; empty sends none.
        tls: Use TLS.
        ca_file: PEM CA bundle for TLS (system roots when empty).
        max_message_bytes: Largest message sent or received.
        retries: Retry idempotent calls after UNAVAILABLE, with backoff.
    """

    token: str = field(default="", repr=False)
    tls: bool = False
    ca_file: str = ""
    max_message_bytes: int = 64 * 1024 * 1024
    retries: bool = True


class _TokenAuth(grpc.AuthMetadataPlugin):
    def __init__(self, token: str):
        self._metadata = (("authorization", f"Bearer {token}"),)

    def __call__(self, context, callback):
        callback(self._metadata, None)


class _TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the bearer token on plaintext channels (call credentials need TLS)."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):
        return with_metadata(details, [*(details.metadata or ()), self._header])

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


class _Details(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


def with_metadata(details: grpc.ClientCallDetails, metadata: list) -> grpc.ClientCallDetails:
    """`details` of an intercepted call with its metadata replaced."""
    return _Details(
        method=details.method,
        timeout=details.timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=getattr(details, "wait_for_ready", None),
        compression=getattr(details, "compression", None),
    )


def channel_arguments(options: ChannelOptions) -> list[tuple[str, object]]:
    """gRPC channel arguments for `options`: message limits and the retry policy."""
    args: list[tuple[str, object]] = [
        ("grpc.max_receive_message_length", options.max_message_bytes),
        ("grpc.max_send_message_length", options.max_message_bytes),
        ("grpc.enable_retries", 1 if options.retries else 0),
        # Notice a dead server during long calls (a watch, a generation): ping after a
        # minute of silence, no more often than servers allow (every 30 s).
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]
    if options.retries:
        args.append(("grpc.service_config", RETRY_SERVICE_CONFIG))
    return args


def tls_credentials(options: ChannelOptions) -> grpc.ChannelCredentials:
    """TLS credentials trusting `options.ca_file` (the system roots when empty)."""
    root = None
    if options.ca_file:
        with open(options.ca_file, "rb") as f:
            root = f.read()
    return grpc.ssl_channel_credentials(root_certificates=root)


def open_channel(address: str, options: ChannelOptions | None = None) -> grpc.Channel:
    """Opens a channel to `address` (``host:port``) with token, TLS and retries as configured."""
    options = options or ChannelOptions()
    channel_args = channel_arguments(options)
    if options.tls:
        creds = tls_credentials(options)
        if options.token:
            creds = grpc.composite_channel_credentials(
                creds, grpc.metadata_call_credentials(_TokenAuth(options.token))
            )
        channel = grpc.secure_channel(address, creds, options=channel_args)
        return grpc.intercept_channel(channel, TracingInterceptor())
    channel = grpc.insecure_channel(address, options=channel_args)
    if options.token:
        return grpc.intercept_channel(
            channel, TracingInterceptor(), _TokenInterceptor(options.token)
        )
    return grpc.intercept_channel(channel, TracingInterceptor())
