# ERNIE Studio: `make run` and `make test` do all the set-up on a fresh Linux machine.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-dev chromium run test bench clean

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=python3"; exit 1; }
	@echo "Installing ERNIE Studio into $(VENV): PaddlePaddle, paddleformers and Gradio, about 2 GB; usually 2 to 5 minutes."
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --progress-bar on -r requirements.txt
	@echo "Installed. Start the studio with: make run"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	@echo "Installing the test tools (pytest, Playwright, the openai client)."
	$(PIP) install --progress-bar on -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# Browser tests drive Debian's chromium (Playwright never downloads a browser here); the CJK font
# lets its screenshots of the Chinese interface show characters instead of empty boxes.
chromium:
	@[ -x /usr/bin/chromium ] && fc-list :lang=zh 2>/dev/null | grep -q . || { \
		echo "Installing Debian's chromium and a CJK font for the browser tests."; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium fonts-wqy-zenhei; }

# `run` serves the studio on http://127.0.0.1:7860 (pass options with ARGS="--port 8080 ...").
run: install
	$(PY) app.py $(ARGS)

test: install-dev chromium
	$(PY) -m pytest

# `bench` writes bench/results.json and results.md and the README's Performance table (ui_cpu_share drives chromium).
bench: install-dev chromium
	$(PY) bench/run_all.py --readme

clean:
	rm -rf $(VENV) workspace .pytest_cache
