# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both are safe to run twice: the venv and node tools are only rebuilt when their inputs change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_DIR := .gnt/node
NODE_STAMP := $(NODE_DIR)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.gnt/dagster_home

.PHONY: demo test lint dev view bench install node-tools clean

$(STAMP): pyproject.toml setup.py requirements/base.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel setuptools
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# Loopback servers the tests start: azurite speaks the Azure blob protocol (CONUS404's az:// store);
# maplibre-gl is the map library the viewer serves (make view), from here: nothing is fetched at run time.
$(NODE_STAMP): package.json
	mkdir -p $(NODE_DIR)
	cp package.json $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP)

node-tools: $(NODE_STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m gnt_assets.demo

# Lint and import contracts first (rules and contracts in pyproject.toml): a violation fails `make test`.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The viewer's browser test drives headless Chromium (Debian's; the test never downloads a browser);
# the raster-output tests open the COGs and zarr stores with gdalinfo (Debian's gdal-bin) and load them in
# QGIS itself (Debian's python3-qgis, headless, in the system Python).
test: lint $(NODE_STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	command -v gdalinfo >/dev/null || (apt-get update -qq && apt-get install -y -qq gdal-bin)
	/usr/bin/python3 -c "import qgis.core" 2>/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-qgis qgis-providers) || echo "QGIS could not be installed: its output test is skipped"
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=25

dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m gnt_assets.pools
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The map viewer over the STAC catalog of ./data (after `make demo`): http://127.0.0.1:8008/ (GNT_VIEWER_PORT).
view: $(STAMP) $(NODE_STAMP)
	GNT_NODE_DIR=$(NODE_DIR) $(BIN)/python -m gnt_assets.viewer

# Reference tools: exactextract/rasterstats from PyPI, gdal_translate from Debian (benchmarks/cog.py),
# TorchGeo into .gnt/bench by benchmarks/tile_loading.py itself (never into the venv).
bench: $(STAMP)
	$(BIN)/pip install --quiet -r requirements/bench.txt
	command -v gdal_translate >/dev/null || (apt-get update -qq && apt-get install -y -qq gdal-bin)
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .gnt data
