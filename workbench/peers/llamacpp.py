"""llama.cpp through llama-cpp-python, as a benchmark peer (the only module importing it).

`LlamaCppPeer(path, threads=t, n_ctx=n)` opens the GGUF file with `n_threads` and
`n_threads_batch` = t, `n_batch` 512 and flash attention off (workbench has none), and
measures with llama.cpp's own perf counters (`llama_perf_context`: `t_p_eval_ms` for
batches of more than one token, `t_eval_ms` for single-token ones), reset before each
timed part. Those count the time inside `llama_decode` and exclude the Python wrapper
around it and the argmax that picks the next token, as workbench's side excludes
tokenization and sampling. Token ids come from the caller (workbench's tokenizer on
the same file), so both engines see the same tokens.

llama-cpp-python is imported lazily; when it is missing, `PeerUnavailableError` says
how to install it. It does not tokenize, sample or print.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.peers import PeerUnavailableError

N_BATCH = 512
_INSTALL = ("llama-cpp-python is not installed: pip install llama-cpp-python (or `make peer`, which builds "
            "0.3.36 without the AMX code that crashes on some CPUs)")


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise PeerUnavailableError(_INSTALL) from None
    return llama_cpp


def version() -> str:
    return f"llama.cpp via llama-cpp-python {_llama_cpp().__version__}"


PINNED = "0.3.36"  # the version the golden files were made with


def build_problem() -> str | None:
    """Why this llama-cpp-python build must not be run, or None.

    A native build on a CPU with AMX compiles llama.cpp's AMX matrix code, which GCC 12
    miscompiles: batched decode then dies with SIGSEGV or SIGILL inside the library,
    taking the Python process with it. `llama_print_system_info` names the features the
    library was compiled with, so the build is refused before a model is opened.
    """
    lc = _llama_cpp()
    info = lc.llama_print_system_info().decode(errors="replace")
    amx = sorted({part.split("=")[0].strip() for part in info.split("|")
                  if part.strip().startswith("AMX") and part.strip().endswith("= 1")})
    if amx:
        return (f"llama-cpp-python {lc.__version__} was built with {', '.join(amx)}, whose code crashes "
                "on this CPU; rebuild it without AMX: `make peer`")
    return None


def check_build() -> None:
    """Raise `PeerUnavailableError` when the installed build would crash (see `build_problem`)."""
    problem = build_problem()
    if problem:
        raise PeerUnavailableError(problem)


class LlamaCppPeer:
    """One llama.cpp context on one GGUF file at a fixed thread count."""

    timer = "llama_perf_context"

    def __init__(self, path: str | Path, *, threads: int, n_ctx: int):
        lc = _llama_cpp()
        check_build()
        self._lc = lc
        self.description = version()
        self.llm = lc.Llama(str(path), n_ctx=n_ctx, n_batch=N_BATCH, n_threads=threads,
                            n_threads_batch=threads, flash_attn=False, verbose=False)
        self.n_vocab = self.llm.n_vocab()

    def _argmax(self) -> int:
        # logits of the last token of the last batch (only that row is computed)
        return int(np.argmax(np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.n_vocab,))))

    def prefill(self, ids: list[int]) -> float:
        """Seconds llama.cpp spends on `ids` fed from an empty cache."""
        self.llm.reset()
        self._lc.llama_perf_context_reset(self.llm.ctx)
        self.llm.eval(ids)
        # the counters are updated when the context synchronizes (reading logits does too)
        self._lc.llama_synchronize(self.llm.ctx)
        perf = self._lc.llama_perf_context(self.llm.ctx)
        if len(ids) == 1:
            return self._seconds(perf.t_eval_ms, perf.n_eval, 1)
        return self._seconds(perf.t_p_eval_ms, perf.n_p_eval, len(ids))

    def decode(self, prompt: list[int], n: int) -> float:
        """Seconds llama.cpp spends on `n` single-token steps after `prompt` (not timed),
        each fed the argmax of the step before."""
        self.llm.reset()
        self.llm.eval(prompt)
        tok = self._argmax()
        self._lc.llama_perf_context_reset(self.llm.ctx)
        for _ in range(n):
            self.llm.eval([tok])
            tok = self._argmax()
        perf = self._lc.llama_perf_context(self.llm.ctx)
        return self._seconds(perf.t_eval_ms, perf.n_eval, n)

    @staticmethod
    def _seconds(ms: float, counted: int, expected: int) -> float:
        if counted != expected or ms <= 0:
            raise PeerUnavailableError(f"llama.cpp's perf counters saw {counted} tokens in {ms} ms, expected "
                                       f"{expected} tokens (was it built or started with no_perf?)")
        return ms / 1e3

    def close(self) -> None:
        self.llm.close()


def smoke(path: str | Path) -> None:
    """A batched prefill and one decode step on `path`: where a bad build crashes (AMX in
    batched matrix products, instructions this CPU lacks). Run it in its own process."""
    lc = _llama_cpp()
    llm = lc.Llama(str(path), n_ctx=64, n_batch=64, n_threads=1, n_threads_batch=1, verbose=False)
    try:
        llm.eval(list(range(1, 33)))
        llm.eval([1])
    finally:
        llm.close()


def _main(argv: list[str] | None = None) -> int:
    """`python -m workbench.peers.llamacpp --check [--smoke GGUF]`: exit 0 when llama-cpp-python
    PINNED is installed, built without AMX and (with --smoke) runs a batch on GGUF; the
    Makefile's `peer` target rebuilds it otherwise. A crash in the smoke run exits nonzero
    too, which is why this is a separate process."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m workbench.peers.llamacpp")
    parser.add_argument("--check", action="store_true", required=True,
                        help=f"check that llama-cpp-python {PINNED} is installed without AMX code")
    parser.add_argument("--smoke", metavar="GGUF", help="also run a 32-token batch and a decode step on GGUF")
    args = parser.parse_args(argv)
    try:
        installed = _llama_cpp().__version__
        if installed != PINNED:
            raise PeerUnavailableError(f"llama-cpp-python {installed} is installed; the golden files were "
                                       f"made with {PINNED}: `make peer`")
        check_build()
        if args.smoke:
            smoke(args.smoke)
    except PeerUnavailableError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"llama-cpp-python {installed}: built without AMX" + (f", ran {args.smoke}" if args.smoke else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
