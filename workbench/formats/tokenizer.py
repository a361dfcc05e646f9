"""Tokenizers rebuilt from GGUF metadata, matching llama.cpp token for token.

Contract: `Tokenizer.from_gguf(gguf_file)` reads `tokenizer.ggml.*` and builds the same
tokenizer llama.cpp builds (`src/llama-vocab.cpp`), with the heavy lifting done by
Hugging Face `tokenizers`:

- `tokenizer.ggml.model == "gpt2"`: byte-level BPE over `tokenizer.ggml.merges`, after
  llama.cpp's pre-tokenizer regexes for `tokenizer.ggml.pre` (`_PRE_TYPES`).
- `tokenizer.ggml.model == "llama"`: llama.cpp's SentencePiece-style tokenizer: spaces
  become U+2581, then adjacent pieces merge while their concatenation is in the vocab,
  highest score first; characters left over fall back to `<0xXX>` byte tokens. This is
  BPE whose merge list is every (left, right) split of every vocab entry, ranked by the
  entry's score (what transformers' GGUF converter derives); `add_space_prefix` comes
  from the metadata.

Special tokens are split out of the text first, exactly as llama.cpp's
`tokenizer_st_partition`: longest first, user-defined tokens (type 4) always, control
and unknown tokens (types 3, 2) only with `parse_special=True`. `stop_ids` follows
llama.cpp's end-of-generation rules (EOS, EOT and the token texts it lists). `decode`
mirrors `llama_detokenize(remove_special=False, unparse_special=not skip_special)`.

API: `encode(text, add_special=True, parse_special=True)`, `decode(ids, skip_special=False)`,
`decode_bytes`, `token_to_piece(id) -> bytes` (for streaming), `bos_id`, `eos_id`,
`stop_ids`, `vocab_size`, `apply_chat_template(messages)` / `encode_chat(messages)`,
`to_hf_json()` (a standalone `tokenizer.json`).

It does not implement other tokenizer models (WordPiece, Unigram/T5, RWKV) or pre-types
beyond `_PRE_TYPES`.
"""

from __future__ import annotations

import bisect
from functools import lru_cache
from typing import Any, Iterable, Sequence

import numpy as np
import tokenizers
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors

from workbench.errors import FormatError, ParameterError, UnsupportedError
from workbench.formats.chat import BUILTIN_TEMPLATES, builtin_for, render_chat_template
from workbench.formats.gguf import GGUFFile

# tokenizer.ggml.token_type values (llama_token_type)
UNDEFINED, NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = range(7)

# llama.cpp's regex for GPT-2 style pre-tokenization (served by a hand-written matcher
# in unicode.cpp that behaves like this regex).
_GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# tokenizer.ggml.pre -> (regexes llama.cpp applies one after the other, clean_spaces)
# from llama_vocab::impl::load (LLAMA_VOCAB_PRE_TYPE_*). Each regex splits every piece
# the previous one produced, keeping the text between matches as pieces of their own.
# clean_spaces is llama.cpp's clean_up_tokenization_spaces pass at detokenization.
_PRE_TYPES: dict[str, tuple[list[str], bool]] = {
    "gpt-2": ([_GPT2_REGEX], True),
    "phi-2": ([_GPT2_REGEX], True),
    # digits stand alone, then GPT-2's regex
    "starcoder": ([r"\p{N}", _GPT2_REGEX], True),
    "refact": ([r"\p{N}", _GPT2_REGEX], True),
    "codeshell": ([r"\p{N}", _GPT2_REGEX], True),
    "exaone": ([r"\p{N}", _GPT2_REGEX], True),
    "minerva-7b": ([r"\p{N}", _GPT2_REGEX], True),
    "command-r": ([r"\p{N}", _GPT2_REGEX], False),
    "smollm": ([r"\p{N}", _GPT2_REGEX], False),
}

