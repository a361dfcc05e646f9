"""Write tests/golden/tokenizer_{smollm2,gemma3}.json from llama.cpp (llama-cpp-python).

For ~60 varied strings per model, a few Unicode edge cases and 40 seeded random strings,
it records llama.cpp's token ids for every combination of add_special (BOS/EOS per the
metadata) and parse_special, the bytes `llama_detokenize` returns for them (with and
without rendering special tokens), the raw pieces (`llama_token_to_piece`) of the ids
seen plus a sample of the vocabulary, and the end-of-generation set
(`llama_vocab_is_eog`). Only the vocabulary is loaded (`vocab_only=True`), so no
compute code runs.

Usage: python scripts/make_tokenizer_golden.py   (needs `pip install llama-cpp-python`)
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import llama_cpp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.formats.catalog import resolve  # noqa: E402

COMMON = [
    "",
    " ",
    "  ",
    "\n",
    "Hello world",
    "Hello, world!",
    " Hello world",
    "   three leading spaces",
    "trailing spaces   ",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you've heard they'll say it's what we'd do, isn't it? I'M YELLING.",
    "Numbers: 1234567 and 3.14159, -42, 1e-9, 0x1F, 2024-05-17.",
    "version 1.2.3 costs $1,299.99 (about 50%)",
    "multiple   spaces\tand\ttabs\t\tand\n\nnewlines\n\n\n",
    "line one\r\nline two\r\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "import numpy as np\n\nx = np.zeros((3, 4), dtype=np.float32)  # comment\n",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    '{"key": [1, 2, {"nested": null}], "flag": true}',
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "Café naïve résumé façade coöperate Ångström",
    "Straße, Ærøskøbing, Łódź, İstanbul, ǅemal",
    "日本語のテキストです。東京は大きい。",
    "中文文本测试，你好世界！",
    "한국어 텍스트입니다",
    "Привет, мир! Как дела?",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "Emoji: 🎉🚀👍🏽 👨‍👩‍👧‍👦 ❤️ 🇫🇷",
    "Math: ∑ x² ≤ ∞, α β γ, √2 ≈ 1.414, ½ ⅓ ¼",
    "Superscripts ¹²³ and fullwidth １２３ and Roman Ⅻ",
    "non\u00a0breaking\u2009thin\u3000ideographic spaces",
    "zero\u200bwidth\u200djoiner",
    "Combining: e\u0301 a\u0308 n\u0303",
    "tab\tseparated\tvalues\t1\t2\n",
    "    indented four\n        indented eight\n",
    "a" * 50,
    "ab" * 30 + " " + "z" * 40,
    "!!!???...,,,;;;:::",
    "\"quoted\" 'single' `back` «guillemets» „low“",
    "path/to/file.txt C:\\Windows\\System32 https://example.com/a?b=c&d=e#f",
    "email@example.com @user #hashtag",
    "CamelCaseIdentifier snake_case_identifier kebab-case-identifier",
    "don't won't can't shouldn't y'all ma'am o'clock",
    "' s 'S ' re 'RE 've 'm 'll 'd",
    "The year 1999 was followed by 2000.",
    "12 345 678 and 3,14 and ٣٤٥ and ๑๒๓",
    "Mixed: Hello世界123abc!",
    "\x00\x01 control \x1b[31mred\x1b[0m",
    "unicode private \ue000 and unassigned \U000e0001",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.\n" * 3,
]

# Characters where regex engines and Unicode tables tend to disagree.
EDGE = [
    "vt\x0bff\x0cnel\x85ls\u2028ps\u2029mvs\u180ezw\u200bbom\ufeffend",
    "unassigned \u0378\u0379 and max \U0010ffff and surrogate-free \ufffd",
    "a\u0300\u0301\u0302 stacked marks, Hangul jamo \u1100\u1161\u11a8",
    " \n \n\n  \t \r \n",
    "x" + " " * 40 + "y",
    "\n" * 40,
    "\t" * 33 + "z",
]


def _fuzz(n: int, seed: int = 0) -> list[str]:
    """Seeded random strings from a pool mixing scripts, digits, spaces and punctuation."""
    import random

    rng = random.Random(seed)
    pool = (list("abcXYZ019 \t\n'.,!?-_<>|/") + list("éßøçñ") + list("日本语中文")
            + list("мир") + list("مرحبا") + ["🎉", "👍🏽", "\u00a0", "\u3000", "²", "٣",
                                               "'s", "'ll", "<|", "|>", "<start", "_of", "▁"])
    return ["".join(rng.choice(pool) for _ in range(rng.randint(1, 40))) for _ in range(n)]


SPECIAL = {
    "smollm2": [
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n",
        "text<|endoftext|>more text",
        "<|im_start|><|im_end|><|im_start|>",
        " <|im_start|> spaced <|im_end|> ",
        "<reponame>repo<file_sep>file.py<filename>",
        "<|im_start|user",
    ],
    "gemma3": [
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
        "<bos><start_of_turn>user\nHi<end_of_turn>\n",
        "text<eos>more text",
        " <start_of_turn> spaced <end_of_turn> ",
        "<unused0><unused42>[multimodal]<start_of_image>",
        "<pad><unk><mask>",
        "<start_of_turn",
    ],
}

FLAGS = [(True, True), (True, False), (False, True), (False, False)]


def _key(add_special: bool, parse_special: bool) -> str:
    return f"add_special={int(add_special)},parse_special={int(parse_special)}"


def _detokenize(vocab, ids: list[int], unparse_special: bool) -> bytes:
    arr = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
    size = 64 + 64 * len(ids)
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, False, unparse_special)
    assert 0 <= n <= size, n
    return buf.raw[:n]


def _piece(vocab, token: int, special: bool) -> bytes:
    buf = ctypes.create_string_buffer(512)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, 512, 0, special)
    assert 0 <= n <= 512, n
    return buf.raw[:n]


def make(name: str, path: Path) -> dict:
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    cases, seen = [], set()
    for text in COMMON + EDGE + SPECIAL[name] + _fuzz(40):
        ids = {
            _key(a, p): llm.tokenize(text.encode("utf-8"), add_bos=a, special=p)
            for a, p in FLAGS
        }
        full = ids[_key(True, True)]
        seen.update(i for v in ids.values() for i in v)
        cases.append({
            "text": text,
            "ids": ids,
            "detokenize_special_hex": _detokenize(vocab, full, True).hex(),
            "detokenize_plain_hex": _detokenize(vocab, full, False).hex(),
        })
    sample = sorted(seen | set(range(0, n_vocab, max(1, n_vocab // 2000))) | set(range(300)))
    return {
        "generator": "scripts/make_tokenizer_golden.py",
        "llama_cpp_python_version": llama_cpp.__version__,
        "model_file": path.name,
        "model_file_size": path.stat().st_size,
        "n_vocab": n_vocab,
        "bos_id": llama_cpp.llama_vocab_bos(vocab),
        "eos_id": llama_cpp.llama_vocab_eos(vocab),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
        "eog_ids": [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)],
        "pieces_hex": {
            str(i): [_piece(vocab, i, True).hex(), _piece(vocab, i, False).hex()]
            for i in sample
        },
        "cases": cases,
    }


def _dumps(golden: dict) -> str:
    """JSON with one case / piece per line: readable diffs, modest size."""
    lines = ["{"]
    for k, v in golden.items():
        if k == "cases":
            items = [json.dumps(c, ensure_ascii=False) for c in v]
            lines.append(' "cases": [\n  ' + ",\n  ".join(items) + "\n ],")
        elif k == "pieces_hex":
            items = [f"{json.dumps(i)}: {json.dumps(p)}" for i, p in v.items()]
            lines.append(' "pieces_hex": {\n  ' + ",\n  ".join(items) + "\n },")
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    lines[-1] = lines[-1].rstrip(",")
    return "\n".join(lines) + "\n}\n"


def main() -> None:
    models = {"smollm2": resolve("smollm2-135m"), "gemma3": resolve("gemma3-270m")}
    out_dir = ROOT / "tests" / "golden"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, path in models.items():
        golden = make(name, path)
        out = out_dir / f"tokenizer_{name}.json"
        out.write_text(_dumps(golden), encoding="utf-8")
        print(f"{out}: {len(golden['cases'])} strings, llama-cpp-python "
              f"{golden['llama_cpp_python_version']}")


if __name__ == "__main__":
    main()
