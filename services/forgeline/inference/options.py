"""Engine options of a served model: dtype, memory, parallelism and LoRA settings.

`EngineOptions` mirrors `forgeline.v1.EngineOptions` and validates itself; turning it into
vLLM's engine arguments is `forgeline.inference.vllm_convert.engine_kwargs`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from forgeline.client.exceptions import Violations
from forgeline.v1 import inference_pb2

# vLLM accepts only these values for the highest LoRA rank an engine reserves room for.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# vLLM's defaults when `max_lora_rank` / `max_loras` are left at 0.
DEFAULT_MAX_LORA_RANK = 16
DEFAULT_MAX_LORAS = 1


class Dtype(enum.StrEnum):
    """Weight and compute dtype of an engine, as vLLM names it."""

    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"


_DTYPE_FROM_PB = {
    inference_pb2.ENGINE_DTYPE_UNSPECIFIED: Dtype.AUTO,
    inference_pb2.ENGINE_DTYPE_AUTO: Dtype.AUTO,
    inference_pb2.ENGINE_DTYPE_FLOAT32: Dtype.FLOAT32,
    inference_pb2.ENGINE_DTYPE_BFLOAT16: Dtype.BFLOAT16,
    inference_pb2.ENGINE_DTYPE_FLOAT16: Dtype.FLOAT16,
}
_DTYPE_TO_PB = {
    Dtype.AUTO: inference_pb2.ENGINE_DTYPE_AUTO,
    Dtype.FLOAT32: inference_pb2.ENGINE_DTYPE_FLOAT32,
    Dtype.BFLOAT16: inference_pb2.ENGINE_DTYPE_BFLOAT16,
    Dtype.FLOAT16: inference_pb2.ENGINE_DTYPE_FLOAT16,
}


@dataclass(frozen=True)
class EngineOptions:
    """Engine settings of a served model; zero values mean the engine's default.

    Attributes mirror `forgeline.v1.EngineOptions`.
    """

    max_model_len: int = 0
    dtype: Dtype = Dtype.AUTO
    tensor_parallel_size: int = 0
    gpu_memory_utilization: float = 0.0
    kv_cache_bytes: int = 0
    max_loras: int = 0
    max_lora_rank: int = 0
    enable_lora: bool = False
    quantization: str = ""
    enforce_eager: bool = False
    seed: int | None = None

    @classmethod
    def from_pb(cls, pb: inference_pb2.EngineOptions) -> EngineOptions:
        """Builds options from their protobuf form."""
        return cls(
            max_model_len=pb.max_model_len,
            dtype=_DTYPE_FROM_PB.get(pb.dtype, Dtype.AUTO),
            tensor_parallel_size=pb.tensor_parallel_size,
            gpu_memory_utilization=pb.gpu_memory_utilization,
            kv_cache_bytes=pb.kv_cache_bytes,
            max_loras=pb.max_loras,
            max_lora_rank=pb.max_lora_rank,
            enable_lora=pb.enable_lora,
            quantization=pb.quantization,
            enforce_eager=pb.enforce_eager,
            seed=pb.seed if pb.HasField("seed") else None,
        )

    def to_pb(self) -> inference_pb2.EngineOptions:
        """Returns the protobuf form."""
        pb = inference_pb2.EngineOptions(
            max_model_len=self.max_model_len,
            dtype=_DTYPE_TO_PB[self.dtype],
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            kv_cache_bytes=self.kv_cache_bytes,
            max_loras=self.max_loras,
            max_lora_rank=self.max_lora_rank,
            enable_lora=self.enable_lora,
            quantization=self.quantization,
            enforce_eager=self.enforce_eager,
        )
        if self.seed is not None:
            pb.seed = self.seed
        return pb

    def validate(self, prefix: str = "engine") -> None:
        """Checks every field at once.

        Raises:
            InvalidArgument: one violation per bad field, named `<prefix>.<field>`.
        """
        v = Violations()
        v.check(
            0.0 <= self.gpu_memory_utilization <= 1.0,
            f"{prefix}.gpu_memory_utilization",
            "must be between 0 and 1",
        )
        v.check(
            self.max_lora_rank == 0 or self.max_lora_rank in LORA_RANKS,
            f"{prefix}.max_lora_rank",
            f"must be one of {', '.join(map(str, LORA_RANKS))}",
        )
        if not self.enable_lora:
            v.check(
                self.max_loras == 0 and self.max_lora_rank == 0,
                f"{prefix}.enable_lora",
                "must be true when max_loras or max_lora_rank is set",
            )
        v.raise_if_any()

    def with_defaults(self, kv_cache_bytes: int) -> EngineOptions:
        """Fills the KV-cache size from a service default when no memory setting was given."""
        if kv_cache_bytes and not self.kv_cache_bytes and not self.gpu_memory_utilization:
            return dataclasses.replace(self, kv_cache_bytes=kv_cache_bytes)
        return self

    @property
    def lora_rank_limit(self) -> int:
        """The highest adapter rank the engine accepts."""
        return self.max_lora_rank or DEFAULT_MAX_LORA_RANK
