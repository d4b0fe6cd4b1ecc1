PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test worker beat clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Zero-setup demo: SQLite and the filesystem broker under var/ unless DATABASE_URL /
# CELERY_BROKER_URL name real services. DEBUG defaults on so runserver serves static files.
run: install
	DEBUG=$${DEBUG:-1} $(PY) manage.py run_demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var/
