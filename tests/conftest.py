from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.database",
    "tests.fixtures.s3",
    "tests.fixtures.blobs",
    "tests.fixtures.clamd",
    "tests.fixtures.media",
    "tests.fixtures.upload_server",
    "tests.fixtures.upload",
    "tests.fixtures.reviewer",
    "tests.fixtures.evidence",
    "tests.fixtures.casework",
    "tests.fixtures.nodes",
]


def pytest_configure(config: object) -> None:
    # Tests assert what Argon2id decides, not how long it takes: a tiny cost keeps the
    # hundreds of sign-ins in the suite fast. Subprocesses (the CLI, servers) keep the
    # production cost.
    from storage.passwords import use_cheap_parameters_for_tests

    use_cheap_parameters_for_tests()


# Which databases a test that takes ``db``/``db_url`` runs on (issue 17 item 8).
# The rule: tests of the database layer run on BOTH SQLite and PostgreSQL: everything in
# tests/storage (schema, ledger, queue, locks, migrations), tests/processing (job claims,
# crash recovery), tests/exhibit (the CLI and the worker's ledger), and, in the app
# directories, every module below that checks database behaviour (races, row and advisory
# locks, counters kept in the database, unique constraints, integer ranges), or any test
# marked ``both_databases``. Other app-level tests (pages, forms, permissions, HTTP,
# browser) exercise the app, not the database, and run on SQLite only; one that names its
# database itself (``parametrize("db_url", ...)``) keeps its choice.
ONE_DATABASE_DIRS = {"reviewer_ui", "upload_api", "browser"}
BOTH_DATABASES = {
    "upload_api/test_hostile.py",  # concurrent completions, second writer, advisory lock
    "upload_api/test_upload_locks.py",
    "upload_api/test_link_guard.py",  # guess counters in the database
    "upload_api/test_link_rechecks.py",  # re-check under a row lock
    "upload_api/test_link_rechecks_http.py",
    "upload_api/test_tus_clients.py",  # another node finishes an upload
    "reviewer_ui/test_throttle.py",  # sign-in throttle counters in the database
    "reviewer_ui/test_report_reference.py",  # taken references: unique constraints
    "reviewer_ui/test_form_numbers.py",  # numbers against column ranges
}
_TESTS = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_url" not in metafunc.fixturenames or metafunc.definition.get_closest_marker("both_databases"):
        return
    if any(m.args and "db_url" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")):
        return
    where = Path(metafunc.definition.path).resolve().relative_to(_TESTS)
    if where.parts[0] in ONE_DATABASE_DIRS and where.as_posix() not in BOTH_DATABASES:
        # As a mark, exactly as if the test had written it (pytest then skips the fixture's
        # own params); tryfirst so that the mark is there before pytest reads the marks.
        metafunc.definition.add_marker(pytest.mark.parametrize("db_url", ["sqlite"], indirect=True))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` (the Makefile's) group again under pytest 9.2.
    pytest-xdist 3.8 marks a test of an ``xdist_group`` by appending ``@group`` to
    ``item._nodeid``, which pytest 9.2 no longer reads (a node's id is ``item._id``), so
    every group was silently split across the workers: the multi-node module started its
    deployment once per worker, and each browser journey server twice. Copy the mark into
    the id pytest uses; a no-op where xdist did not run or already worked."""
    if not hasattr(config, "workerinput"):
        return
    from _pytest.nodeid import coerce_node_id

    for item in items:
        wanted = getattr(item, "_nodeid", None)
        if isinstance(wanted, str) and wanted != item.nodeid and hasattr(item, "_id"):
            item._id = coerce_node_id(wanted)
