# Two commands do all the set-up on a fresh machine (Python 3.11, no GPU needed):
#   make demo   - create .venv, install burnscope, run the burn-triage app on sample_data/
#   make test   - same environment, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARCH   := $(shell uname -m)
# torch/torchvision pairs that install from this kind of machine's local wheel store (x86_64)
# or as CPU builds (aarch64); open_clip and timm need torchvision.
ifeq ($(ARCH),aarch64)
TORCH_PINS := torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: demo web-demo test bench venv system-deps clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.cfg
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

# Debian tools the integration tests use (DICOM validators, a PACS); waits for apt's locks
# when another apt process holds them. Skipped without root/apt.
system-deps:
	@bash tools/install-system-deps.sh

demo: venv
	$(BIN)/burnscope run burn-triage -i sample_data -o out/demo

# The review app on the demo reports (http://127.0.0.1:8080/); the first run asks for the
# password of a `demo` clinician, kept (argon2 hash) in out/web-users.json.
WEB_USERS ?= out/web-users.json
web-demo: demo
	@test -s $(WEB_USERS) || $(BIN)/burnscope web users add demo --role clinician --name "Clinician^Demo" --users-file $(WEB_USERS)
	$(BIN)/burnscope web -o out/demo --users-file $(WEB_USERS)

test: venv system-deps
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/burnscope bench burn-triage -i sample_data --repeat 5 --json out/bench-burn-triage.json

clean:
	rm -rf out build *.egg-info
