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
