# The README's two commands: `make run` (the whole pipeline on the embedded Kafka) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test setup lint clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need Python 3.11 ($(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)
	$(BIN)/hookline kafka fetch

run: setup
	$(BIN)/hookline up

test: setup
	$(BIN)/pytest

# The manifests against a real kube-apiserver on etcd (README: Checking the manifests against a real API
# server). k8s-tools builds kube-apiserver and kubectl (once) and fetches the CRDs into .hookline/k8s.
.PHONY: k8s-tools k8s-check
k8s-tools: $(STAMP)
	$(BIN)/python deploy/k8s/check/run.py prepare

k8s-check: $(STAMP)
	$(BIN)/python deploy/k8s/check/run.py

# The dashboards against Grafana's published schema and our rules (README: Dashboards and alerts); builds
# the checker of deploy/grafana/check into .hookline/bin first (once, ~40 s).
.PHONY: grafana-check
grafana-check:
	$(PYTHON) deploy/grafana/check/run.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The container image with podman (no Docker daemon, no registry), smoke-tested: deploy/image/build.sh.
.PHONY: image
image:
	bash deploy/image/build.sh

clean:
	-$(BIN)/hookline kafka stop
	rm -rf .hookline
