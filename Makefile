PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install sandbox-tools run test worker beat clean

install: $(STAMP) sandbox-tools

# bubblewrap: the sandbox the engine child runs in. A worker refuses to start without it
# unless AUDIT_SANDBOX=none (workers/engine/sandbox.py). Installed here where we may (root
# with apt-get); elsewhere we say what to install.
sandbox-tools:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; }; \
	  else \
	    echo "bubblewrap (bwrap) is not installed: install it (apt-get install bubblewrap, dnf install bubblewrap)" \
	         "or set AUDIT_SANDBOX=none to run uploaded models without a sandbox" >&2; \
	  fi; }

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
