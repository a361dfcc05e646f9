"""HFTokenizer: Hugging Face directories tokenize like our GGUF tokenizers and like `tokenizers`.

- Each real GGUF tokenizer, written out as a directory (`Tokenizer.to_hf_json()` plus a
  tokenizer_config.json), must give the GGUF tokenizer's ids on the llama.cpp golden
  texts, the same decoded bytes, the same piece for every id, the same stop ids and the
  same chat prompt.
- data/tiny-gpt2 (vocab.json + merges.txt cut from GPT-2's real files by
  scripts/make_tiny_gpt2_tokenizer.py) must tokenize like `tokenizers.ByteLevelBPETokenizer`
  and like OpenAI's BPE algorithm, written out below.
- Decoder chains other than these two (Llama's Strip, Metaspace) must decode like
  `tokenizers.decode`, while pieces stay exact bytes.
"""

import json
import random
import shutil
from pathlib import Path

import pytest
import tokenizers
from tokenizers import AddedToken, decoders, models, processors

from tests._models import gemma3_path, smollm2_path
from workbench.engine.generator import TextStream
from workbench.errors import FormatError, ParameterError
from workbench.formats.chat import GEMMA_TEMPLATE
from workbench.formats.gguf import GGUFFile
from workbench.formats.hf_tokenizer import HFTokenizer
from workbench.formats.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
TINY_GPT2 = ROOT / "data" / "tiny-gpt2"
GOLDEN = Path(__file__).parent / "golden"
FLAGS = [(a, p) for a in (True, False) for p in (True, False)]
EOT = "<|endoftext|>"
# Gemma's 262k vocabulary takes ~15 s to build, export and reload on two busy cores
MODELS = ["smollm2", pytest.param("gemma3", marks=pytest.mark.slow)]

EXTRA_TEXTS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "def f(x):\n    return {'a': [x ** 2 for x in range(10)]}\n",
    "Ünïcödé — 日本語 — 🎉👍🏽 👨‍👩‍👧 — ∑ x² ≤ ∞",
    "  two\n\n\n   runs\t\t of   whitespace   \n",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "<|endoftext|>text<eos> between <unused7> specials",
]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]


def _write(directory: Path, name: str, value) -> None:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    (directory / name).write_text(text, encoding="utf-8")


# -- 1. the real models: a directory written from the GGUF tokenizer ------------------

@pytest.fixture(scope="module")
def get_pair(tmp_path_factory):
    """name -> (GGUF Tokenizer, HFTokenizer of a directory written from it), built lazily
    so that a missing model only skips its own tests."""
    cache = {}

    def get(name):
        if name not in cache:
            path = smollm2_path() if name == "smollm2" else gemma3_path()
            tok = Tokenizer.from_gguf(GGUFFile.open(path))
            d = tmp_path_factory.mktemp(name)
            _write(d, "tokenizer.json", tok.to_hf_json())
            config = {"bos_token": tok.tokens[tok.bos_id],
                      "eos_token": {"content": tok.tokens[tok.eos_id], "special": True},
                      "chat_template": tok.chat_template or GEMMA_TEMPLATE}
            if name == "gemma3":  # ignored beside a tokenizer.json (transformers 5 drops them)
                config.update(add_bos_token=False, add_eos_token=True)
            _write(d, "tokenizer_config.json", config)
            _write(d, "generation_config.json", {"eos_token_id": sorted(tok.stop_ids)})
            cache[name] = tok, HFTokenizer.from_dir(d)
        return cache[name]

    return get


def _texts(name):
    cases = json.loads((GOLDEN / f"tokenizer_{name}.json").read_text(encoding="utf-8"))["cases"]
    return [c["text"] for c in cases] + EXTRA_TEXTS


@pytest.mark.parametrize("name", MODELS)
def test_ids_match_gguf_tokenizer(get_pair, name):
    tok, hf = get_pair(name)
    for text in _texts(name):
        for add_special, parse_special in FLAGS:
            assert hf.encode(text, add_special, parse_special) == \
                tok.encode(text, add_special, parse_special), (text, add_special, parse_special)


@pytest.mark.parametrize("name", MODELS)
def test_decode_matches_gguf_tokenizer_and_tokenizers(get_pair, name):
    tok, hf = get_pair(name)
    for text in _texts(name):
        ids = tok.encode(text)
        for skip in (False, True):
            assert hf.decode_bytes(ids, skip) == tok.decode_bytes(ids, skip), (text, skip)
            assert hf.decode(ids, skip) == hf.hf.decode(ids, skip_special_tokens=skip), (text, skip)


