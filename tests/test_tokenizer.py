"""Tokenizers from GGUF metadata: token ids, pieces and detokenized bytes equal llama.cpp's.

The golden files come from scripts/make_tokenizer_golden.py (llama-cpp-python); the
Gemma vocabulary (262k tokens) is built once per module.
"""

import json
from pathlib import Path

import pytest
import tokenizers as hf_tokenizers
from gguf import GGUFWriter

from tests._models import gemma3_path, smollm2_path
from workbench.errors import FormatError, ParameterError, UnsupportedError
from workbench.formats.gguf import GGUFFile
from workbench.formats.tokenizer import Tokenizer

GOLDEN = Path(__file__).parent / "golden"
FLAGS = [(a, p) for a in (True, False) for p in (True, False)]


def _golden(name):
    return json.loads((GOLDEN / f"tokenizer_{name}.json").read_text(encoding="utf-8"))


GOLDENS = {"smollm2": _golden("smollm2"), "gemma3": _golden("gemma3")}


@pytest.fixture(scope="module")
def get_tokenizer():
    """name -> Tokenizer, built lazily so that a missing model only skips its own tests."""
    cache = {}

    def get(name):
        if name not in cache:
            path = smollm2_path() if name == "smollm2" else gemma3_path()
            cache[name] = Tokenizer.from_gguf(GGUFFile.open(path))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def smollm2(get_tokenizer):
    return get_tokenizer("smollm2")


@pytest.fixture(scope="module")
def gemma3(get_tokenizer):
    return get_tokenizer("gemma3")


def _cases():
    return [pytest.param(name, case, id=f"{name}-{i}")
            for name, golden in GOLDENS.items() for i, case in enumerate(golden["cases"])]


@pytest.mark.parametrize("name, case", _cases())
def test_ids_match_llama_cpp(get_tokenizer, name, case):
    tok = get_tokenizer(name)
    for add_special, parse_special in FLAGS:
        want = case["ids"][f"add_special={int(add_special)},parse_special={int(parse_special)}"]
        got = tok.encode(case["text"], add_special=add_special, parse_special=parse_special)
        assert got == want, (add_special, parse_special)


@pytest.mark.parametrize("name, case", _cases())
def test_detokenize_matches_llama_cpp(get_tokenizer, name, case):
    tok = get_tokenizer(name)
    ids = case["ids"]["add_special=1,parse_special=1"]
    assert tok.decode_bytes(ids).hex() == case["detokenize_special_hex"]
    assert tok.decode_bytes(ids, skip_special=True).hex() == case["detokenize_plain_hex"]


@pytest.mark.parametrize("name", GOLDENS)
def test_round_trip(get_tokenizer, name):
    tok = get_tokenizer(name)
    for case in GOLDENS[name]["cases"]:
        text = case["text"]
        if tok.model == "llama" and "\u2581" in text:
            continue  # SentencePiece spells spaces as U+2581: it comes back as a space
        assert tok.decode(tok.encode(text, add_special=False)) == text


@pytest.mark.parametrize("name", GOLDENS)
def test_pieces_match_llama_cpp(get_tokenizer, name):
    tok = get_tokenizer(name)
    for token_id, (special, plain) in GOLDENS[name]["pieces_hex"].items():
        assert tok.token_to_piece(int(token_id)).hex() == special, token_id
        assert tok.token_to_piece(int(token_id), special=False).hex() == plain, token_id


@pytest.mark.parametrize("name", GOLDENS)
def test_special_ids_match_llama_cpp(get_tokenizer, name):
    tok, golden = get_tokenizer(name), GOLDENS[name]
    assert tok.vocab_size == golden["n_vocab"]
    assert (tok.bos_id, tok.eos_id) == (golden["bos_id"], golden["eos_id"])
    assert (tok.add_bos, tok.add_eos) == (golden["add_bos"], golden["add_eos"])
    assert sorted(tok.stop_ids) == golden["eog_ids"]


