# Quickstart: `make run` serves the demo on http://127.0.0.1:8080 (`make run PORT=9000 HOST=0.0.0.0`
# to change it); `make test` runs every check.
# Both bootstrap their own environment: uv (installed with pip into .tools/ when missing) and .venv.

PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
DEMO_DB ?= sqlite:///./var/cmc.db
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install run test lint typecheck pytest bench bench-analytics clean chromium fonts screenshots

install: $(VENV)/.installed

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

$(VENV)/.installed: pyproject.toml uv.lock packages/cmc-client/pyproject.toml | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

run: install
	@mkdir -p var
	@CMC_DATABASE_URL=$(DEMO_DB) $(BIN)/cmc apply examples/demo.yaml
	@echo
	@echo "The customer-facing screen of terminal term5 (open it in a browser, then make a sale):"
	@CMC_DATABASE_URL=$(DEMO_DB) CMC_PUBLIC_URL=$${CMC_PUBLIC_URL:-http://$(HOST):$(PORT)} \
	  $(BIN)/cmc screens url --pos-system pax --location loc5 --terminal term5
	@echo
	@echo "Demo POS system 'pax': client id 'pax-demo', secret 's3cr3t!' (location loc5, terminal term5)."
	@echo "Green Leaf's merchant API client: 'greenleaf-api', secret 'm3rch!' (examples/merchant-session.sh)."
	@echo "Green Leaf's merchant console: http://$(HOST):$(PORT)/console/pax/comp5 (publisher 'pat@greenleaf.example',"
	@echo "  password 'battery staple'; editor 'ann@greenleaf.example', password 'correct horse')."
	@echo "Once the server below is up, paste this into another terminal:"
	@echo
	@echo "CMC=http://$(HOST):$(PORT)"
	@cat examples/curl-session.sh
	@echo
	CMC_DATABASE_URL=$(DEMO_DB) CMC_PUBLIC_URL=$${CMC_PUBLIC_URL:-http://$(HOST):$(PORT)} \
	  $(BIN)/cmc serve --host $(HOST) --port $(PORT)

test: lint typecheck pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# Two pytest-xdist workers (the tests share nothing: each has its own temp dir, SQLite file or
# PostgreSQL database, and free ports); worksteal evens out the slow process tests. PYTEST_WORKERS=0
# runs them in this one process.
PYTEST_WORKERS ?= 2

pytest: install chromium fonts
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

# Browser tests drive Debian's chromium through Playwright (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "WARNING: could not install chromium; browser tests will be skipped"; }

# CJK and emoji fonts, so the browser tests see shoppers' names drawn with real glyphs.
fonts:
	@fc-list 2>/dev/null | grep -q "Noto Sans CJK" && fc-list | grep -q "Noto Color Emoji" || { \
	  echo "installing Debian's fonts-noto-cjk and fonts-noto-color-emoji for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq fonts-noto-cjk fonts-noto-color-emoji >/dev/null) \
	  || echo "WARNING: could not install the Noto fonts; the CJK and emoji browser test will be skipped"; }

# The README's pictures: docs/images/*.png, taken with the real chromium from a real `cmc serve`.
screenshots: install chromium fonts
	$(BIN)/python docs/screenshots.py

bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The analytics endpoints with 1,000,000 stored sales (BENCH_ARGS="--database postgresql" for PostgreSQL).
bench-analytics: install
	$(BIN)/python bench/analytics.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tools var .pytest_cache .mypy_cache .ruff_cache
