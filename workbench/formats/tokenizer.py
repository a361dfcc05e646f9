"""Tokenizers rebuilt from GGUF metadata, matching llama.cpp token for token.

Contract: `Tokenizer.from_gguf(gguf_file)` reads `tokenizer.ggml.*` and builds the same
tokenizer llama.cpp builds (`src/llama-vocab.cpp`), with the heavy lifting done by
Hugging Face `tokenizers`:

- `tokenizer.ggml.model == "gpt2"`: byte-level BPE over `tokenizer.ggml.merges`, after
  llama.cpp's pre-tokenizer regexes for `tokenizer.ggml.pre` (`gguf_vocab.PRE_TYPES`).
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
beyond `gguf_vocab.PRE_TYPES`.

The tables that follow llama.cpp's source live in `gguf_vocab.py`, the splitting out of
special tokens in `special_tokens.py`, the bytes of tokens in `token_bytes.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import tokenizers
from tokenizers import processors

from workbench.errors import FormatError, ParameterError, UnsupportedError
from workbench.formats.chat import BUILTIN_TEMPLATES, builtin_for, render_chat_template
from workbench.formats.gguf import GGUFFile
from workbench.formats.gguf_vocab import (
    BYTE,
    CONTROL,
    EOG_TEXTS,
    FIM_TEXTS,
    NORMAL,
    PRE_TYPES,
    SPM_SPACE,
    UNKNOWN,
    USER_DEFINED,
    bpe_tokenizer,
    cached_model,
    spm_tokenizer,
    strip_attributes,
)
from workbench.formats.special_tokens import partition, special_index
from workbench.formats.token_bytes import (
    byte_level_decode,
    llama_clean_spaces,
    text_bytes,
    token_to_byte,
)


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
        self._specials_all, self._specials_user = special_index(tokens, token_types)

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
            if pre not in PRE_TYPES:
                raise UnsupportedError(
                    f"{g.path}: pre-tokenizer type {pre!r} is not supported "
                    f"(supported: {', '.join(sorted(PRE_TYPES))})"
                )
            regexes, clean_spaces = PRE_TYPES[pre]
            hf = cached_model(g, lambda: bpe_tokenizer(g, tokens, regexes))
            bos_def, eos_def, unk_def = 11, 11, None
            add_bos, add_eos, add_space_prefix = False, False, False
        else:
            scores = g.get("tokenizer.ggml.scores", None)
            if scores is None or len(scores) != n:
                raise FormatError(f"{g.path}: tokenizer.ggml.scores must hold {n} scores")
            hf = cached_model(g, lambda: spm_tokenizer(tokens, np.asarray(scores, dtype=np.float32)))
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
        stop = {i for i, t in enumerate(tokens) if t in EOG_TEXTS}
        for i, t in enumerate(tokens):
            if t in EOG_TEXTS or t in FIM_TEXTS:
                types[i] = CONTROL
        if eos_id is not None:
            stop.add(eos_id)
        types.flags.writeable = False

        lstrip, rstrip = strip_attributes(g, tokens, types)
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
                pieces.append(text_bytes(text))
            elif ty == NORMAL:
                pieces.append(text_bytes(text.replace(SPM_SPACE, " ")) if spm
                              else byte_level_decode(text))
            elif ty == BYTE:
                pieces.append(token_to_byte(text, spm))
            else:  # UNDEFINED, UNUSED: llama.cpp renders nothing
                pieces.append(b"")
        return pieces

    # -- encode ---------------------------------------------------------------------

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        """Raw-text pieces and special token ids of `text` (`special_tokens.partition`)."""
        trie = self._specials_all if parse_special else self._specials_user
        return partition(text, trie, self._lstrip, self._rstrip)

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
        return llama_clean_spaces(text) if self.clean_spaces else text

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
