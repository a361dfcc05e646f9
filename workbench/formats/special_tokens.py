"""Special tokens split out of the text before tokenizing, as llama.cpp's
`tokenizer_st_partition` does it.

Apart from `tokenizer.py` because it is an algorithm of its own: every special token,
longest first, claims each of its occurrences that lies inside a still-unsplit piece of
the text, left to right, some swallowing the whitespace beside them. Finding which of
Gemma's 6k special tokens occur at all must not cost 6k substring searches per call, so
they sit in prefix tries (`special_index`) that rule out a whole family in one test.
"""

from __future__ import annotations

import bisect

import numpy as np

from workbench.formats.gguf_vocab import CONTROL, UNKNOWN, USER_DEFINED
from workbench.formats.token_bytes import text_bytes

C_SPACE = " \t\n\v\f\r"  # C isspace(), which llama.cpp strips around some tokens


def special_index(tokens: list[str], token_types: np.ndarray):
    """Prefix tries of the special tokens (all, and user-defined only), so that one
    substring test rules out a whole family such as Gemma's 6k `<unusedN>`."""
    entries = []
    for i, (text, ty) in enumerate(zip(tokens, token_types.tolist())):
        if ty in (CONTROL, USER_DEFINED, UNKNOWN) and text:
            entries.append((-len(text_bytes(text)), i, text, ty == USER_DEFINED))
    entries.sort()  # llama.cpp's order: longest (in bytes) first
    ranked = [(rank, text, i) for rank, (_, i, text, _) in enumerate(entries)]
    user = [r for r, e in zip(ranked, entries) if e[3]]
    return _prefix_trie(ranked, 3), _prefix_trie(user, 3)


def partition(text: str, trie, lstrip: frozenset[int], rstrip: frozenset[int]) -> list[str | int]:
    """Split `text` into raw-text pieces and special token ids, as llama.cpp's
    tokenizer_st_partition: for each special token, longest first, every occurrence
    that lies inside a still-unsplit piece becomes that token, left to right. `trie`: one
    of `special_index`'s; `lstrip` / `rstrip`: the ids that swallow whitespace on that side."""
    found: list = []
    _collect(trie, text, found)
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
            if tok_id in lstrip:  # the token swallows whitespace on its left
                a = pos
                while a > 0 and text[a - 1] in C_SPACE and blocked_until(a - 1, a) < 0:
                    a -= 1
                place(a, pos, None)
            if tok_id in rstrip:  # ... or on its right
                b = end
                while b < len(text) and text[b] in C_SPACE and blocked_until(b, b + 1) < 0:
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