def test_smollm2_specifics(smollm2):
    assert smollm2.model == "gpt2" and not smollm2.add_bos
    assert smollm2.token_id("<|im_end|>") == 2 and smollm2.is_stop(2)
    assert smollm2.encode("<|im_start|>user\n")[0] == 1
    assert smollm2.encode("<|im_start|>", parse_special=False) != [1]
    # digits stand alone (the "smollm" pre-tokenizer)
    assert len(smollm2.encode("1234567")) == 7


def test_gemma3_specifics(gemma3):
    assert gemma3.model == "llama" and gemma3.add_bos and not gemma3.add_space_prefix
    assert gemma3.encode("Hi")[0] == gemma3.bos_id == 2
    assert gemma3.encode("Hi", add_special=False)[0] != 2
    eot = gemma3.token_id("<end_of_turn>")
    assert eot in gemma3.stop_ids
    # "\n" is a user-defined token: split out even without parse_special
    assert gemma3.encode("a\nb", add_special=False, parse_special=False)[1] == gemma3.token_id("\n")


@pytest.mark.parametrize("name", GOLDENS)
def test_streaming_pieces_reassemble(get_tokenizer, name):
    tok = get_tokenizer(name)
    text = "naïve 日本 🎉👍🏽 done"
    ids = tok.encode(text, add_special=False)
    pieces = [tok.token_to_piece(i) for i in ids]
    assert b"".join(pieces) == text.encode()
    if name == "smollm2":  # byte-level BPE splits the emoji into partial UTF-8
        with pytest.raises(UnicodeDecodeError):
            for p in pieces:
                p.decode("utf-8")


def test_bad_arguments(smollm2):
    with pytest.raises(ParameterError, match="str"):
        smollm2.encode(b"bytes")
    for bad in (-1, smollm2.vocab_size):
        with pytest.raises(ParameterError, match=str(bad)):
            smollm2.token_to_piece(bad)
    assert smollm2.encode("") == []


# -- chat templates -------------------------------------------------------------------

MESSAGES = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"}]


def test_smollm2_chat_template(smollm2):
    text = smollm2.apply_chat_template(MESSAGES[:1])
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                    "Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert not smollm2.apply_chat_template(MESSAGES, add_generation_prompt=False).endswith("assistant\n")
    ids = smollm2.encode_chat(MESSAGES[:1])
    assert ids == smollm2.encode(text) and ids[0] == 1 and ids.count(2) == 2


def test_gemma3_without_a_template_falls_back_to_gemma(gemma3):
    # the file has no tokenizer.chat_template: its architecture's built-in one, as llama.cpp
    assert gemma3.chat_template is None
    assert gemma3.apply_chat_template(MESSAGES) == gemma3.apply_chat_template(MESSAGES, template="gemma")


def test_gemma3_builtin_template(gemma3):
    system = [{"role": "system", "content": "Be brief."}]
    text = gemma3.apply_chat_template(system + MESSAGES, template="gemma")
    assert text == ("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                    "<start_of_turn>model\nHello!<end_of_turn>\n"
                    "<start_of_turn>user\nHow are you?<end_of_turn>\n<start_of_turn>model\n")
    ids = gemma3.encode_chat(MESSAGES, template="gemma")
    assert ids[0] == gemma3.bos_id and ids[1] != gemma3.bos_id  # the template's BOS, once
    with pytest.raises(ParameterError, match="alternate"):
        gemma3.apply_chat_template(MESSAGES[:1] * 2, template="gemma")


def test_template_errors(smollm2):
    with pytest.raises(ParameterError, match="messages"):
        smollm2.apply_chat_template([])
    with pytest.raises(ParameterError, match=r"messages\[0\]"):
        smollm2.apply_chat_template([{"content": "no role"}])
    with pytest.raises(FormatError, match="does not compile"):
        smollm2.apply_chat_template(MESSAGES, template="{% for %}")
    text = smollm2.apply_chat_template(MESSAGES[:1], template="{{ messages | tojson }}{{ bos_token }}")
    assert text == '[{"role": "user", "content": "Hi"}]<|im_start|>'
    text = smollm2.apply_chat_template([{"role": "user", "content": "é"}],
                                       template="{{ messages[0] | tojson }}")
    assert text == '{"role": "user", "content": "é"}'


