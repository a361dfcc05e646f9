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


class LlamaCppPeer:
    """One llama.cpp context on one GGUF file at a fixed thread count."""

    timer = "llama_perf_context"

    def __init__(self, path: str | Path, *, threads: int, n_ctx: int):
        lc = _llama_cpp()
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
