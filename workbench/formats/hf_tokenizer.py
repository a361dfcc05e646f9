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

Decoding is done here, token by token, so that `token_to_piece(id)` gives the exact bytes
a token stands for (streaming holds back incomplete UTF-8) and `decode` is their
concatenation: the `tokenizer.json` decoder chain (ByteLevel, Metaspace, Replace,
ByteFallback, Fuse, Strip) is applied to one token at a time, with the first-token rules
(Metaspace drops U+2581 in the first token, a Strip after Fuse trims the whole text)
applied by `decode_bytes`. Added tokens go through the decoder too, as in `tokenizers`
(so a vocabulary token made special, such as "Ġt", reads " t"); llama.cpp renders them
as stored instead, which differs only for added tokens whose text the decoder rewrites
(non-ASCII under ByteLevel, U+2581 under Metaspace/Replace). Invalid UTF-8 becomes one
U+FFFD per maximal invalid run (Python), where ByteFallback writes one per byte token.
Decoders outside that list (WordPiece, CTC, ...) fall back to `tokenizers.decode`, one
token at a time for `token_to_piece`.

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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import tokenizers
from tokenizers import AddedToken, decoders, models, pre_tokenizers, processors

from workbench.errors import FormatError, ParameterError
from workbench.formats.chat import BUILTIN_TEMPLATES, render_chat_template
from workbench.formats.token_bytes import byte_decoder

