# `make run`: set up (once) and train the main algorithm on a small default.
# `make test`: set up (once) and run the test suite. See README.md.
VENV ?= .venv
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl

$(STAMP): scripts/setup.sh pyproject.toml plugins/moto/pyproject.toml plugins/baselines/pyproject.toml
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

.PHONY: setup run test
setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/framework run +algo=moto +experiment=small $(ARGS)

# One pytest worker per core, at most 4 (each loads torch and makes its own small datasets).
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n auto --maxprocesses=4 $(ARGS)