@pytest.mark.parametrize("name", MODELS)
def test_every_piece_matches_gguf_tokenizer(get_pair, name):
    tok, hf = get_pair(name)
    assert hf.vocab_size == tok.vocab_size
    for i in range(tok.vocab_size):
        assert hf.token_to_piece(i) == tok.token_to_piece(i), i
        assert hf.token_to_piece(i, special=False) == tok.token_to_piece(i, special=False), i


@pytest.mark.parametrize("name", MODELS)
def test_special_ids_and_chat_match_gguf_tokenizer(get_pair, name):
    tok, hf = get_pair(name)
    assert (hf.bos_id, hf.eos_id) == (tok.bos_id, tok.eos_id)
    assert (hf.add_bos, hf.add_eos) == (tok.add_bos, tok.add_eos)
    assert hf.stop_ids == tok.stop_ids and isinstance(hf.stop_ids, frozenset)
    assert all(hf.is_stop(i) for i in tok.stop_ids) and not hf.is_stop(5)
    template = None if tok.chat_template else "gemma"
    for gen in (True, False):
        want = tok.apply_chat_template(MESSAGES, gen, template=template)
        assert hf.apply_chat_template(MESSAGES, gen) == want
        assert hf.encode_chat(MESSAGES, gen) == tok.encode_chat(MESSAGES, gen, template=template)
    special = "<|im_start|>" if name == "smollm2" else "<start_of_turn>"
    assert hf.token_id(special) == tok.token_id(special) is not None
    assert hf.encode(special, add_special=False) == [hf.token_id(special)]
    assert hf.token_id(special) not in hf.encode(special, parse_special=False)
    assert repr(hf).startswith("HFTokenizer('BPE'") and hf.source in repr(hf)


# -- 2. the classic GPT-2 layout: vocab.json + merges.txt -----------------------------

def _openai_bpe(vocab_file: Path, merges_file: Path):
    """OpenAI's GPT-2 encoder (gpt-2/src/encoder.py), retold: regex split, bytes to
    printable characters, then merge the lowest-ranked adjacent pair until none is left."""
    regex = pytest.importorskip("regex")
    encoder = json.loads(vocab_file.read_text(encoding="utf-8"))
    lines = merges_file.read_text(encoding="utf-8").split("\n")[1:-1]
    ranks = {tuple(line.split()): r for r, line in enumerate(lines)}
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_encoder = dict(zip(bs, map(chr, cs)))
    pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def bpe(word):
        word = list(word)
        while len(word) > 1:
            pairs = [(ranks.get(p, float("inf")), k) for k, p in enumerate(zip(word, word[1:]))]
            rank, _ = min(pairs)
            if rank == float("inf"):
                break
            first, second = next(p for p in zip(word, word[1:]) if ranks.get(p) == rank)
            out, k = [], 0
            while k < len(word):
                if k < len(word) - 1 and word[k] == first and word[k + 1] == second:
                    out.append(first + second)
                    k += 2
                else:
                    out.append(word[k])
                    k += 1
            word = out
        return word

    def encode(text):
        ids = []
        for piece in regex.findall(pat, text):
            ids += [encoder[t] for t in bpe("".join(byte_encoder[b] for b in piece.encode("utf-8")))]
        return ids

    return encode


def _gpt2_texts():
    cases = json.loads((GOLDEN / "tokenizer_smollm2.json").read_text(encoding="utf-8"))["cases"]
    return [c["text"] for c in cases if EOT not in c["text"]] + EXTRA_TEXTS[:4]


@pytest.fixture(scope="module")
def gpt2():
    return HFTokenizer.from_dir(TINY_GPT2)


