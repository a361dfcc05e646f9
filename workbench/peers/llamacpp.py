"""llama.cpp as a benchmark peer: its own `llama-bench`, from the build `make peer` makes.

`make peer` (scripts/build_llamacpp.sh) builds llama.cpp from the source tree vendored in
llama-cpp-python PINNED, natively (-march=native, AMX included where the CPU has it, with
the GCC 12 tile-configuration fix), and installs into the virtual environment:
`<venv>/llama.cpp/bin/llama-bench`, its shared libraries, and `build.json` (version,
llama.cpp commit, compiler, AMX, the CPU it was built on). llama-cpp-python is installed
from the same archive with its own build off and our libraries copied into it, so the
golden scripts and notebook 06 run the same build.

`LlamaBenchPeer(path, threads=t, n_ctx=n)` answers the peer questions of
`workbench.peers` by running llama-bench once per question, one repetition, JSON out
(`-o json`: `samples_ns` holds the timed repetition): `prefill(ids)` is
`-p len(ids) -n 0`, `decode(prompt, n)` is `-p 0 -n n -d len(prompt)` (the prompt sits
in the KV cache untimed, as workbench's side). Flash attention is off (workbench has
none); the batch is llama-bench's default. llama-bench warms up in each process (a run
before the timed one), loads the file with mmap, and feeds its own token ids (random
ones of the vocabulary), not `ids`: same lengths, other tokens, which does not change
the time of a dense model. Each call is a process of its own, so that a test's samples
alternate with workbench's one by one.

`check_build()` raises `PeerUnavailableError` when the build is missing, was made on
another CPU, or holds AMX code without the fix; `python -m workbench.peers.llamacpp
--check [--smoke GGUF]` runs the check (and a batch on GGUF through both the binding and
llama-bench) in its own process, so that a crash is only a failed check. It never prints
except in that command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from workbench.errors import PeerUnavailableError

PINNED = "0.3.36"  # the llama-cpp-python version whose tree is built (and the goldens were made with)
_MAKE = "`make peer` builds it"
# CPU flags that decide which kernels a native llama.cpp (and workbench) compiles
RELEVANT_FLAGS = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                  "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")


def install_dir() -> Path:
    """Where `make peer` installs llama.cpp: `<sys.prefix>/llama.cpp`."""
    return Path(sys.prefix) / "llama.cpp"


def llama_bench_path() -> Path:
    return install_dir() / "bin" / "llama-bench"


def build_info() -> dict | None:
    """The record `make peer` wrote about the build (build.json), or None."""
    try:
        return json.loads((install_dir() / "build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def cpu_flags() -> list[str]:
    """The flags in RELEVANT_FLAGS this CPU has (/proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in RELEVANT_FLAGS if f in have]
    except OSError:
        pass
    return []


def version() -> str:
    """"llama.cpp 0c1e57098 llama-bench (llama-cpp-python 0.3.36 tree)"."""
    build = _usable_build()
    return f"llama.cpp {build['llama_cpp_commit']} llama-bench (llama-cpp-python {build['llama_cpp_python']} tree)"


def build_description() -> str:
    """"g++ (Debian 12.2.0-14+deb12u1) 12.2.0, native, AMX off": how the peer was built."""
    build = _usable_build()
    amx = "AMX on (GCC 12 tile-config fix)" if build["amx"] and build.get("amx_patch") else \
        "AMX on" if build["amx"] else "AMX off (CPU has none)"
    return f"{build['compiler']}, -march=native, {amx}"


def build_problem(build: dict | None, cpu: str, flags: list[str], system_info: str | None = None) -> str | None:
    """Why the build described by `build` must not be run on this CPU (`cpu` model name,
    relevant `flags`), or None. `system_info`: llama-cpp-python's `llama_print_system_info`,
    when the binding is checked too."""
    if build is None:
        return f"llama.cpp is not built in this environment ({install_dir()}): {_MAKE}"
    built_flags = [f for f in RELEVANT_FLAGS if f in build.get("cpu_flags", [])]
    if build.get("cpu") != cpu or set(built_flags) != set(flags):
        return (f"llama.cpp in {install_dir()} was built natively on another CPU ({build.get('cpu')}: "
                f"{' '.join(built_flags)}; this one is {cpu}: {' '.join(flags)}); rebuild it: {_MAKE}")
    amx_code = build.get("amx") or (system_info is not None and "AMX_INT8 = 1" in system_info)
    if amx_code and not build.get("amx_patch"):
        # GCC 12 drops the stores filling the AMX tile configuration: batched decode dies
        return (f"llama.cpp in {install_dir()} holds AMX code built without the GCC 12 tile-configuration fix, "
                f"which crashes in batched decode; rebuild it: {_MAKE}")
    return None


def check_build() -> None:
    """Raise `PeerUnavailableError` unless llama-bench is installed and safe to run here."""
    _usable_build()


def _usable_build() -> dict:
    from workbench.machine import cpu_name

    build = build_info()
    problem = build_problem(build, cpu_name(), cpu_flags())
    if problem is None and not os.access(llama_bench_path(), os.X_OK):
        problem = f"{llama_bench_path()} is missing: {_MAKE}"
    if problem:
        raise PeerUnavailableError(problem)
    return build


