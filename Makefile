# Developer shortcuts. `make check` = lint + strict type check + tests (what CI's gate is made of).
PY := .venv/bin/python

.PHONY: install run test lint typecheck check bench

install:
	bash scripts/bootstrap.sh install

run:
	bash scripts/bootstrap.sh run

test:
	bash scripts/bootstrap.sh test

lint:
	.venv/bin/ruff check src tests scripts
	.venv/bin/ruff format --check src tests scripts

typecheck:
	.venv/bin/mypy

check: test  # bootstrap's test mode runs lint + typecheck + the suite, exactly as CI does

bench:
	$(PY) scripts/benchmarks/state_batch_bench.py --keys 100,1000,10000 --repeat 5
