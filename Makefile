# ferkit — every target creates or updates .venv itself (idempotent: quick when nothing changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Extras the tests need; later features add theirs here.
EXTRAS := dev,onnx,tune,serve,batch,ray,imagenet,ssd
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
# One setting for the real dataset; tests and benchmarks skip where it is absent.
export FERKIT_FER2013 ?= $(abspath ../shared/data/fer2013/fer2013.tar.gz)

.PHONY: install demo test bench lint clean postgres chromium screenshot

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch is installed first and pinned: the local CPU wheel (an unpinned torch pulls CUDA builds).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install -q --no-deps facenet-pytorch==2.6.0
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/python -m ferkit demo

test: $(STAMP) postgres chromium
	$(BIN)/python -m pytest -q

# Debian's PostgreSQL for the tune tests, which start their own throwaway server: installed
# once (as root), a no-op when present. Without it the tests skip, except under CI=true.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
		else echo "postgresql is not installed (and this is not root): its tests will skip"; fi; }

# Debian's Chromium and its WebDriver for the web page's browser test (selenium drives them):
# installed once (as root), a no-op when present. Without them that test skips, except under CI=true.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
		else echo "chromium is not installed (and this is not root): the browser test will skip"; fi; }

# README's picture of the web page (docs/serve.png), retaken by the browser test serving what
# `ferkit serve` serves by default; `make test` never writes it, and fails while it is stale.
screenshot: $(STAMP) chromium
	FERKIT_SCREENSHOT=$(abspath docs/serve.png) $(BIN)/python -m pytest -q tests/test_serve_browser.py

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	@for script in benchmarks/[!_]*.py; do \
		echo "== $$script"; $(BIN)/python $$script || exit 1; \
	done

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
