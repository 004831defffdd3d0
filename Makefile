# The README's two commands: `make train` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rlkit-installed
# Pinned CPU build of torch, installed first on machines without an NVIDIA GPU so pip does not
# pull a multi-GB CUDA build; setup.cfg keeps a wide range (torch>=2.1) for everyone else.
CPU_TORCH ?= torch==2.13.0
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup train test clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if $(BIN)/python -c "import torch" 2>/dev/null; then echo "torch already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then echo "NVIDIA GPU found: torch comes from setup.cfg's range"; \
	else $(BIN)/python -m pip install --disable-pip-version-check -q "$(CPU_TORCH)"; fi
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/rlkit train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) *.egg-info
