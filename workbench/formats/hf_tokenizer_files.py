"""Reading a Hugging Face directory's tokenizer files, as transformers reads them.

`HFTokenizer.from_dir` (`hf_tokenizer.py`) assembles the tokenizer from these pieces;
they are apart from it because each is one file's rules, with the errors that name that
file: `tokenizer.json` (`load_tokenizer_json`) or `vocab.json` + `merges.txt`
(`gpt2_tokenizer`), `tokenizer_config.json` and `special_tokens_map.json` (the named
special tokens, `added_tokens_decoder`, `chat_template`), and `generation_config.json` /
`config.json` (`bos_eos_stop`: BOS, EOS and the stop ids).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import AddedToken, decoders, models, pre_tokenizers, processors

from workbench.errors import FormatError

# Named special tokens transformers knows; bos/eos must be vocabulary tokens, the others
# are only registered as special when they are.
_NAMED = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")
# GPT2Tokenizer's defaults for the vocab.json + merges.txt layout
GPT2_DEFAULTS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                  "unk_token": "<|endoftext|>"}
TOKENIZER_FILES = ("tokenizer.json", "vocab.json + merges.txt")


def read_json(path: Path, required: bool = False) -> Any:
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


def token_text(value: Any, file: Path, key: str) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise FormatError(f"{file}: {key} must be a string or {{\"content\": string}}, got {value!r}")


def named_specials(config: dict, file: Path) -> dict[str, str | None]:
    """name -> text (None where the config sets it to null) of the named special tokens."""
    return {name: token_text(config[name], file, name) for name in _NAMED if name in config}


def load_tokenizer_json(file: Path) -> tokenizers.Tokenizer:
    try:
        return tokenizers.Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises a bare Exception for every parse error
        raise FormatError(f"{file}: not a valid tokenizer.json ({e})") from None


def gpt2_tokenizer(vocab_file: Path, merges_file: Path, add_prefix_space: bool) -> tokenizers.Tokenizer:
    """GPT-2's byte-level BPE, as transformers builds it from vocab.json + merges.txt: the
    ByteLevel pre-tokenizer splits with GPT-2's regex and maps bytes to characters."""
    vocab = read_json(vocab_file, required=True)
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


def add_config_tokens(hf: tokenizers.Tokenizer, decoder: Any, file: Path) -> None:
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


def register_specials(hf: tokenizers.Tokenizer, named: list[tuple[str, str | None]],
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


def bos_eos_stop(path: Path, specials: dict, named_ids: dict, n_vocab: int):
    """(BOS id, EOS id, stop ids). The tokenizer config's named tokens win; otherwise
    generation_config.json, then config.json give the ids. The stop ids are
    generation_config.json's eos_token_id (config.json's when it has none, as transformers'
    generate falls back to the model config) and the EOS."""
    gen_file, model_file = path / "generation_config.json", path / "config.json"
    gen, model_config = read_json(gen_file), read_json(model_file)
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


def chat_templates(value: Any, file: Path) -> tuple[str | None, dict[str, str]]:
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


def template_processor(hf: tokenizers.Tokenizer, bos_id: int | None, eos_id: int | None):
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
