#!/usr/bin/env bash
# Install llama-cpp-python (the version requirements.txt pins) compiled for a fixed, portable x86-64 instruction
# set instead of the build machine's own CPU. Idempotent: does nothing when that build is already installed.
#
# Why a fixed instruction set rather than llama.cpp's default native build or a runtime-dispatching one:
# - The native build (-march=native) on an AVX-512/AMX Xeon compiles the AMX backend in; at load it repacks Q4_1 and
#   Q8_0 weights into AMX buffers and segfaults in the first decode. pip caches that wheel, and a machine of the same
#   kind without those instructions then dies on an illegal instruction instead.
# - The runtime-dispatching build (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS) would pick the Sapphire Rapids variant,
#   AMX included, on exactly the machines that crash, and llama-cpp-python 0.3.36 does not load backend plugins.
# - AVX2 + FMA + F16C (+ BMI2) is what every x86-64 server and desktop CPU of the last decade has (Intel Haswell
#   2013+, AMD Zen 2017+); AVX-512, AVX-VNNI and AMX stay off. The speed cost on an AVX-512 machine is measured in
#   bench/llm_build/results.md.
# LLAVA_BUILD=OFF skips the multimodal (image) library, which the app never loads: a third less to compile.
# The flags go to CMake through scikit-build-core, which reads CMAKE_ARGS. --no-cache-dir keeps pip from reusing a
# natively tuned wheel cached by an earlier plain `pip install llama-cpp-python` (and from caching this one under
# the same key); --no-binary makes pip compile from the source distribution even if an index offers a wheel.
# --no-deps keeps --force-reinstall from reinstalling numpy and the rest; a second, plain install of the same pin
# then finds the package installed and adds only its missing dependencies (diskcache, jinja2, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

PORTABLE_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF \
-DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_BACKEND_DL=OFF \
-DLLAVA_BUILD=OFF"

version=$(sed -n 's/^llama-cpp-python==\([0-9.]*\).*/\1/p' requirements.txt)
if [ -z "$version" ]; then
    echo "install_llama_cpp: requirements.txt does not pin llama-cpp-python==VERSION" >&2
    exit 1
fi
if "$PYTHON" -m core.llama_build --check "$version" 2>/dev/null; then
    "$PYTHON" -m core.llama_build
    exit 0
fi
echo "install_llama_cpp: compiling llama-cpp-python $version for a portable x86-64 CPU (about 7 min on 2 cores)"
CMAKE_ARGS="$PORTABLE_CMAKE_ARGS" "$PYTHON" -m pip install --disable-pip-version-check -q --no-cache-dir \
    --force-reinstall --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version"
"$PYTHON" -m pip install --disable-pip-version-check -q "llama-cpp-python==$version"
"$PYTHON" -m core.llama_build --check "$version"