def test_tiny_gpt2_fixture_is_gpt2_prefix():
    vocab = json.loads((TINY_GPT2 / "vocab.json").read_text(encoding="utf-8"))
    merges = (TINY_GPT2 / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert len(vocab) == 1257 and vocab[EOT] == 1256 and vocab["Ġt"] == 256
    assert merges[0].startswith("#version") and len(merges) == 1002 and merges[-1] == ""


def _bytelevel_bpe(special: bool):
    ref = tokenizers.ByteLevelBPETokenizer(str(TINY_GPT2 / "vocab.json"), str(TINY_GPT2 / "merges.txt"))
    if special:
        ref.add_special_tokens([EOT])
    return lambda text: ref.encode(text).ids


def test_gpt2_matches_bytelevel_bpe(gpt2):
    reference, plain = _bytelevel_bpe(True), _bytelevel_bpe(False)
    for text in _gpt2_texts():
        ids = gpt2.encode(text)
        assert ids == gpt2.encode(text, add_special=False)  # GPT-2 adds no BOS / EOS
        assert ids == reference(text), text
        assert gpt2.decode(ids) == text
    text = f"one{EOT}two"
    assert gpt2.encode(text) == reference(text) == plain("one") + [1256] + plain("two")
    assert gpt2.encode(text, parse_special=False) == plain(text)  # as plain text
    assert gpt2.decode(gpt2.encode(text)) == text
    assert gpt2.decode(gpt2.encode(text), skip_special=True) == "onetwo"


def test_gpt2_matches_openai_bpe(gpt2):
    """Against OpenAI's algorithm, outside `tokenizers` (needs the `regex` package)."""
    openai = _openai_bpe(TINY_GPT2 / "vocab.json", TINY_GPT2 / "merges.txt")
    for text in _gpt2_texts():
        assert gpt2.encode(text) == openai(text), text
    assert gpt2.encode(f"one{EOT}two", parse_special=False) == openai(f"one{EOT}two")


def test_gpt2_special_ids(gpt2):
    assert gpt2.bos_id == gpt2.eos_id == gpt2.unk_id == 1256 and gpt2.token_id(EOT) == 1256
    assert gpt2.stop_ids == frozenset({1256}) and gpt2.is_stop(1256)
    assert not gpt2.add_bos and not gpt2.add_eos and gpt2.vocab_size == 1257
    assert gpt2.token_to_piece(1256) == EOT.encode() and gpt2.token_to_piece(1256, special=False) == b""


def test_gpt2_pieces_stream(gpt2):
    text = "naïve 日本 🎉👍🏽 done"
    ids = gpt2.encode(text)
    pieces = [gpt2.token_to_piece(i) for i in ids]
    assert b"".join(pieces) == text.encode() and any(len(p) == 1 and p[0] >= 0x80 for p in pieces)
    stream = TextStream(gpt2)
    assert "".join(stream.push(i) for i in ids) == text == stream.text
    with pytest.raises(ParameterError, match="1257"):
        gpt2.token_to_piece(1257)
    with pytest.raises(ParameterError, match="str"):
        gpt2.encode(b"bytes")


def test_gpt2_config_and_tokenizer_json(gpt2, tmp_path):
    """tokenizer.json of the same vocabulary gives the same ids; config flags and ids from
    generation_config.json / config.json are honoured."""
    shutil.copy(TINY_GPT2 / "vocab.json", tmp_path)
    shutil.copy(TINY_GPT2 / "merges.txt", tmp_path)
    _write(tmp_path, "tokenizer_config.json", {"add_bos_token": True, "add_prefix_space": True})
    _write(tmp_path, "generation_config.json", {"eos_token_id": [1256, 13]})
    tok = HFTokenizer.from_dir(tmp_path)
    assert tok.encode("Hello") == [1256] + gpt2.encode(" Hello") and tok.add_bos
    assert tok.encode("Hello", add_special=False) == gpt2.encode(" Hello")
    assert tok.stop_ids == frozenset({1256, 13})

    # vocabulary tokens made special are matched whole and decode through the decoder
    _write(tmp_path, "tokenizer_config.json", {"bos_token": "Ġt", "eos_token": "he"})
    tok = HFTokenizer.from_dir(tmp_path)
    assert (tok.bos_id, tok.eos_id) == (256, 258) and tok.stop_ids == frozenset({1256, 258, 13})
    ids = tok.encode("the theme")
    assert ids.count(258) == 2 and tok.decode(ids) == "the theme" and tok.decode(ids, True) == "tme" == tok.hf.decode(ids)
    assert tok.decode([256, 256]) == " t t" == tok.hf.decode([256, 256], skip_special_tokens=False)

    d = tmp_path / "json"
    d.mkdir()
    _write(d, "tokenizer.json", gpt2.hf.to_str())
    _write(d, "config.json", {"eos_token_id": 13, "bos_token_id": 0})
    tok = HFTokenizer.from_dir(d)
    assert (tok.bos_id, tok.eos_id, tok.stop_ids) == (0, 13, frozenset({13}))
    for text in _gpt2_texts()[:20]:
        assert tok.encode(text) == gpt2.encode(text)


# -- 3. other decoder chains decode like tokenizers ------------------------------------

def _spm_dir(tmp_path: Path, decoder, post_processor=None, config=None):
    """(HFTokenizer, ids of every token) of a small SentencePiece-style vocabulary:
    pieces with U+2581, byte-fallback tokens, special and non-special added tokens."""
    words = ["<unk>", "<s>", "</s>", "▁", "▁▁", "▁Hello", "Hello", "▁world", "a", "▁a", "é", "x▁y"]
    vocab = {w: i for i, w in enumerate(words)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    hf = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True, unk_token="<unk>"))
    hf.decoder = decoder
    hf.post_processor = post_processor
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    hf.add_tokens([AddedToken("<tool>", special=False, normalized=False)])
    d = tmp_path / f"spm{len(list(tmp_path.iterdir()))}"
    d.mkdir()
    _write(d, "tokenizer.json", hf.to_str())
    _write(d, "tokenizer_config.json", config or {"bos_token": "<s>", "eos_token": "</s>"})
    ids = [vocab[w] for w in words] + [vocab["<0xC3>"], vocab["<0xA9>"], vocab["<0xF0>"],
                                       vocab["<0x9F>"], vocab["<0x8E>"], vocab["<0x89>"], len(vocab)]
    return HFTokenizer.from_dir(d), ids


