# fsnode: the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages: what `make run` needs (the demo video) and what the tests need.
RUN_DEBS := ffmpeg
TEST_DEBS := ffmpeg openssl chromium chromium-driver nginx-light wrk
BENCH_DEBS := nginx-light wrk

.PHONY: run test soak bench lint synth clean debs-run debs-test debs-bench web-assets

# The player libraries the control plane serves from its own origin (never a CDN at run
# time), hls.js and dash.js: npm installs the versions pinned in web/package-lock.json
# (integrity-checked) and the minified builds are copied next to the page's own files.
WEB_VENDOR := functions/chalicelib/web/vendor
HLS_JS := $(WEB_VENDOR)/hls.min.js
DASH_JS := $(WEB_VENDOR)/dash.mediaplayer.min.js

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip<26.3"  # chalice 1.34 requires pip < 26.3
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

$(HLS_JS) $(DASH_JS) &: web/package.json web/package-lock.json
	npm ci --prefix web --ignore-scripts --no-audit --no-fund --loglevel=error
	mkdir -p $(WEB_VENDOR)
	cp web/node_modules/hls.js/dist/hls.min.js $(HLS_JS)
	cp web/node_modules/dashjs/dist/modern/umd/dash.mediaplayer.min.js $(DASH_JS)

web-assets: $(HLS_JS) $(DASH_JS)

# Installs only what is missing; apt needs root (or sudo).
define install_debs
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

debs-run:
	$(call install_debs,$(RUN_DEBS))

debs-test:
	$(call install_debs,$(TEST_DEBS))

debs-bench:
	$(call install_debs,$(BENCH_DEBS))

# make bench [QUICK=1]: each benchmark against its reference; table + bench/results/latest.json
bench: $(STAMP) web-assets debs-bench
	$(BIN)/python -m bench $(if $(QUICK),--quick)

run: $(STAMP) web-assets debs-run
	$(BIN)/fsnode local up --demo

test: $(STAMP) web-assets debs-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy functions/app.py  # apart: its module name is the CDK app.py's
	$(BIN)/pytest

# make soak [SOAK_SECONDS=60]: mixed range traffic with an edge killed every minute (not in test)
soak: $(STAMP) web-assets debs-test
	FSNODE_SOAK_SECONDS=$(or $(SOAK_SECONDS),600) $(BIN)/pytest tests/soak -m soak -s -q

# ruff check, ruff format (enforced; the tables sit between fmt: off/on or carry
# fmt: skip, so they keep one row per line) and mypy.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy functions/app.py  # apart: its module name is the CDK app.py's

synth: $(STAMP) web-assets
	$(BIN)/python app.py

clean:
	rm -rf $(VENV) cdk.out .cdk-cache .pytest_cache web/node_modules $(WEB_VENDOR)