# Named special tokens transformers knows; bos/eos must be vocabulary tokens, the others
# are only registered as special when they are.
_NAMED = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")
# GPT2Tokenizer's defaults for the vocab.json + merges.txt layout
_GPT2_DEFAULTS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                  "unk_token": "<|endoftext|>"}
_FILES = ("tokenizer.json", "vocab.json + merges.txt")


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
        self._steps, self._whole_strip, self._first_differs = _decoder_steps(hf.decoder)
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
        config = _read_json(config_file)
        specials = _named_specials(config, config_file)
        for name, value in _named_specials(_read_json(path / "special_tokens_map.json"),
                                           path / "special_tokens_map.json").items():
            specials.setdefault(name, value)

        flags = {}
        if (path / "tokenizer.json").is_file():
            hf = _load_tokenizer_json(path / "tokenizer.json")
        elif (path / "vocab.json").is_file() or (path / "merges.txt").is_file():
            add_prefix_space = config.get("add_prefix_space", False)
            if not isinstance(add_prefix_space, bool):
                raise FormatError(f"{config_file}: add_prefix_space must be true or false")
            hf = _gpt2_tokenizer(path / "vocab.json", path / "merges.txt", add_prefix_space)
            for name, text in _GPT2_DEFAULTS.items():
                if name not in specials and hf.token_to_id(text) is not None:
                    specials[name] = text
            # only this layout honours the flags: transformers 5 drops them from the
            # config when a tokenizer.json exists, whose post-processor then rules
            for key in ("add_bos_token", "add_eos_token"):
                flags[key] = config.get(key, False)
                if not isinstance(flags[key], bool):
                    raise FormatError(f"{config_file}: {key} must be true or false, got {flags[key]!r}")
        else:
            raise FormatError(f"{path}: no tokenizer files (looked for {' or '.join(_FILES)})")
        hf.no_truncation()
        hf.no_padding()

        _add_config_tokens(hf, config.get("added_tokens_decoder"), config_file)
        extra = config.get("additional_special_tokens") or []
        if not isinstance(extra, list):
            raise FormatError(f"{config_file}: additional_special_tokens must be a list")
        named = list(specials.items())
        named += [("additional_special_tokens", _token_text(t, config_file, "additional_special_tokens"))
                  for t in extra]
        named_ids = _register_specials(hf, named, config_file)
        n_vocab = hf.get_vocab_size(with_added_tokens=True)
        bos_id, eos_id, stop = _bos_eos_stop(path, specials, named_ids, n_vocab)

        if flags:
            hf.post_processor = _template_processor(hf, bos_id if flags["add_bos_token"] else None,
                                                    eos_id if flags["add_eos_token"] else None)

        template, named_templates = _chat_templates(config.get("chat_template"), config_file)
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
            piece = _run_steps(self._steps, text, first)
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
            text = _strip(text, content, start, stop)
        return text

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of `ids`; bytes that are not valid UTF-8 become U+FFFD."""
        text = self.decode_bytes(ids, skip_special).decode("utf-8", "replace")
        return _clean_up_tokenization(text) if self.clean_spaces else text

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


# -- reading the directory --------------------------------------------------------------


def _read_json(path: Path, required: bool = False) -> Any:
    """A JSON object from `path`, {} when an optional file is absent; FormatError naming
    the file otherwise."""
    if not path.is_file():
        if required:
            raise FormatError(f"{path}: file is missing")
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(value, dict):
        raise FormatError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _token_text(value: Any, file: Path, key: str) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise FormatError(f"{file}: {key} must be a string or {{\"content\": string}}, got {value!r}")


def _named_specials(config: dict, file: Path) -> dict[str, str | None]:
    """name -> text (None where the config sets it to null) of the named special tokens."""
    return {name: _token_text(config[name], file, name) for name in _NAMED if name in config}


def _load_tokenizer_json(file: Path) -> tokenizers.Tokenizer:
    try:
        return tokenizers.Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises a bare Exception for every parse error
        raise FormatError(f"{file}: not a valid tokenizer.json ({e})") from None


def _gpt2_tokenizer(vocab_file: Path, merges_file: Path, add_prefix_space: bool) -> tokenizers.Tokenizer:
    """GPT-2's byte-level BPE, as transformers builds it from vocab.json + merges.txt: the
    ByteLevel pre-tokenizer splits with GPT-2's regex and maps bytes to characters."""
    vocab = _read_json(vocab_file, required=True)
    if not all(isinstance(i, int) and i >= 0 for i in vocab.values()):
        raise FormatError(f"{vocab_file}: expected an object of token -> id (non-negative integers)")
    if not merges_file.is_file():
        raise FormatError(f"{merges_file}: file is missing (vocab.json needs it)")
    merges = []
    try:
        lines = merges_file.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{merges_file}: not a readable text file ({e})") from None
    for n, line in enumerate(lines, 1):
        if not line or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise FormatError(f"{merges_file}: line {n} is not two tokens separated by a space: {line!r}")
        merges.append((parts[0], parts[1]))
    try:
        model = models.BPE(vocab=vocab, merges=merges, fuse_unk=False)
    except Exception as e:
        raise FormatError(f"{merges_file}: merges do not fit {vocab_file.name} ({e})") from None
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def _add_config_tokens(hf: tokenizers.Tokenizer, decoder: Any, file: Path) -> None:
    """Register tokenizer_config.json's added_tokens_decoder entries that tokenizer.json
    lacks, checking each lands on its declared id."""
    if decoder is None:
        return
    if not isinstance(decoder, dict):
        raise FormatError(f"{file}: added_tokens_decoder must be an object of id -> token")
    present = {t.content for t in hf.get_added_tokens_decoder().values()}
    for key, entry in sorted(decoder.items(), key=lambda kv: _int_key(kv[0], file)):
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
            raise FormatError(f"{file}: added_tokens_decoder[{key!r}] needs a 'content' string")
        content = entry["content"]
        if content in present:
            continue
        special = bool(entry.get("special", False))
        token = AddedToken(content, single_word=bool(entry.get("single_word", False)),
                           lstrip=bool(entry.get("lstrip", False)), rstrip=bool(entry.get("rstrip", False)),
                           normalized=bool(entry.get("normalized", not special)), special=special)
        (hf.add_special_tokens if special else hf.add_tokens)([token])
        if hf.token_to_id(content) != _int_key(key, file):
            raise FormatError(f"{file}: added token {content!r} is declared as id {key} but the "
                              f"vocabulary gives it id {hf.token_to_id(content)}")