class LlamaBenchPeer:
    """llama-bench on one GGUF file at a fixed thread count, one process per question."""

    timer = "llama-bench"

    def __init__(self, path: str | Path, *, threads: int, n_ctx: int):
        check_build()
        self.path, self.threads = Path(path), threads
        self.description = version()
        self.records: list[dict] = []  # every llama-bench record, as it printed it

    def prefill(self, ids: list[int]) -> float:
        """Seconds llama.cpp spends on a prompt of len(ids) tokens from an empty cache."""
        return self._run(n_prompt=len(ids), n_gen=0, depth=0)

    def decode(self, prompt: list[int], n: int) -> float:
        """Seconds llama.cpp spends on `n` single-token steps after len(prompt) tokens."""
        return self._run(n_prompt=0, n_gen=n, depth=len(prompt))

    def _run(self, n_prompt: int, n_gen: int, depth: int) -> float:
        record = run_llama_bench(self.path, threads=self.threads, n_prompt=n_prompt, n_gen=n_gen, depth=depth)
        self.records.append(record)
        return record["samples_ns"][0] / 1e9

    def close(self) -> None:
        pass


def run_llama_bench(path: str | Path, *, threads: int, n_prompt: int, n_gen: int, depth: int = 0,
                    reps: int = 1, timeout: float = 3600) -> dict:
    """The JSON record of one llama-bench test (`reps` repetitions) on `path`."""
    argv = [str(llama_bench_path()), "-m", str(path), "-p", str(n_prompt), "-n", str(n_gen), "-d", str(depth),
            "-t", str(threads), "-r", str(reps), "-fa", "off", "-o", "json"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        raise PeerUnavailableError(f"llama-bench could not run on {path}: {e}") from None
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise PeerUnavailableError(f"llama-bench failed on {path} (exit {done.returncode}): {tail}")
    try:
        records = json.loads(done.stdout)
        record = records[0]
        if len(records) != 1 or len(record["samples_ns"]) != reps or min(record["samples_ns"]) <= 0:
            raise ValueError("unexpected records")
    except (ValueError, KeyError, IndexError, TypeError):
        raise PeerUnavailableError(f"llama-bench printed no usable JSON record on {path}: "
                                   f"{done.stdout[:200]!r}") from None
    return record


def _binding_version() -> str:
    try:
        import llama_cpp
    except ImportError:
        raise PeerUnavailableError(f"llama-cpp-python is not installed: {_MAKE}") from None
    return llama_cpp.__version__


def smoke(path: str | Path) -> dict:
    """A 32-token batch and a decode step on `path` through llama-cpp-python, then a pp32
    and a tg1 through llama-bench: where a bad build crashes (AMX in batched matrix
    products, instructions this CPU lacks). Run it in its own process; llama-bench's record."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=64, n_batch=64, n_threads=1, n_threads_batch=1, verbose=False)
    try:
        llm.eval(list(range(1, 33)))
        llm.eval([1])
    finally:
        llm.close()
    run_llama_bench(path, threads=1, n_prompt=0, n_gen=1, depth=8)
    return run_llama_bench(path, threads=1, n_prompt=32, n_gen=0)


def _binding_problem() -> str | None:
    """Why llama-cpp-python is not the pinned version running our build's libraries."""
    import llama_cpp

    if llama_cpp.__version__ != PINNED:
        return f"llama-cpp-python {llama_cpp.__version__} is installed; the golden files were made with {PINNED}: {_MAKE}"
    ours, theirs = install_dir() / "lib" / "libllama.so", Path(llama_cpp.__file__).parent / "lib" / "libllama.so"
    if not theirs.is_file() or not ours.is_file() or theirs.read_bytes() != ours.read_bytes():
        return f"llama-cpp-python's {theirs} is not the library of {install_dir()}: {_MAKE}"
    return None


def _main(argv: list[str] | None = None) -> int:
    """`python -m workbench.peers.llamacpp --check [--smoke GGUF]`: exit 0 when the build is
    installed, made on this CPU, safe (AMX only with the fix), llama-cpp-python PINNED runs
    its libraries, and (with --smoke) both ran a batch on GGUF. The Makefile's `peer`
    target builds it otherwise. A crash in the smoke run exits nonzero too, which is why
    this is a separate process."""
    import argparse

    from workbench.machine import cpu_name

    parser = argparse.ArgumentParser(prog="python -m workbench.peers.llamacpp")
    parser.add_argument("--check", action="store_true", required=True,
                        help="check the llama.cpp build of `make peer` and its llama-cpp-python")
    parser.add_argument("--smoke", metavar="GGUF", help="also run a 32-token batch and a decode step on GGUF")
    args = parser.parse_args(argv)
    try:
        _binding_version()
        import llama_cpp

        info = llama_cpp.llama_print_system_info().decode(errors="replace")
        problem = build_problem(build_info(), cpu_name(), cpu_flags(), info) or _binding_problem()
        if problem:
            raise PeerUnavailableError(problem)
        check_build()
        ran = ""
        if args.smoke:
            record = smoke(args.smoke)
            ran = f"; ran {args.smoke} (llama-bench pp32 {record['avg_ts']:.1f} tok/s)"
    except PeerUnavailableError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{version()}: {build_description()}; llama-cpp-python {PINNED} on the same libraries{ran}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
