# The two commands of the README:
#   make demo   - build everything (Rust, a local .venv with the Python package) and run the demo
#   make test   - the same set-up, then every test: cargo test (Rust, CLI, cross-language) + pytest
# Everything Python goes into ./.venv; nothing is installed system-wide.

PYTHON ?= python3
VENV   := .venv
PY     := $(abspath $(VENV))/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test venv python-package bench lint clean fuzz soak

# Besides the package's own needs: the data world the tests hand segments to (polars, pandas,
# DuckDB), joblib's loky pool, mypy (`make test` runs mypy --strict on the examples and shmarrow/dask.py), and Dask
# distributed + dask.dataframe for shmarrow.dask (python/tests/test_dask*.py).
$(VENV)/.deps: python/pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.16,<2" "pyarrow>=14" "numpy>=1.24" "pytest>=8" "hypothesis>=6" \
		polars pandas duckdb joblib mypy "dask[distributed,dataframe]"
	touch $@

venv: $(VENV)/.deps

# Builds the PyO3 binding of the same Rust code (release) and installs it into the venv.
python-package: venv
	$(PY) -m pip install -q --no-build-isolation ./python

demo: python-package
	cargo run --release --quiet -- demo --python $(PY)

test: python-package
	SHMARROW_PYTHON=$(PY) SHMARROW_REQUIRE_PYTHON=1 cargo test
	$(PY) -m mypy --config-file python/pyproject.toml examples/*.py python/tests/test_typing.py
	$(PY) -m mypy --config-file python/pyproject.toml --follow-imports=silent python/shmarrow/dask.py
	$(PY) -m pytest -q python/tests

bench: python-package
	SHMARROW_PYTHON=$(PY) cargo bench --bench core
	$(PY) bench/attach.py
	cargo build --release --bin shmarrow
	cargo bench --bench compute
	$(PY) bench/compute.py
	$(PY) bench/flight.py
	cargo bench --bench channel
	$(PY) bench/channel.py
	$(PY) bench/import.py
	$(PY) bench/dask.py

# Side by side with multiprocessing, pyarrow and (COMPARE_ARGS=--with-ray) Ray: writes
# bench/RESULTS.md and bench/results.png. COMPARE_ARGS=--quick for the 3-minute version.
.PHONY: compare
compare:
	bench/compare $(COMPARE_ARGS)

lint:
	cargo fmt --check
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(VENV) target

# Fuzzing (cargo-fuzz, libFuzzer): fuzz/seeds.py writes valid seeds of every type into
# fuzz/corpus/<target>/, then each target runs for FUZZ_RUNS executions or FUZZ_SECONDS,
# whichever comes first, and its executions are printed (logs in fuzz/logs/). cargo-fuzz needs
# nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. LeakSanitizer is off
# (-detect_leaks=0): it reports glibc's thread-local destructor records of worker threads
# (__cxa_thread_atexit_impl) as leaks; descriptor and mapping leaks are what `make soak` checks.
FUZZ_RUNS ?= 10000000
FUZZ_SECONDS ?= 1800
FUZZ_TARGETS ?= attach channel import_file import_feather import_stream import_parquet import_csv flight_put
fuzz: venv
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	$(PY) fuzz/seeds.py fuzz/corpus
	mkdir -p fuzz/logs
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t; scratch=$$(mktemp -d /dev/shm/shmarrow-fuzz.XXXXXX); \
		SHMARROW_FUZZ_DIR=$$scratch RUSTC_BOOTSTRAP=1 cargo fuzz run $$t corpus/$$t -- \
			-runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=4096 -detect_leaks=0 \
			> logs/$$t.log 2>&1; status=$$?; rm -rf $$scratch; \
		echo "$$t: $$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' logs/$$t.log || echo 'no summary') (exit $$status)"; \
		[ $$status -eq 0 ] || exit 1; \
	done

# A bounded soak: SOAK_PROCESSES processes for SOAK_SECONDS seconds (see examples/soak.rs).
SOAK_SECONDS ?= 60
SOAK_PROCESSES ?= 8
soak:
	cargo run --release --example soak -- --seconds $(SOAK_SECONDS) --processes $(SOAK_PROCESSES)
