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
	@echo "==> setting up $(VENV) (first run only; a few minutes on a fresh machine)"
	@echo "==> creating the virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@if $(BIN)/python -c "import torch" 2>/dev/null; then echo "==> torch already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then echo "==> NVIDIA GPU found: torch comes from setup.cfg's range"; \
	else echo "==> installing the CPU build of $(CPU_TORCH) (~200 MB download)"; \
	$(BIN)/python -m pip install --disable-pip-version-check -q "$(CPU_TORCH)"; fi
	@echo "==> installing rlkit (editable) and its dependencies: gymnasium, mujoco, ale-py, stable-baselines3,"
	@echo "    tensorboard, matplotlib, opencv, imageio, pytest (pip install -e '.[dev]'; ~1 minute)"
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)
	@echo "==> set-up done: $(VENV)"

train: $(STAMP)
	$(BIN)/rlkit train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) *.egg-info
