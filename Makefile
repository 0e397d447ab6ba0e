# The two commands of the README. Everything else is a helper of these.
.PHONY: run test lint typecheck pytest bootstrap-run bootstrap-test

export UV_PYTHON_DOWNLOADS := never
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
EXHIBIT_DATA_DIR ?= ./var
export EXHIBIT_DATA_DIR

run: bootstrap-run
	.venv/bin/exhibit db upgrade
	.venv/bin/exhibit serve --demo

test: bootstrap-test lint typecheck pytest

bootstrap-run:
	@scripts/bootstrap.sh run

bootstrap-test:
	@scripts/bootstrap.sh test

lint:
	.venv/bin/ruff check .

typecheck:
	.venv/bin/mypy

# -n auto: one pytest-xdist worker per core; each worker has its own PostgreSQL cluster,
# clamd, moto server and template database (ports from the OS, dirs from tmp_path_factory).
# --dist loadgroup: tests marked xdist_group("name") run on one xdist worker (the multi-node
# module shares one deployment); every other test is spread as with the default `load`.
# --durations=25: the slowest tests are named at the end of every run, where the suite's
# wall time is won or lost.
pytest:
	.venv/bin/pytest -p no:cacheprovider -n auto --dist loadgroup --durations=25