LLAMA_DECODER = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                   decoders.Strip(" ", 1, 0)])


@pytest.mark.parametrize("decoder", [
    LLAMA_DECODER,
    decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Strip(" ", 1, 0)]),
    decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(prepend_scheme="always")]),
    decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(prepend_scheme="never")]),
], ids=["llama", "strip-per-token", "metaspace", "metaspace-never"])
def test_decoder_chains_match_tokenizers(tmp_path, decoder):
    tok, ids = _spm_dir(tmp_path, decoder)
    rng = random.Random(0)
    # whole UTF-8 characters only: tokenizers and Python replace broken ones differently
    units = [[i] for i in ids[:12]] + [ids[12:14], ids[14:18], [ids[18]]]
    for _ in range(300):
        seq = [i for u in rng.choices(units, k=rng.randint(0, 6)) for i in u]
        for skip in (False, True):
            assert tok.decode(seq, skip) == tok.hf.decode(seq, skip_special_tokens=skip), (seq, skip)
    # a piece is what a token adds to a text it does not open: what streaming prints
    for i in ids:
        for first in ids[:12]:
            want = tok.decode_bytes([first]) + tok.token_to_piece(i)
            assert tok.decode_bytes([first, i]) == want, (first, i)
    assert tok.token_to_piece(tok.token_id("<0xC3>")) == b"\xc3"

def test_other_decoders_fall_back_to_tokenizers(tmp_path):
    """A decoder that needs its neighbours (WordPiece joins "##" pieces) is left to
    tokenizers: decode is exact, a piece is the token decoded alone."""
    tok, ids = _spm_dir(tmp_path, decoders.WordPiece())
    hf = tokenizers.Tokenizer.from_str(tok.hf.to_str())
    assert tok.decode(ids[3:12]) == hf.decode(ids[3:12], skip_special_tokens=False)
    assert tok.token_to_piece(ids[5]) == hf.decode([ids[5]]).encode()


def test_post_processor_comes_from_tokenizer_json(tmp_path):
    """BOS / EOS come from tokenizer.json's post-processor; the config's add_bos_token /
    add_eos_token are ignored beside a tokenizer.json, as transformers 5 does."""
    bos_post = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    tok, _ = _spm_dir(tmp_path, LLAMA_DECODER, bos_post)
    # no merges: "a" (id 8) is the one text that is a single token
    assert tok.encode("a") == [1, 8] and tok.add_bos and tok.encode("a", add_special=False) == [8]
    tok, _ = _spm_dir(tmp_path, LLAMA_DECODER, bos_post, {"bos_token": "<s>", "eos_token": "</s>",
                                                          "add_bos_token": False, "add_eos_token": True})
    assert tok.encode("a") == [1, 8] and tok.add_bos and not tok.add_eos
    tok, _ = _spm_dir(tmp_path, LLAMA_DECODER, None, {"bos_token": "<s>", "add_bos_token": True})
    assert tok.encode("a") == [8] and not tok.add_bos and tok.eos_id is None and tok.stop_ids == frozenset()


