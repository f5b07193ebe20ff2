# gitfs-p2p: `make demo` runs the main job, `make test` runs every test.
# Both install what they need first (scripts/setup.sh): apt packages, .venv, the package.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test bench bench-large clean
setup:
	@scripts/setup.sh

demo: setup
	@$(PY) scripts/demo.py $(if $(REPO),--repo $(REPO))

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) scripts/bench.py $(BENCH_ARGS)

# Issue 15: a generated 200,000-commit history (kept in bench-out/large/; about 4 min to
# generate the first time, then 20-30 min a run).  BENCH_LARGE_ARGS='/path/to/repo' measures
# a repository of yours instead (its pack cache is rebuilt); see BENCHMARKS.md.
bench-large: setup
	$(PY) scripts/bench_large.py $(BENCH_LARGE_ARGS)

clean:
	rm -rf bench-out demo-out .pytest_cache
