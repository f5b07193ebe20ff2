# gitfs-p2p: `make demo` runs the main job, `make test` runs every test.
# Both install what they need first (scripts/setup.sh): apt packages, .venv, the package.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean
setup:
	@scripts/setup.sh

demo: setup
	@$(PY) scripts/demo.py $(if $(REPO),--repo $(REPO))

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) scripts/bench.py $(BENCH_ARGS)

clean:
	rm -rf bench-out demo-out .pytest_cache
