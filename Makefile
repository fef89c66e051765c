# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
KERAS_HUB := 0.32.0
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: test lint docs demo fixtures bench bench-apps bench-depth bench-suite clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,examples,test,beam,hub,docs]"
	$(PY) -m pip install --quiet --no-deps "keras-hub==$(KERAS_HUB)"  # without tensorflow-text (setup.cfg, [hub])
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q --durations=15

lint: $(VENV)/.installed  # the rule set is in pyproject.toml
	$(VENV)/bin/ruff check .

docs: $(VENV)/.installed  # the site, offline, warnings as errors (mkdocs.yml: strict); figures: docs/figures.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

demo: $(VENV)/.installed
	$(VENV)/bin/keras-dtd demo --out out

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_core.py

bench-apps: $(VENV)/.installed
	$(PY) benchmarks/bench_applications.py

bench-depth: $(VENV)/.installed  # build time of a 25/50/100-block DenseNet-style chain (about 2 minutes)
	$(PY) benchmarks/bench_depth.py

bench-suite: $(VENV)/.installed  # writes benchmarks/RESULTS.md (about 15 minutes on 2 cores)
	$(PY) benchmarks/suite.py

# The parity fixtures (tests/fixtures/*.npz) from the other libraries, each in its own environment outside
# the repository, created from the pinned requirement files; make test only reads the .npz files.
FIXTURE_PYTHON ?= $(HOME)/.pyenv/versions/3.11.7/bin/python
FIXTURE_ENVS ?= $(abspath ..)/fixture-envs

# Arras et al.'s LSTM code is read from a clone of their repository (make_arras.py pins the commit).
ARRAS_REPO ?= $(FIXTURE_ENVS)/LRP_for_LSTM

fixtures: $(FIXTURE_ENVS)/innvestigate/.installed $(FIXTURE_ENVS)/zennit/.installed $(FIXTURE_ENVS)/arras/.installed \
		$(ARRAS_REPO) $(FIXTURE_ENVS)/lxt/.installed
	$(FIXTURE_ENVS)/innvestigate/bin/python tests/fixtures/make_innvestigate.py
	$(FIXTURE_ENVS)/zennit/bin/python tests/fixtures/make_zennit.py
	ARRAS_REPO=$(ARRAS_REPO) $(FIXTURE_ENVS)/arras/bin/python tests/fixtures/make_arras.py
	$(FIXTURE_ENVS)/lxt/bin/python tests/fixtures/make_lxt.py

$(FIXTURE_ENVS)/lxt/.installed: tests/fixtures/requirements-lxt.txt  # LXT 2.1 needs Python 3.12
	$(HOME)/.pyenv/versions/3.12.1/bin/python -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet -r $<
	touch $@

$(FIXTURE_ENVS)/arras/.installed: tests/fixtures/requirements-arras.txt
	$(FIXTURE_PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet -r $<
	touch $@

$(ARRAS_REPO):
	git clone --quiet https://github.com/ArrasL/LRP_for_LSTM $@

$(FIXTURE_ENVS)/innvestigate/.installed: tests/fixtures/requirements-innvestigate.txt
	$(FIXTURE_PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet -r $<
	touch $@

$(FIXTURE_ENVS)/zennit/.installed: tests/fixtures/requirements-zennit.txt
	$(FIXTURE_PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet -r $<
	$(@D)/bin/python -m pip install --quiet --ignore-requires-python --no-deps zennit==1.0.0
	touch $@

clean:
	rm -rf $(VENV) out build *.egg-info
