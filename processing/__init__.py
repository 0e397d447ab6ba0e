"""The worker: claim a ``process_item`` job, verify, sniff, scan, extract metadata, make
derivatives (DESIGN.md section 4, "Processing").

Modules, one role each:

* ``worker``        the job loop: claim, heartbeat, graceful stop, retries, dead jobs;
                    entry points ``main`` (``exhibit worker``) and ``start_worker_thread``
                    (``exhibit serve``).
* ``pipeline``      the steps of one job, resumable from the item's state.
* ``scanning``      the ``Scanner`` contract and our clamd INSTREAM client (the only
                    module that talks to clamd).
* ``clamd_manager`` the managed clamd: config, signature database choice, supervision,
                    status for /healthz.
* ``sniff``         type decision: magic bytes (``storage.sniff``) + allowed-parser decode.
* ``images``        the only importer of Pillow / pillow-heif.
* ``video``         the only runner of ffprobe / ffmpeg.
* ``blobs``         a synchronous bridge to the async blob store.

Imports ``storage`` only: never an app (``upload_api``, ``reviewer_ui``), never Starlette.
"""
