# Two commands do all set-up on a fresh machine:
#   make demo   install everything into .venv, ingest the bundled demo media offline, print the status
#   make test   install everything into .venv (if needed) and run the test suite
PYTHON ?= python3
VENV ?= .venv
DEMO_LIBRARY ?= demo-library

.PHONY: install demo test test-all bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install.sh scripts/build_llama_wheel.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/install.sh --browser
	touch $@

demo: install
	$(VENV)/bin/photo-engine ingest tests/data --library $(DEMO_LIBRARY)
	$(VENV)/bin/photo-engine status --library $(DEMO_LIBRARY)

test: install
	$(VENV)/bin/python -m pytest -q -m "not slow"

test-all: install
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_LIBRARY)
