# `make demo` and `make test` do all set-up on a fresh machine: they create .venv, install torch
# (the CPU build where no GPU is present; a CUDA build that python3 already imports is reused),
# build csrc/ and install graphattn with its dev extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_CPU ?= torch==2.13.0
TRITON_CPU ?= triton==3.6.0

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*.hpp)
	@set -e; \
	if $(PYTHON) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then \
		echo "Using the CUDA build of torch that $(PYTHON) already imports."; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
		$(PYTHON) -m venv $(VENV); \
		if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
			$(PY) -m pip install -q torch; \
		else \
			echo "No GPU: installing the CPU build $(TORCH_CPU) and $(TRITON_CPU) for the interpreter."; \
			$(PY) -m pip install -q $(TORCH_CPU) $(TRITON_CPU); \
		fi; \
	fi
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m graphattn demo

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) build *.egg-info graphattn/*.so
