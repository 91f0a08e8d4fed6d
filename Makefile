# The two commands of the README:
#   make demo   - build everything (Rust, a local .venv with the Python package) and run the demo
#   make test   - the same set-up, then every test: cargo test (Rust, CLI, cross-language) + pytest
# Everything Python goes into ./.venv; nothing is installed system-wide.

PYTHON ?= python3
VENV   := .venv
PY     := $(abspath $(VENV))/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test venv python-package bench lint clean

$(VENV)/.deps: python/pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.16,<2" "pyarrow>=14" "numpy>=1.24" "pytest>=8" "hypothesis>=6"
	touch $@

venv: $(VENV)/.deps

# Builds the PyO3 binding of the same Rust code (release) and installs it into the venv.
python-package: venv
	$(PY) -m pip install -q --no-build-isolation ./python

demo: python-package
	cargo run --release --quiet -- demo --python $(PY)

test: python-package
	SHMARROW_PYTHON=$(PY) SHMARROW_REQUIRE_PYTHON=1 cargo test
	$(PY) -m pytest -q python/tests

bench: python-package
	SHMARROW_PYTHON=$(PY) cargo bench --bench core
	$(PY) bench/attach.py
	cargo build --release --bin shmarrow
	cargo bench --bench compute
	$(PY) bench/compute.py

lint:
	cargo fmt --check
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(VENV) target
