"""llama.cpp's reading of a GGUF vocabulary: token types, pre-tokenizers, the tokens it
treats as special, and the `tokenizers` models that reproduce its tokenization.

Split from `tokenizer.py` because it is the part that follows llama.cpp's source
(`src/llama-vocab.cpp`) table by table and must be updated with it; the `Tokenizer` built
on top follows llama.cpp's API instead.

- `PRE_TYPES`: `tokenizer.ggml.pre` -> the regexes llama.cpp applies and whether it
  cleans spaces when detokenizing;
- `EOG_TEXTS`, `FIM_TEXTS`: token texts llama.cpp forces to control type (the first also
  end generation); `strip_attributes`: tokens that swallow whitespace, by model name;
- `bpe_tokenizer` (byte-level BPE over `tokenizer.ggml.merges`) and `spm_tokenizer`
  (SentencePiece as BPE: every split of every token a merge, ranked by score), each
  built once per unchanged file (`cached_model`): Gemma's 500k merges take seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tokenizers
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers

from workbench.errors import FormatError
from workbench.formats.gguf import GGUFFile

# tokenizer.ggml.token_type values (llama_token_type)
UNDEFINED, NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = range(7)

# llama.cpp's regex for GPT-2 style pre-tokenization (served by a hand-written matcher
# in unicode.cpp that behaves like this regex).
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# tokenizer.ggml.pre -> (regexes llama.cpp applies one after the other, clean_spaces)
# from llama_vocab::impl::load (LLAMA_VOCAB_PRE_TYPE_*). Each regex splits every piece
# the previous one produced, keeping the text between matches as pieces of their own.
# clean_spaces is llama.cpp's clean_up_tokenization_spaces pass at detokenization.
PRE_TYPES: dict[str, tuple[list[str], bool]] = {
    "gpt-2": ([GPT2_REGEX], True),
    "phi-2": ([GPT2_REGEX], True),
    # digits stand alone, then GPT-2's regex
    "starcoder": ([r"\p{N}", GPT2_REGEX], True),
    "refact": ([r"\p{N}", GPT2_REGEX], True),
    "codeshell": ([r"\p{N}", GPT2_REGEX], True),
    "exaone": ([r"\p{N}", GPT2_REGEX], True),
    "minerva-7b": ([r"\p{N}", GPT2_REGEX], True),
    "command-r": ([r"\p{N}", GPT2_REGEX], False),
    "smollm": ([r"\p{N}", GPT2_REGEX], False),
}

# Token texts llama.cpp treats as end of generation, and marks as control tokens
# (llama_vocab::impl::load: special_eot_id, special_eom_id, FIM pad/repo/sep and the
# special_eog_ids list).
EOG_TEXTS = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
    "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>",
    "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>",
    "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
    # FIM pad / repo / sep
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
    "<|file_sep|>",
})
# FIM prefix/suffix/middle texts: not end of generation, but forced to control type
FIM_TEXTS = frozenset({
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
    "<|code_prefix|>", "<|prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
    "<|code_suffix|>", "<|suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
    "<|code_middle|>", "<|middle|>",
})

SPM_SPACE = "\u2581"  # ▁


def strip_attributes(g: GGUFFile, tokens: list[str], types: np.ndarray):
    """Tokens that swallow adjacent whitespace, set by llama.cpp from the model's name
    (llama_vocab::impl::load, "set attributes by model/tokenizer/architecture name")."""
    name = str(g.get("general.name", "")).lower()
    pre = str(g.get("tokenizer.ggml.pre", ""))
    arch = str(g.get("general.architecture", ""))
    ids = {t: i for i, t in enumerate(tokens)}
    lstrip: set[int] = set()
    rstrip: set[int] = set()
    if any(p in pre for p in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or any(
            a in arch for a in ("nomic-bert-moe", "jina-bert-v3")):
        lstrip = {ids["<mask>"]} if "<mask>" in ids else set()
    elif "phi-3" in name or "phi3" in name:
        special = (CONTROL, USER_DEFINED, UNKNOWN)
        rstrip = {i for i, ty in enumerate(types.tolist()) if ty in special}
        rstrip |= {ids["</s>"]} if "</s>" in ids else set()
        rstrip -= {ids[t] for t in ("<unk>", "<s>", "<|endoftext|>") if t in ids}
    elif "modern-bert" in name:
        lstrip = {ids["[MASK]"]} if "[MASK]" in ids else set()
    return frozenset(lstrip), frozenset(rstrip)


_HF_CACHE: dict[tuple, tokenizers.Tokenizer] = {}
_HF_CACHE_SIZE = 4


def cached_model(g: GGUFFile, build) -> tokenizers.Tokenizer:
    """The `tokenizers` model of an unchanged file is built once per process: deriving
    Gemma's 500k merges takes seconds."""
    try:
        st = g.path.stat()
        key = (str(g.path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        return build()
    hf = _HF_CACHE.get(key)
    if hf is None:
        hf = build()
        while len(_HF_CACHE) >= _HF_CACHE_SIZE:
            _HF_CACHE.pop(next(iter(_HF_CACHE)))
        _HF_CACHE[key] = hf
    return hf


def _vocab_dict(tokens: Sequence[str]) -> dict[str, int]:
    # a later duplicate wins, as in llama.cpp's token_to_id map
    return {t: i for i, t in enumerate(tokens)}


def bpe_tokenizer(g: GGUFFile, tokens: list[str], regexes: list[str]) -> tokenizers.Tokenizer:
    vocab = _vocab_dict(tokens)
    merges = []
    for m in g.get("tokenizer.ggml.merges"):
        cut = m.find(" ", 1)  # as llama.cpp: the first space after the first character
        if cut < 0:
            raise FormatError(f"{g.path}: tokenizer.ggml.merges entry {m!r} has no space")
        a, b = m[:cut], m[cut + 1:]
        # a merge whose parts or result are not tokens can never produce a token id
        if a in vocab and b in vocab and a + b in vocab:
            merges.append((a, b))
    tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def spm_tokenizer(tokens: list[str], scores: np.ndarray) -> tokenizers.Tokenizer:
    vocab = _vocab_dict(tokens)
    # Every split of every token into two tokens is a merge; llama.cpp merges the pair
    # whose concatenation scores highest, so rank merges by that score.
    merges = []
    for text, i in vocab.items():
        s = -float(scores[i])
        for k in range(1, len(text)):
            a = text[:k]
            if a in vocab:
                b = text[k:]
                if b in vocab:
                    merges.append((s, i, k, a, b))
    merges.sort()
    has_bytes = all(f"<0x{b:02X}>" in vocab for b in range(256))
    tok = tokenizers.Tokenizer(models.BPE(
        vocab=vocab, merges=[(a, b) for *_, a, b in merges], byte_fallback=has_bytes,
        fuse_unk=False,
    ))
    tok.normalizer = normalizers.Replace(" ", SPM_SPACE)
    tok.decoder = decoders.Sequence([
        decoders.Replace(SPM_SPACE, " "), decoders.ByteFallback(), decoders.Fuse(),
    ])
    return tok
