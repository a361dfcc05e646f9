"""transformers-style generation (issue 19): messages through the model's chat template,
`max_new_tokens` / `do_sample` / `stop`, `model.stream(...)`, `workbench chat`.

llama-cpp-python is not installed in this environment, so the expected prompts are
written out by hand from each template's documented format (ChatML; Gemma's turns with
the system prompt folded into the first user turn) and tokenized with the model's own
tokenizer: the ids `generate` ran must equal them."""

import io
import json

import pytest

import workbench
from workbench.cli import main
from workbench.errors import ParameterError

CONVERSATION = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name a colour."},
                {"role": "assistant", "content": "Blue."},
                {"role": "user", "content": "Another one?"}]


@pytest.fixture(scope="module")
def smollm2():
    return workbench.load("smollm2-135m", threads=1)


@pytest.fixture(scope="module")
def gemma3():
    return workbench.load("gemma3-270m", threads=1)


def _prompt_ran(model, expected: str, add_special: bool) -> list[int]:
    """The prompt ids a generation of CONVERSATION ran, checked against `expected`'s."""
    ids = model.generate(CONVERSATION, max_new_tokens=4).prompt_tokens
    assert ids == model.tokenizer.encode(expected, add_special=add_special)
    return ids


def test_smollm2_two_turns_with_a_system_prompt_use_chatml(smollm2):
    expected = ("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n"
                "<|im_start|>assistant\nBlue.<|im_end|>\n<|im_start|>user\nAnother one?<|im_end|>\n"
                "<|im_start|>assistant\n")
    ids = _prompt_ran(smollm2, expected, add_special=True)
    assert ids.count(smollm2.tokenizer.token_id("<|im_start|>")) == 5  # one special token per turn, not its text


def test_gemma3_two_turns_use_the_builtin_gemma_template(gemma3):
    # the GGUF has no chat template: the gemma format, as llama.cpp falls back to it
    expected = ("<bos><start_of_turn>user\nYou are terse.\n\nName a colour.<end_of_turn>\n"
                "<start_of_turn>model\nBlue.<end_of_turn>\n"
                "<start_of_turn>user\nAnother one?<end_of_turn>\n<start_of_turn>model\n")
    ids = _prompt_ran(gemma3, expected, add_special=False)
    tok = gemma3.tokenizer
    assert ids[0] == tok.bos_id and ids[1] != tok.bos_id and ids.count(tok.token_id("<start_of_turn>")) == 4
    assert gemma3.generate(CONVERSATION, max_new_tokens=4, template="gemma").prompt_tokens == ids


def test_template_names_a_builtin_one(smollm2):
    text = smollm2.tokenizer.apply_chat_template(CONVERSATION[:2], template="llama3")
    assert text == ("<|im_start|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                    "<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")  # SmolLM2's BOS is <|im_start|>
    chatml = smollm2.generate("Hi", max_new_tokens=1, template="chatml").prompt_tokens
    assert chatml == smollm2.tokenizer.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("name", ["smollm2", "gemma3"])
def test_stream_yields_the_text_of_generate(request, name):
    model = request.getfixturevalue(name)
    gen = model.generate(CONVERSATION, max_new_tokens=12)
    stream = model.stream(CONVERSATION, max_new_tokens=12)
    pieces = list(stream)
    assert "".join(pieces) == gen.text and all(pieces)
    assert stream.tokens == gen.tokens and stream.generation.tokens == gen.tokens
    assert stream.generation.text == gen.text and stream.text == gen.text
    assert len(stream.events) == len(gen.tokens) and all(e.seconds > 0 for e in stream.events)


def test_stream_holds_back_a_stop_string(smollm2):
    full = smollm2.generate("The capital of France is", max_new_tokens=16).text
    words = full.split()
    stop = " " + words[2]  # a stop string in the middle of the greedy text
    gen = smollm2.generate("The capital of France is", max_new_tokens=16, stop=[stop])
    stream = smollm2.stream("The capital of France is", max_new_tokens=16, stop=stop)
    assert "".join(stream) == gen.text == full[: full.index(stop)]
    assert gen.finish_reason == "stop"


def test_max_tokens_alias_and_do_sample(smollm2):
    greedy = smollm2.generate("Once upon a time", max_new_tokens=6)
    assert len(greedy.tokens) == 6
    assert smollm2.generate("Once upon a time", max_tokens=6).tokens == greedy.tokens
    assert smollm2.generate("Once upon a time", 6, do_sample=False, temperature=0.9).tokens == greedy.tokens
    a = smollm2.generate("Once upon a time", max_new_tokens=6, do_sample=True, seed=5, top_k=50)
    b = smollm2.generate("Once upon a time", max_new_tokens=6, do_sample=True, seed=5, top_k=50)
    assert a.tokens == b.tokens
    with pytest.raises(ParameterError, match="do_sample=True needs temperature > 0"):
        smollm2.generate("Hi", do_sample=True, temperature=0)
    with pytest.raises(ParameterError, match="max_new_tokens must be an integer >= 1"):
        smollm2.generate("Hi", max_new_tokens=0)
    with pytest.raises(ParameterError, match="disagree"):
        smollm2.generate("Hi", max_new_tokens=4, max_tokens=5)
    with pytest.raises(ParameterError, match="messages"):
        smollm2.stream([{"content": "no role"}])


def test_cli_chat_keeps_the_conversation(smollm2, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("Name a colour.\nAnother one?\n\n"))
    assert main(["chat", "smollm2-135m", "--system", "You are terse.", "-n", "6", "--threads", "1", "--json"]) == 0
    turns = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [t["turn"] for t in turns] == [1, 2]
    history = [CONVERSATION[0], CONVERSATION[1], {"role": "assistant", "content": turns[0]["text"]},
               CONVERSATION[3]]
    assert turns[1]["prompt_tokens"] == smollm2.tokenizer.encode_chat(history)


def test_cli_generate_with_a_system_prompt(smollm2, capsys):
    assert main(["generate", "smollm2-135m", "-p", "Name a colour.", "--system", "You are terse.", "-n", "3",
                 "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompt_tokens"] == smollm2.tokenizer.encode_chat(CONVERSATION[:2])


def test_cli_rejects_an_unknown_template_before_loading(capsys):
    assert main(["generate", "smollm2-135m", "-p", "Hi", "--template", "nope"]) == 2
    assert "--template must be one of chatml, gemma, llama3" in capsys.readouterr().err
