# The README's two commands are `make quickstart` and `make test`; each works alone on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
FMNIST_DIR := /usr/share/datasets/fashion-mnist
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: quickstart test test-unit test-e2e lint data bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The test suite also covers the Ax baseline of the benchmarks and the ONNX export, so it installs
# the bench and export extras too.
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[dev,bench,export]"
	touch $(TEST_STAMP)

# Offline Fashion-MNIST (Debian package); torchvision's download is used where internet exists.
data:
	@if [ -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) || \
	  echo "note: could not install dataset-fashion-mnist; torchvision will try to download Fashion-MNIST"; \
	elif command -v sudo >/dev/null; then \
	  (sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null) || true; \
	else echo "note: install the Debian package dataset-fashion-mnist for offline data"; fi

quickstart: $(STAMP) data
	$(BIN)/hytnas search configs/quickstart.yaml

test: $(TEST_STAMP) data lint
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=900 tests

# architecture contracts (pyproject.toml [tool.importlinter]), lint and format
lint: $(TEST_STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .

test-unit: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m "not e2e" tests

test-e2e: $(TEST_STAMP) data
	$(BIN)/python -m pytest -q -m e2e tests

bench: $(TEST_STAMP)
	@echo "benchmarks: see BENCHMARKS.md for the commands"

clean:
	rm -rf $(VENV) experiments .pytest_cache
