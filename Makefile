# `make run` and `make test` each set everything up on a fresh machine, then serve / test.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt scripts/install.sh | cksum | cut -d' ' -f1)

.PHONY: setup run test lint bench clean container-check

$(STAMP):
	rm -f $(VENV)/.installed-*
	VENV=$(VENV) bash scripts/install.sh --dev
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) app.py

test: setup
	bash scripts/ensure-chromium.sh
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) -m bench.load_model

# Build the Dockerfile with buildah from a local debootstrap base and run the image for real (root;
# minutes: see scripts/container-check.sh). CONTAINER_WHEELS=DIR uses a local wheel folder too.
container-check: setup
	bash scripts/container-check.sh

clean:
	rm -rf $(VENV) .pytest_cache
