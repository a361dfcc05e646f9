"""Tokenizers of Hugging Face model directories, with the interface of `tokenizer.Tokenizer`.

Contract: `HFTokenizer.from_dir(path)` builds the tokenizer that transformers'
`AutoTokenizer.from_pretrained(path)` builds on its `tokenizers` backend, so that
`encode(text)` equals `AutoTokenizer(...)(text)["input_ids"]`:

- the vocabulary and pipeline come from `tokenizer.json`, or else from `vocab.json` +
  `merges.txt` (the classic GPT-2 layout: byte-level BPE after GPT-2's regex, no prefix
  space unless `tokenizer_config.json` sets `add_prefix_space`);
- `tokenizer_config.json` (and, as a fallback, `special_tokens_map.json`) names the
  special tokens (`bos_token`, `eos_token`, `unk_token`, `pad_token`, as a string or
  `{"content": ...}`), adds the tokens of `added_tokens_decoder`, holds the
  `chat_template` (a string, or a list of {name, template} of which "default" is used;
  `chat_template.jinja` overrides both, as in transformers);
- BOS / EOS are added by `tokenizer.json`'s post-processor, if any; transformers 5
  ignores the config's `add_bos_token` / `add_eos_token` when there is a tokenizer.json,
  and so does this. For vocab.json + merges.txt those flags (default false) give the
  post-processor [BOS] $A [EOS], as transformers' `update_post_processor` writes it;
- `generation_config.json`, else `config.json`: `eos_token_id` (an int or a list) gives
  the stop ids, with the tokenizer's EOS; `bos_token_id` / `eos_token_id` are used when
  the tokenizer config names no BOS / EOS token.

Encoding is `tokenizers`' own. With `parse_special=False` the text of special added
tokens is encoded as plain text (`encode_special_tokens`); non-special added tokens are
still matched, as llama.cpp always matches user-defined tokens.

Decoding is done here, token by token (`hf_tokenizer_decode.py`), so that
`token_to_piece(id)` gives the exact bytes a token stands for (streaming holds back
incomplete UTF-8) and `decode` is their concatenation: the `tokenizer.json` decoder
chain (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip) is applied to one token
at a time, with the first-token rules (Metaspace drops U+2581 in the first token, a
Strip after Fuse trims the whole text) applied by `decode_bytes`. Added tokens go
through the decoder too, as in `tokenizers` (so a vocabulary token made special, such as
"Ġt", reads " t"); llama.cpp renders them as stored instead, which differs only for
added tokens whose text the decoder rewrites (non-ASCII under ByteLevel, U+2581 under
Metaspace/Replace). Invalid UTF-8 becomes one U+FFFD per maximal invalid run (Python),
where ByteFallback writes one per byte token. Decoders outside that list (WordPiece,
CTC, ...) fall back to `tokenizers.decode`, one token at a time for `token_to_piece`.

`encode_chat` follows the GGUF `Tokenizer` (llama.cpp): the rendered chat is encoded with
special tokens added, and a BOS the template already wrote is not doubled. transformers'
`apply_chat_template(tokenize=True)` adds no special tokens instead; the two agree
whenever the template writes the BOS itself or the model adds none.

Checked by hand against transformers 5.23 (encode with every flag, decode, skip_special,
chat text and ids) on data/tiny-gpt2, GPT-2's full vocabulary and directories exported
from both GGUF models; the tests compare with the GGUF tokenizers and `tokenizers`, and
do not import transformers.

It does not read slow-only tokenizers (a SentencePiece `tokenizer.model` or tiktoken file
without `tokenizer.json`), rebuild pipelines per tokenizer class as transformers 5 does
for some classes, or pad and truncate (settings in `tokenizer.json` are dropped, as
transformers does unless asked).

The files of the directory are read by `hf_tokenizer_files.py`, one function per file's
rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tokenizers

from workbench.errors import FormatError, ParameterError
from workbench.formats.chat import BUILTIN_TEMPLATES, render_chat_template
from workbench.formats.hf_tokenizer_decode import (
    apply_strip,
    clean_up_tokenization,
    decoder_steps,
    run_steps,
)
from workbench.formats.hf_tokenizer_files import (
    GPT2_DEFAULTS,
    TOKENIZER_FILES,
    add_config_tokens,
    bos_eos_stop,
    chat_templates,
    gpt2_tokenizer,
    load_tokenizer_json,
    named_specials,
    read_json,
    register_specials,
    template_processor,
    token_text,
)


class HFTokenizer:
    """A Hugging Face directory's tokenizer. Build with `HFTokenizer.from_dir(path)`."""

    def __init__(
        self,
        *,
        hf: tokenizers.Tokenizer,
        bos_id: int | None,
        eos_id: int | None,
        unk_id: int | None = None,
        pad_id: int | None = None,
        stop_ids: frozenset[int],
        chat_template: str | None = None,
        chat_templates: dict[str, str] | None = None,
        special_texts: dict[str, str] | None = None,
        clean_spaces: bool = False,
        source: str,
    ):
        # the `tokenizers.Tokenizer` with added tokens and post-processor in place
        self.hf = hf
        self.bos_id, self.eos_id, self.unk_id, self.pad_id = bos_id, eos_id, unk_id, pad_id
        self.stop_ids = stop_ids
        self.chat_template = chat_template
        self.chat_templates = dict(chat_templates or {})  # named templates from the config
        self.clean_spaces = clean_spaces  # transformers' clean_up_tokenization_spaces
        self.source = source
        self.model = type(hf.model).__name__  # "BPE", "Unigram", ...
        self._template_vars = dict(special_texts or {})

        vocab = hf.get_vocab(with_added_tokens=True)
        self._texts: list[str | None] = [None] * (max(vocab.values(), default=-1) + 1)
        for text, i in vocab.items():
            self._texts[i] = text
        added = hf.get_added_tokens_decoder()
        # transformers' skip_special_tokens hides special added tokens (which include
        # the named ones) and llama.cpp hides control tokens: the same set here
        self._special = frozenset(i for i, t in added.items() if t.special)
        self._steps, self._whole_strip, self._first_differs = decoder_steps(hf.decoder)
        self._pieces: list[bytes | None] = [None] * len(self._texts)
        # what the post-processor adds, whatever its kind: the ids around a plain encoding
        plain = hf.encode("a", add_special_tokens=False).ids
        full = hf.encode("a", add_special_tokens=True).ids
        k = next((k for k in range(len(full) - len(plain) + 1) if full[k:k + len(plain)] == plain), 0)
        self.add_bos = bos_id is not None and bos_id in full[:k]
        self.add_eos = eos_id is not None and eos_id in full[k + len(plain):]

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_dir(cls, path: str | Path) -> HFTokenizer:
        """The tokenizer of the Hugging Face directory `path` (see the module docstring
        for the files read); FormatError naming the file at fault."""
        path = Path(path)
        if not path.is_dir():
            raise FormatError(f"{path}: not a directory")
        config_file = path / "tokenizer_config.json"
        config = read_json(config_file)
        specials = named_specials(config, config_file)
        for name, value in named_specials(read_json(path / "special_tokens_map.json"),
                                           path / "special_tokens_map.json").items():
            specials.setdefault(name, value)

        flags = {}
        if (path / "tokenizer.json").is_file():
            hf = load_tokenizer_json(path / "tokenizer.json")
        elif (path / "vocab.json").is_file() or (path / "merges.txt").is_file():
            add_prefix_space = config.get("add_prefix_space", False)
            if not isinstance(add_prefix_space, bool):
                raise FormatError(f"{config_file}: add_prefix_space must be true or false")
            hf = gpt2_tokenizer(path / "vocab.json", path / "merges.txt", add_prefix_space)
            for name, text in GPT2_DEFAULTS.items():
                if name not in specials and hf.token_to_id(text) is not None:
                    specials[name] = text
            # only this layout honours the flags: transformers 5 drops them from the
            # config when a tokenizer.json exists, whose post-processor then rules
            for key in ("add_bos_token", "add_eos_token"):
                flags[key] = config.get(key, False)
                if not isinstance(flags[key], bool):
                    raise FormatError(f"{config_file}: {key} must be true or false, got {flags[key]!r}")
        else:
            raise FormatError(f"{path}: no tokenizer files (looked for {' or '.join(TOKENIZER_FILES)})")
        hf.no_truncation()
        hf.no_padding()

        add_config_tokens(hf, config.get("added_tokens_decoder"), config_file)
        extra = config.get("additional_special_tokens") or []
        if not isinstance(extra, list):
            raise FormatError(f"{config_file}: additional_special_tokens must be a list")
        named = list(specials.items())
        named += [("additional_special_tokens", token_text(t, config_file, "additional_special_tokens"))
                  for t in extra]
        named_ids = register_specials(hf, named, config_file)
        n_vocab = hf.get_vocab_size(with_added_tokens=True)
        bos_id, eos_id, stop = bos_eos_stop(path, specials, named_ids, n_vocab)

        if flags:
            hf.post_processor = template_processor(hf, bos_id if flags["add_bos_token"] else None,
                                                    eos_id if flags["add_eos_token"] else None)

        template, named_templates = chat_templates(config.get("chat_template"), config_file)
        jinja = path / "chat_template.jinja"
        if jinja.is_file():
            try:
                template = jinja.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise FormatError(f"{jinja}: not a readable text file ({e})") from None
        clean = config.get("clean_up_tokenization_spaces", False)
        texts = {name: text for name, text in specials.items() if text is not None}
        return cls(
            hf=hf, bos_id=bos_id, eos_id=eos_id, unk_id=named_ids.get("unk_token"),
            pad_id=named_ids.get("pad_token"), stop_ids=stop,
            chat_template=template, chat_templates=named_templates, special_texts=texts,
            clean_spaces=bool(clean), source=str(path),
        )

    # -- encode ---------------------------------------------------------------------

    def encode(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of `text`, as `AutoTokenizer(...)(text, add_special_tokens=add_special)`.

        add_special: run the post-processor (BOS / EOS as the directory asks).
        parse_special: recognize special added tokens such as `<|im_start|>` in `text`;
        when False their text is tokenized as ordinary text.
        """
        if not isinstance(text, str):
            raise ParameterError(f"text must be a str, got {type(text).__name__}")
        if parse_special:
            return self.hf.encode(text, add_special_tokens=add_special).ids
        # a setting of the shared tokenizer, switched for this call only (not thread-safe,
        # like the engine's one session per model)
        saved = self.hf.encode_special_tokens
        self.hf.encode_special_tokens = True
        try:
            return self.hf.encode(text, add_special_tokens=add_special).ids
        finally:
            self.hf.encode_special_tokens = saved

    # -- decode ---------------------------------------------------------------------

    def _check_id(self, token_id: int) -> int:
        if not 0 <= token_id < len(self._texts):
            raise ParameterError(
                f"token id {token_id} is outside the vocabulary (0..{len(self._texts) - 1})"
            )
        return token_id

    def _piece(self, token_id: int, first: bool = False) -> bytes:
        if not first:
            piece = self._pieces[token_id]
            if piece is not None:
                return piece
        text = self._texts[token_id]
        if text is None:  # a hole in the id space
            piece = b""
        elif self._steps is None:
            piece = self.hf.decode([token_id], skip_special_tokens=False).encode("utf-8")
        else:
            piece = run_steps(self._steps, text, first)
        if not first:
            self._pieces[token_id] = piece
        return piece

    def token_to_piece(self, token_id: int, special: bool = True) -> bytes:
        """The raw bytes of one token (may be part of a multi-byte UTF-8 character), as it
        reads anywhere but first in a text. special=False renders special tokens as b""."""
        token_id = self._check_id(int(token_id))
        if not special and token_id in self._special:
            return b""
        return self._piece(token_id)

    def decode_bytes(self, ids: Iterable[int], skip_special: bool = False) -> bytes:
        """Concatenated pieces, with the decoder's first-token and whole-text rules."""
        ids = [self._check_id(int(i)) for i in ids]
        if skip_special:
            ids = [i for i in ids if i not in self._special]
        if self._steps is None:
            return self.hf.decode(ids, skip_special_tokens=False).encode("utf-8")
        out = [self._piece(i, first=(k == 0 and self._first_differs)) for k, i in enumerate(ids)]
        text = b"".join(out)
        for content, start, stop in self._whole_strip:
            text = apply_strip(text, content, start, stop)
        return text

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of `ids`; bytes that are not valid UTF-8 become U+FFFD."""
        text = self.decode_bytes(ids, skip_special).decode("utf-8", "replace")
        return clean_up_tokenization(text) if self.clean_spaces else text

    # -- chat -----------------------------------------------------------------------

    def apply_chat_template(
        self,
        messages: list[dict],
        add_generation_prompt: bool = True,
        template: str | None = None,
        **extra: Any,
    ) -> str:
        """Render the directory's chat template (or `template`: a name of the config's
        templates, a name in `chat.BUILTIN_TEMPLATES`, or Jinja source) for `messages`.
        The named special tokens (bos_token, eos_token, unk_token, ...) are in scope,
        as in transformers."""
        if template is None:
            template = self.chat_template
            origin = f"{self.source}: chat_template"
            if template is None:
                names = list(self.chat_templates) + list(BUILTIN_TEMPLATES)
                raise FormatError(
                    f"{self.source} has no chat template (tokenizer_config.json 'chat_template' "
                    f"or chat_template.jinja); pass template= one of {', '.join(names)} or a Jinja string"
                )
        elif template in self.chat_templates:
            origin = f"{self.source}: chat_template {template!r}"
            template = self.chat_templates[template]
        else:
            origin = f"template {template!r}" if template in BUILTIN_TEMPLATES else "given template"
        variables = {**self._template_vars, **extra}
        bos, eos = variables.pop("bos_token", ""), variables.pop("eos_token", "")
        return render_chat_template(
            template, messages, add_generation_prompt=add_generation_prompt,
            bos_token=bos, eos_token=eos, source=origin, **variables,
        )

    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = True,
                    template: str | None = None, **extra: Any) -> list[int]:
        """Token ids of the rendered chat: special tokens parsed, BOS added as `encode`
        adds it unless the template already wrote it (the GGUF Tokenizer's rule)."""
        text = self.apply_chat_template(messages, add_generation_prompt, template, **extra)
        ids = self.encode(text, add_special=True, parse_special=True)
        if self.add_bos and len(ids) >= 2 and ids[0] == ids[1] == self.bos_id:
            ids = ids[1:]
        return ids

    # -- misc -----------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of token ids (model vocabulary and added tokens): highest id + 1."""
        return len(self._texts)

    def is_stop(self, token_id: int) -> bool:
        return token_id in self.stop_ids

    def token_id(self, text: str) -> int | None:
        """Id of the token whose text is exactly `text` (vocab spelling), or None."""
        return self.hf.token_to_id(text)

    def __repr__(self) -> str:
        return (f"HFTokenizer({self.model!r}, vocab={self.vocab_size}, bos={self.bos_id}, "
                f"eos={self.eos_id}, add_bos={self.add_bos}, source={self.source!r})")
