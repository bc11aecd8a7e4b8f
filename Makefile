# Two commands do all the set-up on a fresh machine: `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 3000
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := True
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv train serve test cards chart-check bench build image image-check

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## Train every default model missing from the store (a second run trains nothing).
train: venv
	$(PY) -m training --missing

## Serve all five models behind one gateway on $(HOST):$(PORT).
## Refuses at once (naming the pids) if $(HOST):$(PORT) is held, e.g. by a server still running.
serve: venv
	$(PY) -m fleet.lifetime $(HOST) $(PORT)
	$(PY) -m training --missing
	$(VENV)/bin/bentoml serve service:Fleet --host $(HOST) --port $(PORT)

## The whole test suite (what CI runs).
test: venv
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q --durations=20

## Model cards and the README metrics table, from the store's metadata.
cards: venv
	$(PY) -m fleet cards

## Offline Helm lint, render and Kubernetes schema validation (dev, prod, canary, broken values).
chart-check: venv
	$(PY) deploy/chart_check.py

## Bentos: the all-in-one and one per model, each packing exactly its plan's tags (deploy/image/SIZES.md).
build: train
	VENV=$(VENV) deploy/image/build.sh

## An OCI image of the all-in-one bento, without a Docker daemon (podman/buildah; local base image).
image: build
	VENV=$(VENV) deploy/image/image.sh

## Run the image on 127.0.0.1 and check the seeds' contracts against the container.
image-check: venv
	$(PY) deploy/image/check.py

## The serving benchmark (about 17 minutes): benchmarks/results.json, RESULTS.md and the plot.
bench: train
	$(PY) -m benchmarks