def _register_specials(hf: tokenizers.Tokenizer, named: list[tuple[str, str | None]],
                       file: Path) -> dict[str, int | None]:
    """Make the named special tokens special added tokens, as transformers does, so that
    their text is matched whole and skip_special hides them; name -> id. BOS and EOS
    must be vocabulary tokens; other names that are not are ignored (transformers would
    append them, giving ids the model has no embedding for)."""
    present = {t.content for t in hf.get_added_tokens_decoder().values()}
    ids: dict[str, int | None] = {}
    for name, text in named:
        tid = None if text is None else hf.token_to_id(text)
        if tid is None and text is not None and name in ("bos_token", "eos_token"):
            raise FormatError(f"{file}: {name} {text!r} is not a token of the vocabulary")
        if tid is not None and text not in present:
            hf.add_special_tokens([AddedToken(text, special=True, normalized=False)])
            present.add(text)
        ids[name] = tid
    return ids


def _bos_eos_stop(path: Path, specials: dict, named_ids: dict, n_vocab: int):
    """(BOS id, EOS id, stop ids). The tokenizer config's named tokens win; otherwise
    generation_config.json, then config.json give the ids. The stop ids are
    generation_config.json's eos_token_id (config.json's when it has none, as transformers'
    generate falls back to the model config) and the EOS."""
    gen_file, model_file = path / "generation_config.json", path / "config.json"
    gen, model_config = _read_json(gen_file), _read_json(model_file)
    gen_eos = _id_list(gen, "eos_token_id", gen_file, n_vocab)
    cfg_eos = _id_list(model_config, "eos_token_id", model_file, n_vocab)
    cfg_bos = (_id_list(gen, "bos_token_id", gen_file, n_vocab)
               or _id_list(model_config, "bos_token_id", model_file, n_vocab))
    if specials.get("bos_token") is not None:
        bos_id = named_ids["bos_token"]
    else:
        bos_id = cfg_bos[0] if cfg_bos else None
    if specials.get("eos_token") is not None:
        eos_id = named_ids["eos_token"]
    else:
        eos_id = (gen_eos or cfg_eos or [None])[0]
    stop = set(gen_eos if "eos_token_id" in gen else cfg_eos)
    if eos_id is not None:
        stop.add(eos_id)
    return bos_id, eos_id, frozenset(stop)


def _int_key(key: str, file: Path) -> int:
    try:
        return int(key)
    except ValueError:
        raise FormatError(f"{file}: added_tokens_decoder key {key!r} is not a token id") from None


def _id_list(config: dict, key: str, file: Path, n_vocab: int) -> list[int]:
    """`config[key]` as a list of token ids (it may be an int, a list, null or absent)."""
    value = config.get(key)
    if value is None:
        return []
    ids = value if isinstance(value, list) else [value]
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_vocab:
            raise FormatError(f"{file}: {key} = {value!r} is not a token id (or list of them) "
                              f"below {n_vocab}")
    return list(ids)


def _chat_templates(value: Any, file: Path) -> tuple[str | None, dict[str, str]]:
    """(default template, named templates) from tokenizer_config.json's chat_template."""
    if value is None or isinstance(value, str):
        return value, {}
    if isinstance(value, list):
        named = {}
        for entry in value:
            if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                    and isinstance(entry.get("template"), str)):
                raise FormatError(f"{file}: chat_template entries must be {{'name', 'template'}} strings")
            named[entry["name"]] = entry["template"]
        return named.get("default"), named
    raise FormatError(f"{file}: chat_template must be a string or a list of {{name, template}}")


