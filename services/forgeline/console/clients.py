"""The SDK clients the console calls the services with, one of each, opened on first use."""

from __future__ import annotations

import threading
from typing import Any

from forgeline.client.inference import InferenceClient
from forgeline.client.jobs import EvaluatorClient, JobClient, QuantizerClient, TrainerClient
from forgeline.client.registry import RegistryClient
from forgeline.common.settings import ServiceName
from forgeline.console.config import ConsoleConfig

# The job services by the name the console's URLs use.
JOB_SERVICES = {
    "training": ServiceName.TRAINER,
    "quantization": ServiceName.QUANTIZER,
    "evaluation": ServiceName.EVALUATOR,
}
_CLASSES: dict[ServiceName, type] = {
    ServiceName.REGISTRY: RegistryClient,
    ServiceName.TRAINER: TrainerClient,
    ServiceName.QUANTIZER: QuantizerClient,
    ServiceName.EVALUATOR: EvaluatorClient,
    ServiceName.INFERENCE: InferenceClient,
}


class Clients:
    """Opens one client per service on first use and shares it (gRPC channels are
    thread-safe); `close` closes them all."""

    def __init__(self, config: ConsoleConfig):
        self._config = config
        self._open: dict[ServiceName, Any] = {}
        self._lock = threading.Lock()

    def _get(self, service: ServiceName) -> Any:
        with self._lock:
            if service not in self._open:
                address = self._config.addresses[service]
                self._open[service] = _CLASSES[service](address, self._config.channel)
            return self._open[service]

    @property
    def registry(self) -> RegistryClient:
        """The registry's client."""
        return self._get(ServiceName.REGISTRY)

    @property
    def trainer(self) -> TrainerClient:
        """The trainer's client."""
        return self._get(ServiceName.TRAINER)

    @property
    def inference(self) -> InferenceClient:
        """The inference service's client."""
        return self._get(ServiceName.INFERENCE)

    def jobs(self, kind: str) -> JobClient:
        """The client of the job service of `kind` (training, quantization, evaluation).

        Raises:
            KeyError: no such kind.
        """
        return self._get(JOB_SERVICES[kind])

    @property
    def evaluator(self) -> EvaluatorClient:
        """The evaluator's client."""
        return self._get(ServiceName.EVALUATOR)

    @property
    def quantizer(self) -> QuantizerClient:
        """The quantizer's client."""
        return self._get(ServiceName.QUANTIZER)

    def close(self) -> None:
        """Closes every client opened."""
        with self._lock:
            for client in self._open.values():
                client.close()
            self._open.clear()
