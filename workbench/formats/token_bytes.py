"""The bytes a token stands for, as llama.cpp renders them, and its detokenizer's clean-up.

Shared by the GGUF tokenizer (`tokenizer.py`) and, for GPT-2's byte-to-character table,
the Hugging Face one (`hf_tokenizer_decode.py`): both must give the bytes llama.cpp and
transformers give, byte for byte, so the table is written once.

- `byte_decoder()`: GPT-2's printable stand-ins for bytes, reversed (char -> byte);
- `byte_level_decode(text)`: a byte-level BPE token's bytes, with llama_decode_text's
  marker for a character outside the table;
- `token_to_byte(text, spm)`: a BYTE token's byte (`<0xXX>` for SentencePiece);
- `llama_clean_spaces(text)`: llama_detokenize's clean_spaces passes, ported line for line.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
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


def byte_level_decode(text: str) -> bytes:
    table = byte_decoder()
    out = bytearray()
    for ch in text:
        b = table.get(ch)
        if b is None:  # llama_decode_text's marker for a character outside the table
            out += b"[UNK_BYTE_0x" + text_bytes(ch).hex().encode() + text_bytes(text) + b"]"
        else:
            out.append(b)
    return bytes(out)


def text_bytes(text: str) -> bytes:
    """UTF-8, with lone surrogates (from invalid metadata) kept as their bytes."""
    return text.encode("utf-8", "surrogateescape")


def token_to_byte(text: str, spm: bool) -> bytes:
    if spm:  # "<0xXX>"
        try:
            return bytes([int(text[3:-1], 16)])
        except ValueError:
            return b""
    return byte_level_decode(text)


def llama_clean_spaces(text: bytes) -> bytes:
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