def _template_processor(hf: tokenizers.Tokenizer, bos_id: int | None, eos_id: int | None):
    """[BOS] $A [EOS] as transformers' update_post_processor writes it."""
    single, specials, bos, eos = "$A:0", [], None, None
    if bos_id is not None:
        bos = hf.id_to_token(bos_id)
        single = f"{bos}:0 {single}"
        specials.append((bos, bos_id))
    if eos_id is not None:
        eos = hf.id_to_token(eos_id)
        single = f"{single} {eos}:0"
        specials.append((eos, eos_id))
    pair = single + " " + " ".join(f"{t}:1" for t in [bos] * (bos_id is not None) + ["$B"]
                                   + [eos] * (eos_id is not None))
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)


# -- decoding one token at a time -------------------------------------------------------


def _decoder_steps(decoder) -> tuple[list[tuple] | None, list[tuple[bytes, int, int]], bool]:
    """The decoder chain as per-token steps, the (content, start, stop) strips that act on
    the whole text (a Strip after the tokens were fused), and whether the first token
    decodes differently. Steps are None when a decoder is not one we can run per token."""
    if decoder is None:
        return [], [], False
    flat: list[dict] = []

    def walk(d: dict) -> None:
        if d.get("type") == "Sequence":
            for sub in d.get("decoders", []):
                walk(sub)
        else:
            flat.append(d)

    walk(json.loads(decoder.__getstate__()))
    steps, whole, fused, first_differs = [], [], False, False
    for d in flat:
        kind = d.get("type")
        if kind == "ByteLevel":
            steps.append(("byte_level",))
            fused = True  # it joins all tokens into one string
        elif kind == "ByteFallback":
            steps.append(("byte_fallback",))
        elif kind == "Fuse":
            fused = True
        elif kind == "Replace" and "String" in d.get("pattern", {}):
            steps.append(("replace", d["pattern"]["String"], d["content"]))
        elif kind == "Strip":
            entry = (d["content"].encode("utf-8"), int(d["start"]), int(d["stop"]))
            if fused:
                whole.append(entry)
            else:
                steps.append(("strip", *entry))
        elif kind == "Metaspace":
            prepend = d.get("prepend_scheme", "always") != "never"
            steps.append(("metaspace", d.get("replacement", "\u2581"), prepend))
            first_differs |= prepend
        else:
            return None, [], False
    return steps, whole, first_differs


def _run_steps(steps: list[tuple], text: str, first: bool) -> bytes:
    """One token's bytes through the decoder steps; `first`: it opens the text."""
    value: str | bytes = text
    for step in steps:
        kind = step[0]
        if kind == "byte_level":
            if isinstance(value, str):
                table = byte_decoder()
                # tokenizers keeps a token with a character outside the table as UTF-8
                value = (bytes(table[c] for c in value) if all(c in table for c in value)
                         else value.encode("utf-8"))
        elif kind == "byte_fallback":
            if isinstance(value, str) and len(value) == 6 and value.startswith("<0x") and value.endswith(">"):
                try:
                    value = bytes([int(value[3:5], 16)])
                except ValueError:
                    pass
        elif kind == "replace":
            value = (value.replace(step[1], step[2]) if isinstance(value, str)
                     else value.replace(step[1].encode("utf-8"), step[2].encode("utf-8")))
        elif kind == "strip":
            value = _strip(_as_bytes(value), *step[1:])
        elif kind == "metaspace":
            space = "" if first and step[2] else " "
            value = (value.replace(step[1], space) if isinstance(value, str)
                     else value.replace(step[1].encode("utf-8"), space.encode("utf-8")))
    return _as_bytes(value)


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _strip(text: bytes, content: bytes, start: int, stop: int) -> bytes:
    """tokenizers' Strip: up to `start` leading and `stop` trailing `content`s removed."""
    for _ in range(start):
        if not text.startswith(content):
            break
        text = text[len(content):]
    for _ in range(stop):
        if not text.endswith(content):
            break
        text = text[: -len(content)]
    return text


def _clean_up_tokenization(text: str) -> str:
    """transformers' clean_up_tokenization (spaces before punctuation and contractions)."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                 (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text
