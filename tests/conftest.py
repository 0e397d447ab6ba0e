pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.database",
    "tests.fixtures.blobs",
]
