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
]


def pytest_configure(config: object) -> None:
    # Tests assert what Argon2id decides, not how long it takes: a tiny cost keeps the
    # hundreds of sign-ins in the suite fast. Subprocesses (the CLI, servers) keep the
    # production cost.
    from storage.passwords import use_cheap_parameters_for_tests

    use_cheap_parameters_for_tests()