# Token texts llama.cpp treats as end of generation, and marks as control tokens
# (llama_vocab::impl::load: special_eot_id, special_eom_id, FIM pad/repo/sep and the
# special_eog_ids list).
_EOG_TEXTS = frozenset({
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
_FIM_TEXTS = frozenset({
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
    "<|code_prefix|>", "<|prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
    "<|code_suffix|>", "<|suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
    "<|code_middle|>", "<|middle|>",
})

_SPM_SPACE = "\u2581"  # ▁
_C_SPACE = " \t\n\v\f\r"  # C isspace(), which llama.cpp strips around some tokens


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-character stand-ins for bytes, reversed: char -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _byte_level_decode(text: str) -> bytes:
    table = _byte_decoder()
    out = bytearray()
    for ch in text:
        b = table.get(ch)
        if b is None:  # llama_decode_text's marker for a character outside the table
            out += b"[UNK_BYTE_0x" + _encode(ch).hex().encode() + _encode(text) + b"]"
        else:
            out.append(b)
    return bytes(out)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class Tokenizer:
    """A GGUF file's tokenizer. Build with `Tokenizer.from_gguf(gguf_file)`."""

    def __init__(
        self,
        *,
        model: str,
        tokens: list[str],
        token_types: np.ndarray,
        hf: tokenizers.Tokenizer,
        bos_id: int | None,
        eos_id: int | None,
        unk_id: int | None,
        pad_id: int | None,
        add_bos: bool,
        add_eos: bool,
        add_space_prefix: bool,
        clean_spaces: bool,
        stop_ids: frozenset[int],
        lstrip_ids: frozenset[int] = frozenset(),
        rstrip_ids: frozenset[int] = frozenset(),
        chat_template: str | None,
        source: str,
        architecture: str | None = None,
    ):
        self.model = model  # "gpt2" or "llama"
        self.tokens = tokens
        self.token_types = token_types  # after llama.cpp's control-type overrides
        # the underlying `tokenizers.Tokenizer`: the model and pre-tokenizer, no special
        # tokens; shared by every Tokenizer of the same file, so do not modify it
        self.hf = hf
        self.bos_id, self.eos_id, self.unk_id, self.pad_id = bos_id, eos_id, unk_id, pad_id
        self.add_bos, self.add_eos = add_bos, add_eos
        self.add_space_prefix = add_space_prefix
        self.clean_spaces = clean_spaces
        self.stop_ids = stop_ids
        self._lstrip, self._rstrip = lstrip_ids, rstrip_ids
        self.chat_template = chat_template
        self.source = source
        self.architecture = architecture
        self._pieces = self._build_pieces()
        # control and unknown tokens render as b"" unless special=True
        self._hidden = np.isin(token_types, (UNKNOWN, CONTROL))
        self._specials_all, self._specials_user = self._build_special_index()

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_gguf(cls, gguf_file: GGUFFile) -> Tokenizer:
        g = gguf_file
        model = g.get("tokenizer.ggml.model")
        if model not in ("gpt2", "llama"):
            raise UnsupportedError(
                f"{g.path}: tokenizer model {model!r} is not supported "
                "(supported: 'gpt2' byte-level BPE, 'llama' SentencePiece)"
            )
        tokens = g.get("tokenizer.ggml.tokens")
        if not isinstance(tokens, list) or not tokens or not isinstance(tokens[0], str):
            raise FormatError(f"{g.path}: tokenizer.ggml.tokens must be a non-empty string array")
        n = len(tokens)
        types = np.array(g.get("tokenizer.ggml.token_type", np.full(n, NORMAL)), dtype=np.int32)
        if types.shape != (n,):
            raise FormatError(
                f"{g.path}: tokenizer.ggml.token_type has {types.size} entries, expected {n}"
            )

        def token_id(key: str, default: int | None) -> int | None:
            v = g.get(key, default)
            if v is None:
                return None
            if not isinstance(v, int) or not 0 <= v < n:
                raise FormatError(f"{g.path}: {key} = {v!r} is not a token id below {n}")
            return v

        # defaults are llama.cpp's for the tokenizer type; the metadata overrides them
        if model == "gpt2":
            pre = g.get("tokenizer.ggml.pre", "default")
            if pre not in _PRE_TYPES:
                raise UnsupportedError(
                    f"{g.path}: pre-tokenizer type {pre!r} is not supported "
                    f"(supported: {', '.join(sorted(_PRE_TYPES))})"
                )
            regexes, clean_spaces = _PRE_TYPES[pre]
            hf = _cached(g, lambda: _bpe_tokenizer(g, tokens, regexes))
            bos_def, eos_def, unk_def = 11, 11, None
            add_bos, add_eos, add_space_prefix = False, False, False
        else:
            scores = g.get("tokenizer.ggml.scores", None)
            if scores is None or len(scores) != n:
                raise FormatError(f"{g.path}: tokenizer.ggml.scores must hold {n} scores")
            hf = _cached(g, lambda: _spm_tokenizer(tokens, np.asarray(scores, dtype=np.float32)))
            bos_def, eos_def, unk_def = 1, 2, 0
            add_bos, add_eos, add_space_prefix, clean_spaces = True, False, True, False
        add_space_prefix = bool(g.get("tokenizer.ggml.add_space_prefix", add_space_prefix))
        add_bos = bool(g.get("tokenizer.ggml.add_bos_token", add_bos))
        add_eos = bool(g.get("tokenizer.ggml.add_eos_token", add_eos))

        bos_id = token_id("tokenizer.ggml.bos_token_id", bos_def)
        eos_id = token_id("tokenizer.ggml.eos_token_id", eos_def)
        unk_id = token_id("tokenizer.ggml.unknown_token_id", unk_def)
        pad_id = token_id("tokenizer.ggml.padding_token_id", None)

        # llama.cpp finds end-of-generation tokens by their text and forces them (and
        # the FIM tokens) to control type, whatever the file says.
        stop = {i for i, t in enumerate(tokens) if t in _EOG_TEXTS}
        for i, t in enumerate(tokens):
            if t in _EOG_TEXTS or t in _FIM_TEXTS:
                types[i] = CONTROL
        if eos_id is not None:
            stop.add(eos_id)
        types.flags.writeable = False

        lstrip, rstrip = _strip_attributes(g, tokens, types)
        template = g.get("tokenizer.chat_template", None)
        return cls(
            model=model, tokens=tokens, token_types=types, hf=hf, bos_id=bos_id,
            eos_id=eos_id, unk_id=unk_id, pad_id=pad_id, add_bos=add_bos, add_eos=add_eos,
            add_space_prefix=add_space_prefix, clean_spaces=clean_spaces, stop_ids=frozenset(stop),
            lstrip_ids=lstrip, rstrip_ids=rstrip,
            chat_template=template if isinstance(template, str) else None,
            source=str(g.path), architecture=g.get("general.architecture", None),
        )

    def _build_pieces(self) -> list[bytes]:
        """Each token's bytes as llama.cpp's token_to_piece(special=True) renders them."""
        pieces = []
        spm = self.model == "llama"
        for text, ty in zip(self.tokens, self.token_types.tolist()):
            if ty in (UNKNOWN, CONTROL, USER_DEFINED):
                pieces.append(_encode(text))
            elif ty == NORMAL:
                pieces.append(_encode(text.replace(_SPM_SPACE, " ")) if spm
                              else _byte_level_decode(text))
            elif ty == BYTE:
                pieces.append(_token_to_byte(text, spm))
            else:  # UNDEFINED, UNUSED: llama.cpp renders nothing
                pieces.append(b"")
        return pieces

    def _build_special_index(self):
        """Prefix tries of the special tokens (all, and user-defined only), so that one
        substring test rules out a whole family such as Gemma's 6k `<unusedN>`."""
        entries = []
        for i, (text, ty) in enumerate(zip(self.tokens, self.token_types.tolist())):
            if ty in (CONTROL, USER_DEFINED, UNKNOWN) and text:
                entries.append((-len(_encode(text)), i, text, ty == USER_DEFINED))
        entries.sort()  # llama.cpp's order: longest (in bytes) first
        ranked = [(rank, text, i) for rank, (_, i, text, _) in enumerate(entries)]
        user = [r for r, e in zip(ranked, entries) if e[3]]
        return _prefix_trie(ranked, 3), _prefix_trie(user, 3)

    # -- encode ---------------------------------------------------------------------

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        """Split `text` into raw-text pieces and special token ids, as llama.cpp's
        tokenizer_st_partition: for each special token, longest first, every occurrence
        that lies inside a still-unsplit piece becomes that token, left to right."""
        found: list = []
        _collect(self._specials_all if parse_special else self._specials_user, text, found)
        if not found:
            return [text]
        found.sort()  # longest first, then by id: llama.cpp's order
        # Placed spans, kept sorted by start: start -> (end, token id, or None for
        # whitespace a token stripped away). An occurrence that overlaps a placed span
        # straddles two pieces, so llama.cpp never sees it.
        starts: list[int] = []
        spans: dict[int, tuple[int, int | None]] = {}

        def blocked_until(a: int, b: int) -> int:
            """End of the last placed span overlapping [a, b), or -1 if none does."""
            k = bisect.bisect_left(starts, b)
            if k:
                e = spans[starts[k - 1]][0]
                if e > a:
                    return e
            return -1

        def place(a: int, b: int, tok: int | None) -> None:
            if a < b:
                bisect.insort(starts, a)
                spans[a] = (b, tok)

        for _, tok_text, tok_id in found:
            pos = text.find(tok_text)
            while pos >= 0:
                end = pos + len(tok_text)
                blocked = blocked_until(pos, end)
                if blocked >= 0:  # no occurrence can start before the blocking span ends
                    pos = text.find(tok_text, blocked)
                    continue
                place(pos, end, tok_id)
                if tok_id in self._lstrip:  # the token swallows whitespace on its left
                    a = pos
                    while a > 0 and text[a - 1] in _C_SPACE and blocked_until(a - 1, a) < 0:
                        a -= 1
                    place(a, pos, None)
                if tok_id in self._rstrip:  # ... or on its right
                    b = end
                    while b < len(text) and text[b] in _C_SPACE and blocked_until(b, b + 1) < 0:
                        b += 1
                    place(end, b, None)
                    end = b
                pos = text.find(tok_text, end)

        frags: list[str | int] = []
        prev = 0
        for a in starts:
            b, tok = spans[a]
            if a > prev:
                frags.append(text[prev:a])
            if tok is not None:
                frags.append(tok)
            prev = b
        if prev < len(text):
            frags.append(text[prev:])
        return frags

    def encode(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of `text`, as llama.cpp's `llama_tokenize(text, add_special, parse_special)`.

        add_special: prepend BOS / append EOS where the metadata asks for them.
        parse_special: recognize control-token texts such as `<|im_start|>` in `text`
        (user-defined tokens are always recognized, as in llama.cpp).
        """
        if not isinstance(text, str):
            raise ParameterError(f"text must be a str, got {type(text).__name__}")
        frags = self._partition(text, parse_special) if text else []
        if self.model == "llama":
            # prefix a space to text that starts the input or follows a special token
            raw, prev_special = [], True
            for f in frags:
                if isinstance(f, str):
                    raw.append(" " + f if self.add_space_prefix and prev_special else f)
                prev_special = isinstance(f, int)
        else:
            raw = [f for f in frags if isinstance(f, str)]
        encoded = iter(self.hf.encode_batch(raw, add_special_tokens=False) if raw else [])

        ids: list[int] = []
        if add_special and self.add_bos and self.bos_id is not None:
            ids.append(self.bos_id)
        for f in frags:
            if isinstance(f, int):
                ids.append(f)
            else:
                ids.extend(next(encoded).ids)
        if add_special and self.add_eos and self.eos_id is not None:
            ids.append(self.eos_id)
        return ids

    # -- decode ---------------------------------------------------------------------

    def _check_id(self, token_id: int) -> int:
        if not 0 <= token_id < len(self.tokens):
            raise ParameterError(
                f"token id {token_id} is outside the vocabulary (0..{len(self.tokens) - 1})"
            )
        return token_id

    def token_to_piece(self, token_id: int, special: bool = True) -> bytes:
        """The raw bytes of one token (may be part of a multi-byte UTF-8 character).

        special=False renders control and unknown tokens as b"", like llama.cpp.
        """
        token_id = self._check_id(int(token_id))
        if not special and self._hidden[token_id]:
            return b""
        return self._pieces[token_id]

    def decode_bytes(self, ids: Iterable[int], skip_special: bool = False) -> bytes:
        """Concatenated pieces, as `llama_detokenize(remove_special=False,
        unparse_special=not skip_special)`: one leading space is dropped from the first
        token when the tokenizer adds a space prefix, and spaces are cleaned up where
        the pre-tokenizer type asks for it."""
        out = []
        for k, i in enumerate(ids):
            piece = self.token_to_piece(i, special=not skip_special)
            if k == 0 and self.add_space_prefix and piece.startswith(b" "):
                piece = piece[1:]
            out.append(piece)
        text = b"".join(out)
        return _clean_spaces(text) if self.clean_spaces else text

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of `ids`; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids, skip_special).decode("utf-8", "replace")

    # -- chat -----------------------------------------------------------------------

    def apply_chat_template(
        self,
        messages: list[dict],
        add_generation_prompt: bool = True,
        template: str | None = None,
        **extra: Any,
    ) -> str:
        """Render the file's `tokenizer.chat_template` (or `template`: Jinja source or a
        name in `chat.BUILTIN_TEMPLATES`) for `messages`. A file without a template gets
        the built-in one of its architecture (`chat.builtin_for`), as llama.cpp does."""
        if template is None and self.chat_template is None:
            template = builtin_for(self.architecture)
            origin = f"template {template!r} (built in; {self.source} has no tokenizer.chat_template)"
        elif template is None:
            template = self.chat_template
            origin = f"{self.source}: tokenizer.chat_template"
        else:
            origin = f"template {template!r}" if template in BUILTIN_TEMPLATES else "given template"
        return render_chat_template(
            template, messages, add_generation_prompt=add_generation_prompt,
            bos_token=self._text_of(self.bos_id), eos_token=self._text_of(self.eos_id),
            source=origin, **extra,
        )

    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = True,
                    template: str | None = None, **extra: Any) -> list[int]:
        """Token ids of the rendered chat: special tokens parsed, BOS added per the
        metadata unless the template already wrote it."""
        text = self.apply_chat_template(messages, add_generation_prompt, template, **extra)
        ids = self.encode(text, add_special=True, parse_special=True)
        if self.add_bos and len(ids) >= 2 and ids[0] == ids[1] == self.bos_id:
            ids = ids[1:]
        return ids

    def to_hf_json(self) -> str:
        """This tokenizer as a standalone Hugging Face `tokenizer.json` string (for HF-style
        model directories): special tokens registered as added tokens and BOS/EOS added
        by a post-processor. `tokenizers` matches added tokens leftmost-longest rather
        than llama.cpp's longest-first, which differs only when special tokens overlap
        each other in the text."""
        hf = tokenizers.Tokenizer.from_str(self.hf.to_str())
        types = self.token_types.tolist()
        hf.add_tokens([
            tokenizers.AddedToken(text, special=(ty != USER_DEFINED), normalized=False)
            for text, ty in zip(self.tokens, types) if ty in (UNKNOWN, CONTROL, USER_DEFINED)
        ])
        single, specials = "$A", []
        if self.add_bos and self.bos_id is not None:
            single = f"{self.tokens[self.bos_id]} {single}"
            specials.append((self.tokens[self.bos_id], self.bos_id))
        if self.add_eos and self.eos_id is not None:
            single = f"{single} {self.tokens[self.eos_id]}"
            specials.append((self.tokens[self.eos_id], self.eos_id))
        hf.post_processor = processors.TemplateProcessing(
            single=single, pair=f"{single} $B:1", special_tokens=specials)
        return hf.to_str()

    def _text_of(self, token_id: int | None) -> str:
        return "" if token_id is None else self.tokens[token_id]

    # -- misc -----------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def is_stop(self, token_id: int) -> bool:
        return token_id in self.stop_ids

    def token_id(self, text: str) -> int | None:
        """Id of the token whose text is exactly `text` (vocab spelling), or None."""
        return self.hf.token_to_id(text)

    def __repr__(self) -> str:
        return (f"Tokenizer({self.model!r}, vocab={self.vocab_size}, bos={self.bos_id}, "
                f"eos={self.eos_id}, add_bos={self.add_bos}, source={self.source!r})")


_TRIE_LEAF = 32


def _prefix_trie(entries: list, depth: int):
    """(entries tested directly, {prefix: subtrie}) with prefixes `depth` chars long."""
    if len(entries) <= _TRIE_LEAF:
        return entries, {}
    direct, groups = [], {}
    for e in entries:
        if len(e[1]) <= depth:
            direct.append(e)
        else:
            groups.setdefault(e[1][:depth], []).append(e)
    return direct, {p: _prefix_trie(g, depth + 3) for p, g in groups.items()}


def _collect(trie, text: str, out: list) -> None:
    """Append every trie entry whose token text occurs in `text`."""
    direct, groups = trie
    out.extend(e for e in direct if e[1] in text)
    for prefix, sub in groups.items():
        if prefix in text:
            _collect(sub, text, out)


def _strip_attributes(g: GGUFFile, tokens: list[str], types: np.ndarray):
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


def _token_to_byte(text: str, spm: bool) -> bytes:
    if spm:  # "<0xXX>"
        try:
            return bytes([int(text[3:-1], 16)])
        except ValueError:
            return b""
    return _byte_level_decode(text)


_HF_CACHE: dict[tuple, tokenizers.Tokenizer] = {}
_HF_CACHE_SIZE = 4


def _cached(g: GGUFFile, build) -> tokenizers.Tokenizer:
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


def _bpe_tokenizer(g: GGUFFile, tokens: list[str], regexes: list[str]) -> tokenizers.Tokenizer:
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


def _spm_tokenizer(tokens: list[str], scores: np.ndarray) -> tokenizers.Tokenizer:
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
    tok.normalizer = normalizers.Replace(" ", _SPM_SPACE)
    tok.decoder = decoders.Sequence([
        decoders.Replace(_SPM_SPACE, " "), decoders.ByteFallback(), decoders.Fuse(),
    ])
    return tok


def _clean_spaces(text: bytes) -> bytes:
    """llama_detokenize's clean_spaces passes, ported line for line (they edit in place,
    reading bytes a previous step may have overwritten)."""
    t = bytearray(text)
    # first pass: " ?", " !", " .", " ," lose the space
    n, total = len(t), 1 if t else 0
    for i in range(1, n):
        x = t[i]
        if t[i - 1] == 0x20 and x in b"?!.,":
            total -= 1
        t[total] = x
        total += 1
    # second pass: a lone apostrophe between spaces loses both spaces
    n, total, i = total, 1 if total else 0, 1
    while i < n:
        x = t[i]
        if x == 0x27 and i + 1 < n and t[i - 1] == 0x20 and t[i + 1] == 0x20:
            total -= 1
            i += 1
            t[i] = 0
        t[total] = x
        total += 1
        i += 1
    # third pass: " 's", " 'm", " 're", " 've" lose the space
    n, total = total, 1 if total else 0
    for i in range(1, n):
        x = t[i]
        if t[i - 1] == 0x20 and x == 0x27 and i + 1 < n:
            x1 = t[i + 1]
            if x1 in b"sm":
                total -= 1
            elif x1 not in b"td" and i + 2 < n:
                x2 = t[i + 2]
                if (x1, x2) in ((0x72, 0x65), (0x76, 0x65)):  # "re", "ve"
                    total -= 1
        t[total] = x
        total += 1
    return bytes(t[:total])
