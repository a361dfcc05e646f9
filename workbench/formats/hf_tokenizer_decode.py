"""A `tokenizer.json` decoder chain run one token at a time, for `HFTokenizer`'s decoding.

`tokenizers` decodes a whole id list at once, which cannot say what bytes one token
stands for; streaming needs exactly that (`token_to_piece`). So the chain (ByteLevel,
Metaspace, Replace, ByteFallback, Fuse, Strip) is read from the decoder's JSON into steps
(`decoder_steps`) that `run_steps` applies to one token's text; what acts on the whole
text (a Strip after Fuse) and whether the first token decodes differently (Metaspace's
prepended space) come back beside them. A decoder outside that list gives no steps, and
`HFTokenizer` falls back to `tokenizers.decode`.
"""

from __future__ import annotations

import json

from workbench.formats.token_bytes import byte_decoder


def decoder_steps(decoder) -> tuple[list[tuple] | None, list[tuple[bytes, int, int]], bool]:
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


def run_steps(steps: list[tuple], text: str, first: bool) -> bytes:
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
            value = apply_strip(_as_bytes(value), *step[1:])
        elif kind == "metaspace":
            space = "" if first and step[2] else " "
            value = (value.replace(step[1], space) if isinstance(value, str)
                     else value.replace(step[1].encode("utf-8"), space.encode("utf-8")))
    return _as_bytes(value)


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def apply_strip(text: bytes, content: bytes, start: int, stop: int) -> bytes:
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


def clean_up_tokenization(text: str) -> str:
    """transformers' clean_up_tokenization (spaces before punctuation and contractions)."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                 (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text
