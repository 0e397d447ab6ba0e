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
# --dist worksteal: a worker that runs out of tests takes pending ones from the other, so a
# long test near the end does not leave a core idle (also in pyproject's addopts).
pytest:
	.venv/bin/pytest -p no:cacheprovider -n auto --dist worksteal
