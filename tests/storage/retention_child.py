"""A retention run in its own process, for kill -9 tests: ``python -m
tests.storage.retention_child CONFIG_JSON``. At the named step of ``storage.retention``'s
run it prints ``AT <step>`` on stdout and blocks forever; the test then kills it with
SIGKILL, a real crash at that point, and checks what was left."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from storage import retention
from storage.blobs import open_store
from storage.db import Database
from storage.settings import Settings


def main(config: dict[str, str]) -> int:
    settings = Settings(data_dir=Path(config["data_dir"]), database_url=config["database_url"],
                        storage_url=config["storage_url"], s3_endpoint_url=config.get("s3_endpoint_url") or None,
                        s3_seal_lock_days=int(config.get("s3_seal_lock_days", "30")))
    forever = threading.Event()

    def hook(step: str) -> None:
        if step == config["step"]:
            sys.stdout.write(f"AT {step}\n")
            sys.stdout.flush()
            forever.wait()

    db = Database(settings.database_url)
    try:
        retention.run(db, lambda: open_store(settings), retention.Policy.from_settings(settings), actor="child:run",
                      hook=hook)
    finally:
        db.dispose()
    sys.stdout.write("DONE\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
