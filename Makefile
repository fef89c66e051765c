# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: test demo bench bench-apps bench-depth bench-suite clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,examples,test,beam]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

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

clean:
	rm -rf $(VENV) out build *.egg-info
