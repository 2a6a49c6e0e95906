# The two commands a fresh machine needs: `make demo` and `make test`. Each creates .venv if missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MAMMOSEG := $(VENV)/bin/mammoseg
DEMO_DIR ?= experiments/runs/demo-data
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv test demo bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

test: venv
	$(PY) -m pytest -q

demo: venv
	$(MAMMOSEG) synth $(DEMO_DIR)/cbis-ddsm --cases 60 --seed 0
	$(MAMMOSEG) prepare $(DEMO_DIR)/cbis-ddsm --out $(DEMO_DIR)/prepared
	$(MAMMOSEG) inspect $(DEMO_DIR)/prepared

clean:
	rm -rf $(VENV) experiments/runs experiments/reports
