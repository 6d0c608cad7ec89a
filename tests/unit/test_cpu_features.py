"""The instruction set an artifact was verified on, and the stream's note where it runs on another."""

from __future__ import annotations

import pytest

from fcn_edge import cpu_features


@pytest.mark.parametrize("flags, level", [
    ({"sse4_1", "avx2", "fma"}, "avx2"),  # the AVX2-only EPYC of this project's figures
    ({"avx2", "avx512f", "avx512bw", "avx512_vnni"}, "avx512_vnni"),
    ({"avx2", "avx512bw"}, "avx512"),
    ({"avx2", "avx_vnni"}, "avx_vnni"),
    ({"fp", "asimd", "asimddp"}, "neon_dotprod"),  # Arm: /proc/cpuinfo "Features"
    ({"fp", "asimd"}, "neon"),
    (set(), "unknown"),
])  # fmt: skip
def test_the_widest_int8_path_of_the_flags_is_the_level(flags, level):
    assert cpu_features.instruction_set(flags) == level


def test_this_cpu_has_a_level_on_linux():
    model, flags = cpu_features.cpu_info()
    assert model
    assert cpu_features.instruction_set() == cpu_features.instruction_set(set(flags))
    if flags:  # Linux: x86 has at least SSE4.1, Arm NEON
        assert cpu_features.instruction_set() != cpu_features.UNKNOWN


def test_only_a_known_different_level_gets_a_note():
    note = cpu_features.mismatch("avx512_vnni", here="avx2")
    assert "avx512_vnni" in note and "avx2" in note and "--force" in note
    assert cpu_features.mismatch("avx2", here="avx2") is None
    assert cpu_features.mismatch("unknown", here="avx2") is None
    assert cpu_features.mismatch(None, here="avx2") is None  # a sidecar from before the field
    assert cpu_features.mismatch("avx2", here="unknown") is None