def test_added_tokens_and_templates_from_config(tmp_path):
    config = {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": {"content": "<unk>"},
        "added_tokens_decoder": {"269": {"content": "<extra>", "special": True}},
        "chat_template": [{"name": "default", "template": "{{ bos_token }}{{ messages[0]['content'] }}"},
                          {"name": "tool_use", "template": "T:{{ messages[0]['content'] }}{{ unk_token }}"}],
    }
    tok, _ = _spm_dir(tmp_path, LLAMA_DECODER, None, config)
    assert tok.token_id("<extra>") == 269 and tok.encode("a<extra>", add_special=False) == [8, 269]
    assert tok.decode([8, 269, 268], skip_special=True) == "a<tool>"  # <tool> is not special
    msgs = [{"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(msgs) == "<s>hi"
    assert tok.apply_chat_template(msgs, template="tool_use") == "T:hi<unk>"
    assert tok.apply_chat_template(msgs, template="chatml").startswith("<|im_start|>user")
    assert tok.encode_chat(msgs) == tok.encode("<s>hi", add_special=False)

    (Path(tok.source) / "chat_template.jinja").write_text("J{{ messages[0]['content'] }}", encoding="utf-8")
    assert HFTokenizer.from_dir(tok.source).apply_chat_template(msgs) == "Jhi"

    config["added_tokens_decoder"] = {"300": {"content": "<extra>", "special": True}}
    with pytest.raises(FormatError, match="declared as id 300"):
        _spm_dir(tmp_path, LLAMA_DECODER, None, config)


# -- errors ----------------------------------------------------------------------------

def test_missing_files(tmp_path):
    with pytest.raises(FormatError, match="tokenizer.json or vocab.json") as e:
        HFTokenizer.from_dir(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(FormatError, match="not a directory"):
        HFTokenizer.from_dir(tmp_path / "nope")
    shutil.copy(TINY_GPT2 / "vocab.json", tmp_path)
    with pytest.raises(FormatError, match="merges.txt: file is missing"):
        HFTokenizer.from_dir(tmp_path)
    shutil.copy(TINY_GPT2 / "merges.txt", tmp_path)
    _write(tmp_path, "tokenizer_config.json", '{"add_bos_token": "yes"}')
    with pytest.raises(FormatError, match="add_bos_token must be true or false"):
        HFTokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer_config.json").unlink()
    _write(tmp_path, "merges.txt", "#version: 0.2\nĠ t\nĠ a b\n")
    with pytest.raises(FormatError, match="merges.txt: line 3"):
        HFTokenizer.from_dir(tmp_path)


def test_malformed_files(tmp_path, gpt2):
    _write(tmp_path, "tokenizer.json", '{"model": {"type": "BPE", "vocab": ')
    with pytest.raises(FormatError, match="tokenizer.json"):
        HFTokenizer.from_dir(tmp_path)
    _write(tmp_path, "tokenizer.json", gpt2.hf.to_str())
    for name, content, match in [
        ("tokenizer_config.json", "{not json", "tokenizer_config.json: not a readable JSON"),
        ("tokenizer_config.json", "[1, 2]", "tokenizer_config.json: expected a JSON object"),
        ("tokenizer_config.json", '{"eos_token": "<nope>"}', "eos_token '<nope>' is not a token"),
        ("tokenizer_config.json", '{"bos_token": 3}', "bos_token must be a string"),
        ("tokenizer_config.json", '{"chat_template": 7}', "chat_template must be"),
        ("generation_config.json", '{"eos_token_id": "x"}', "generation_config.json: eos_token_id"),
        ("generation_config.json", '{"eos_token_id": [1, 99999]}', "below 1257"),
        ("config.json", "{", "config.json: not a readable JSON"),
    ]:
        _write(tmp_path, name, content)
        with pytest.raises(FormatError, match=match):
            HFTokenizer.from_dir(tmp_path)
        (tmp_path / name).unlink()
    assert HFTokenizer.from_dir(tmp_path).encode("ok") == gpt2.encode("ok")


def test_chat_template_absent(gpt2):
    with pytest.raises(FormatError, match="no chat template") as e:
        gpt2.apply_chat_template([{"role": "user", "content": "hi"}])
    assert gpt2.source in str(e.value) and "chatml" in str(e.value)
    assert gpt2.encode_chat([{"role": "user", "content": "hi"}], template="chatml") == \
        gpt2.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
