"""A worker process for crash and shutdown tests: ``python -m tests.processing.worker_child
CONFIG_JSON``. It runs ``processing.worker.main`` with a hook that, at the named point,
prints ``PAUSED <point> <item_id>`` on stdout and then:

* ``mode == "block"``: blocks forever (the test kills it with SIGKILL);
* ``mode == "until_stop"``: blocks until SIGTERM has set the stop event, then returns
  so the worker shuts down gracefully.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from processing.worker import main
from storage.settings import Settings


def run(config: dict[str, str]) -> int:
    settings = Settings(
        data_dir=Path(config["data_dir"]),
        database_url=config["database_url"],
        storage_url=config["storage_url"],
        clamd_address=config["clamd_address"],
        job_lease_seconds=int(config["lease_seconds"]),
    )
    point, mode = config["point"], config["mode"]
    stop = threading.Event()
    forever = threading.Event()

    def hook(at: str, item_id: str) -> None:
        if at != point:
            return
        sys.stdout.write(f"PAUSED {at} {item_id}\n")
        sys.stdout.flush()
        if mode == "block":
            forever.wait()
        else:
            stop.wait()

    return main(settings, 1, hook=hook, stop_event=stop)


if __name__ == "__main__":
    sys.exit(run(json.loads(sys.argv[1])))
