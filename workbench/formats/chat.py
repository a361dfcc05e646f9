"""Chat templates: render a list of messages into a prompt string with Jinja2.

Contract: `render_chat_template(template, messages, ...)` renders a Hugging Face style
chat template the way transformers does (sandboxed environment, `trim_blocks` and
`lstrip_blocks`, the `loopcontrols` extension, `raise_exception`, `strftime_now` and a
`tojson` that keeps non-ASCII text), with `bos_token`, `eos_token`, `messages` and
`add_generation_prompt` in scope. A template that fails to compile is a `FormatError`
(the model file is at fault); `raise_exception` inside a template, or messages that are
not a list of {"role": str, "content": ...} dicts, are a `ParameterError` (the caller is).

`BUILTIN_TEMPLATES` holds templates by llama.cpp's names (`chatml`, `gemma`, `llama3`),
asked for by name or used for files that carry none (the Gemma 3 270M GGUF has no
`tokenizer.chat_template`): `builtin_for(architecture)` picks the architecture's, as
llama.cpp falls back to a built-in format (ChatML where it knows none better).

It does not tokenize: `Tokenizer.apply_chat_template` / `encode_chat` do that.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workbench.errors import FormatError, ParameterError

# ChatML, as SmolLM2 and many others use it (without a default system prompt).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Gemma 3's instruction template (from its Hugging Face tokenizer_config.json, text
# parts only): the system prompt is folded into the first user turn, "assistant" is
# called "model", and the prompt opens with the BOS token.
GEMMA_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"""

# Llama 3's header format, as Meta documents it: each turn is a header, two newlines,
# the trimmed content and <|eot_id|>; the prompt opens with the BOS token.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

BUILTIN_TEMPLATES: dict[str, str] = {"chatml": CHATML_TEMPLATE, "gemma": GEMMA_TEMPLATE, "llama3": LLAMA3_TEMPLATE}


def builtin_for(architecture: str | None) -> str:
    """The built-in template name for a file of `architecture` that has no template."""
    return "gemma" if (architecture or "").startswith("gemma") else "chatml"


class _TemplateRaised(Exception):
    """What `raise_exception(...)` inside a template throws."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # transformers' tojson: unlike Jinja's built-in it neither escapes HTML nor ASCII-fies
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)


def check_messages(messages: Any) -> list[dict]:
    """Validate the OpenAI-style message list every template expects."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ParameterError(
            f"messages must be a non-empty list of {{'role', 'content'}} dicts, got {messages!r}"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise ParameterError(
                f"messages[{i}] must be a dict with a 'role' string and a 'content', got {m!r}"
            )
    return list(messages)


def render_chat_template(
    template: str,
    messages: list[dict],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    source: str = "chat template",
    **extra: Any,
) -> str:
    """Render `template` (Jinja source or a `BUILTIN_TEMPLATES` name) for `messages`.

    `source` names where the template came from, for error messages; `extra` variables
    (for example `tools`) are passed to the template as they are.
    """
    template = BUILTIN_TEMPLATES.get(template, template)
    messages = check_messages(messages)
    try:
        compiled = _compile(template)
    except jinja2.TemplateError as e:
        raise FormatError(f"{source} does not compile: {e}") from None
    try:
        return compiled.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **extra,
        )
    except _TemplateRaised as e:
        raise ParameterError(f"{source} rejected the messages: {e}") from None
    except jinja2.TemplateError as e:
        raise FormatError(f"{source} failed to render: {e}") from None
