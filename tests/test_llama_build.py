"""The installed llama.cpp is the portable build: no AVX-512, AVX-VNNI or AMX, the fixed AVX2 instruction set."""

from __future__ import annotations

import pytest

from core.llama_build import installed_version, problems, report

NATIVE_SAPPHIRE_RAPIDS = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "
                          "BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | "
                          "AMX_INT8 = 1 | "
                          "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |")
"""What llama.cpp's default native build reports on this project's AMX Xeons (the build that crashes)."""
PORTABLE = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | "
            "REPACK = 1 |")


def test_the_installed_library_is_the_portable_build() -> None:
    """Reads the real library's system info: the regression cannot come back silently on a machine without AMX."""
    found = report()
    assert found.portable, found.line()
    assert found.version == installed_version()
    assert "AVX2 = 1" in found.system_info and "AMX" not in found.system_info.replace("AMX_INT8 = 0", "")


@pytest.mark.parametrize(("info", "expected"), [
    (PORTABLE, ()),
    (NATIVE_SAPPHIRE_RAPIDS, ("uses AVX_VNNI", "uses AVX512", "uses AVX512_VBMI", "uses AVX512_VNNI",
                              "uses AVX512_BF16", "uses AMX_INT8")),
    ("CPU : SSE3 = 1 | SSSE3 = 1 | LLAMAFILE = 1 |", ("lacks AVX", "lacks AVX2", "lacks FMA", "lacks F16C")),
])
def test_problems_name_what_makes_a_build_not_portable(info: str, expected: tuple[str, ...]) -> None:
    assert problems(info) == expected
