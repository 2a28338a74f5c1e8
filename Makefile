# `make install` builds .venv/ with the pinned dependencies; `make test` also installs the
# Debian packages the tests run for real (tools/system-deps), then runs the suite.
# `make demo` runs a fleet of simulated boards for ROUNDS rounds (tools/demo.py); HEAP empty:
# the model's default heap per device.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ROUNDS ?= 10
DEVICES ?= 20
MODEL ?= digits
HEAP ?=

.PHONY: install system-deps test demo bench vectors firmware clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

system-deps:
	@tools/system-deps

test: system-deps install firmware
	@# pytest exits 5 when it collects no tests: not a failure
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo 'no tests collected'; exit 0; fi; exit $$rc

demo: system-deps install firmware
	$(PY) -m tools.demo --rounds $(ROUNDS) --devices $(DEVICES) --model $(MODEL) $(if $(HEAP),--heap $(HEAP))

bench: system-deps install
	$(PY) bench/run.py

vectors: install
	$(PY) -m tools.vectors

firmware: install
	$(PY) -m tools.build

clean:
	rm -rf $(VENV) build bench-out demo-out .pytest_cache .hypothesis