# -- files the tokenizer must refuse, and a tiny SentencePiece vocab -------------------

def _vocab_file(tmp_path, model="gpt2", pre="smollm", tokens=None, **extra):
    path = tmp_path / "vocab.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    if tokens is not None:
        w.add_token_list(tokens)
    for key, value in extra.items():
        getattr(w, f"add_{key}")(value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return GGUFFile.open(path)


def test_unsupported_tokenizers(tmp_path):
    with pytest.raises(UnsupportedError, match="tokenizer model 'bert'"):
        Tokenizer.from_gguf(_vocab_file(tmp_path, model="bert", tokens=["a"]))
    with pytest.raises(UnsupportedError, match="pre-tokenizer type 'qwen2'"):
        Tokenizer.from_gguf(_vocab_file(tmp_path, pre="qwen2", tokens=["a"]))
    with pytest.raises(FormatError, match="lacks metadata key tokenizer.ggml.tokens"):
        Tokenizer.from_gguf(_vocab_file(tmp_path))
    with pytest.raises(FormatError, match="bos_token_id"):
        Tokenizer.from_gguf(_vocab_file(tmp_path, tokens=["a", "b", "ab"], token_merges=["a b"],
                                        bos_token_id=5))
    with pytest.raises(FormatError, match="scores"):
        Tokenizer.from_gguf(_vocab_file(tmp_path, model="llama", pre=None, tokens=["a"]))


@pytest.fixture
def tiny_spm(tmp_path):
    """A SentencePiece vocab with add_space_prefix on (as TinyLlama's)."""
    tokens = ["<unk>", "<s>", "</s>", "\u2581", "a", "b", "ab", "\u2581a", "\u2581ab"]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -5.0, -4.0, -6.0] + [0.0] * 256
    types = [2, 3, 3, 1, 1, 1, 1, 1, 1] + [6] * 256
    return Tokenizer.from_gguf(_vocab_file(
        tmp_path, model="llama", pre=None, tokens=tokens, token_scores=scores,
        token_types=types, bos_token_id=1, eos_token_id=2, unk_token_id=0,
        add_space_prefix=True))


def test_tiny_spm(tiny_spm):
    tok = tiny_spm
    # " ab" -> "▁ab": "▁a" (-4) merges before "ab" (-5), then "▁a"+"b" -> "▁ab"
    assert tok.encode("ab") == [1, 8]
    assert tok.encode("ab", add_special=False) == [8]
    assert tok.encode("ba", add_special=False) == [3, 5, 4]  # "▁" "b" "a": no merge exists
    assert tok.encode("é", add_special=False) == [3, 9 + 0xC3, 9 + 0xA9]  # byte fallback
    # a special token restarts the space prefix
    assert tok.encode("a</s>a", add_special=False) == [7, 2, 7]
    # decode drops the prefix space of the first token only, as llama_detokenize
    assert tok.decode([8, 8]) == "ab ab"
    assert tok.decode([1, 8]) == "<s> ab" and tok.decode([1, 8], skip_special=True) == " ab"
    assert tok.decode([9 + 0xC3, 9 + 0xA9]) == "é"


# -- export as a Hugging Face tokenizer.json ------------------------------------------

@pytest.mark.parametrize("name", [
    "smollm2", pytest.param("gemma3", marks=pytest.mark.slow),  # 262k tokens: ~5 s
])
def test_hf_json_export_matches_llama_cpp(get_tokenizer, name):
    hf = hf_tokenizers.Tokenizer.from_str(get_tokenizer(name).to_hf_json())
    for case in GOLDENS[name]["cases"]:
        want = case["ids"]["add_special=1,parse_special=1"]
        assert hf.encode(case["text"], add_special_tokens=True).ids == want, case["text"]
