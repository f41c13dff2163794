"""What the portable llama.cpp build costs: the same model and prompt on the installed (portable) library and on a
natively tuned one, in one run.

Each library runs in its own child process (``PYTHONPATH`` points at an unpacked native wheel for that one), three
ways: the installed portable build; the native build as llama.cpp loads it by default (on an AMX Xeon this is the
crash the portable build avoids); and the native build with weight repacking turned off
(``use_extra_bufts = false``), the workaround that lets it run. Each child reports its system-info line, prompt
evaluation and generation speed (median of ``--repeats``). Writes ``bench/llm_build/results.md``.

Run: ``python bench/llm_build/run.py [--native-wheel WHEEL]`` (without a wheel it compiles one natively, ~10 min).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.config import LLMConfig  # noqa: E402
from core.llm.local import OPENMP_WAIT_POLICY  # noqa: E402
from core.llm.packaged import local_model, resolve_local  # noqa: E402

HERE = Path(__file__).resolve().parent
PROMPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nExplain in a few sentences "
          "why the sky is blue, and why sunsets are red.<|im_end|>\n<|im_start|>assistant\n")
GENERATED_TOKENS = 64
THREADS = 2
CONTEXT_TOKENS = 2048
CHILD_TIMEOUT_S = 600
CHILD = r"""
import json, statistics, sys, time
import llama_cpp
model, repack, repeats, tokens, threads, ctx, prompt = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
if not repack:  # the workaround: no extra (repacking) buffer types, so no AMX buffers
    default_params = llama_cpp.llama_cpp.llama_model_default_params
    def params():
        p = default_params()
        p.use_extra_bufts = False
        return p
    llama_cpp.llama_cpp.llama_model_default_params = params
llm = llama_cpp.Llama(model_path=model, n_ctx=ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
prompt_rates, gen_rates = [], []
for _ in range(repeats):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    n = 0
    for token in llm.generate([], temp=0.0, reset=False):
        n += 1
        if n >= tokens:
            break
    t2 = time.perf_counter()
    prompt_rates.append(len(ids) / (t1 - t0))
    gen_rates.append(n / (t2 - t1))
print(json.dumps({"system_info": llama_cpp.llama_print_system_info().decode().strip(),
                  "prompt_tokens": len(ids), "prompt_tps": statistics.median(prompt_rates),
                  "generation_tps": statistics.median(gen_rates)}))
"""


def native_wheel(given: Path | None, work: Path) -> Path:
    """The natively tuned wheel: the one given, or one compiled now with llama.cpp's default CPU detection."""
    if given:
        return given
    version = subprocess.run([sys.executable, "-m", "pip", "show", "llama-cpp-python"], capture_output=True,
                             text=True, check=True).stdout.split("Version: ")[1].split()[0]
    env = {k: v for k, v in os.environ.items() if k != "CMAKE_ARGS"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--no-binary",
                    "llama-cpp-python", "-w", str(work), f"llama-cpp-python=={version}"], check=True, env=env)
    return next(work.glob("llama_cpp_python-*.whl"))


def run_child(model: Path, pythonpath: str, repack: bool, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else dict(os.environ)
    env.setdefault(*OPENMP_WAIT_POLICY)  # as the app runs llama.cpp
    command = [sys.executable, "-c", CHILD, str(model), "1" if repack else "0", str(repeats),
               str(GENERATED_TOKENS), str(THREADS), str(CONTEXT_TOKENS), PROMPT]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT_S, check=False)
    if done.returncode < 0:
        return {"crashed": signal.Signals(-done.returncode).name}
    if done.returncode != 0:
        return {"failed": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--native-wheel", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = LLMConfig()
    entry = local_model()
    model = resolve_local(entry, config.model_path, config.model_dir).path
    work = Path(tempfile.mkdtemp(prefix="llm-build-"))
    unpacked = work / "native"
    with zipfile.ZipFile(native_wheel(args.native_wheel, work)) as wheel:
        wheel.extractall(unpacked)
    runs = [("portable (installed)", "", True), ("native, default load", str(unpacked), True),
            ("native, repacking off", str(unpacked), False)]
    results = []
    for label, path, repack in runs:  # interleaved rounds would share page cache effects equally; one pass each
        result = run_child(model, path, repack, args.repeats)
        print(label, result, flush=True)
        results.append((label, result))
    lines = [
        "# Portable vs native llama.cpp build",
        "",
        f"{entry.label} ({model.name}), the same {results[0][1].get('prompt_tokens', '?')}-token prompt, "
        f"{GENERATED_TOKENS} generated tokens, greedy, {THREADS} threads, median of {args.repeats}; each build in "
        f"its own process. CPU: {cpu_model()}. Written by `python bench/llm_build/run.py` on "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "| build | prompt tokens/s | generation tokens/s | system info |",
        "|---|---:|---:|---|",
    ]
    for label, r in results:
        if "system_info" in r:
            lines.append(f"| {label} | {r['prompt_tps']:.1f} | {r['generation_tps']:.1f} | `{r['system_info']}` |")
        else:
            lines.append(f"| {label} | – | – | {r.get('crashed') and 'crashed: ' + r['crashed'] or r.get('failed')} |")
    ok = {label: r for label, r in results if "system_info" in r}
    if "portable (installed)" in ok and "native, repacking off" in ok:
        p, n = ok["portable (installed)"], ok["native, repacking off"]
        lines += ["", f"Portable / native (repacking off): prompt {p['prompt_tps'] / n['prompt_tps']:.2f}×, "
                      f"generation {p['generation_tps'] / n['generation_tps']:.2f}×."]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cpu_model() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    extras = [f for f in ("avx512f", "avx512_vnni", "amx_int8", "amx_tile") if f in flags]
    return f"{name} ({', '.join(extras) or 'no AVX-512/AMX'})"


if __name__ == "__main__":
    main()
