"""Needs nothing beyond `make test`: PostgreSQL binaries, moto's server, clamd and ffmpeg.

Worker scaling (issue 16 item 5): the same batch of evidence (500 photos and 20 short
clips by default) drained by 1, 2 and 4 ``exhibit worker`` processes as shipped (default
slots and lanes), on PostgreSQL (a throwaway cluster, fsync on) and S3 (moto's server in
its own process, over HTTP), with the project's managed clamd. One run; each worker
count starts from a fresh database and bucket holding the same bytes.

Prints, per worker count: wall time until every item is ``ready``, items per second, the
ratio to one worker, and a check that no item was processed to completion twice (one
``item.ready`` custody event per item, one derivative row per kind).

    .venv/bin/python benchmarks/workers.py [--photos 500] [--clips 20] [--workers 1,2,4]

On this 2-core machine the photos and the clips' transcodes compete for the same cores,
so more than two workers can only overlap waiting (database, S3, clamd) with work.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from pipeline import make_clip, make_photos  # noqa: E402
from review import PgCluster  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlmodel import col  # noqa: E402

from processing.blobs import BlobBridge  # noqa: E402
from processing.clamd_manager import ClamdManager  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.items import create_item  # noqa: E402
from storage.lifecycle import TERMINAL, ItemState  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import CustodyEvent, Derivative, EvidenceItem  # noqa: E402
from storage.reports import create_report  # noqa: E402
from storage.settings import Settings  # noqa: E402

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Moto:
    """moto's S3 server in its own process: the benchmark's own Python stays out of its way."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        moto = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=self.url, aws_access_key_id="testing", aws_secret_access_key="testing",  # noqa: S106 - moto accepts any
            config=Config(region_name=REGION, s3={"addressing_style": "path"}))
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client.list_buckets()
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.1)  # readiness poll of a process we just started

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXHIBIT_", "AWS_"))}
    env.update({
        "EXHIBIT_DATA_DIR": str(settings.data_dir), "EXHIBIT_DATABASE_URL": settings.database_url,
        "EXHIBIT_STORAGE_URL": settings.storage_url, "EXHIBIT_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "EXHIBIT_S3_REGION": REGION, "EXHIBIT_CLAMD_ADDRESS": settings.clamd_address or "",
        "EXHIBIT_LOG_LEVEL": "WARNING", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    })
    return env


def run(workers: int, files: list[Path], pg: PgCluster, moto: Moto, clamd: ClamdManager, work: Path) -> tuple[float, int, str]:
    """(seconds until all ready, items, problems found or "")."""
    import psycopg

    name = f"w{workers}_{int(time.time())}"
    with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    bucket = f"exhibit-bench-{name.replace('_', '-')}"
    moto.client.create_bucket(Bucket=bucket)
    data_dir = work / name
    data_dir.mkdir()
    settings = Settings(data_dir=data_dir, database_url=pg.url.rsplit("/", 1)[0] + f"/{name}",
                        storage_url=f"s3://{bucket}/exhibit", s3_endpoint_url=moto.url, s3_region=REGION,
                        clamd_address=clamd.address)
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    blobs = BlobBridge.from_settings(settings)
    stored = [blobs.put_file(path, "originals") for path in files]
    with db.write() as s:
        report_id = create_report(db, s, "BENCH/WORKERS", "rtc", actor="bench").id
        ids = [create_item(db, s, report_id=report_id, blob_key=key, size=size, sha256=sha, actor="bench",
                           original_filename=path.name).id
               for (key, sha, size), path in zip(stored, files, strict=True)]
    env = environment(settings)
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "exhibit", "worker"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(data_dir / f"worker{i}.log", "w"))
             for i in range(workers)]
    try:
        pending = set(ids)
        problems = []
        while pending:
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a worker exited ({p.returncode}); see {data_dir}")
            with db.read() as s:
                rows = s.execute(select(col(EvidenceItem.id), col(EvidenceItem.state), col(EvidenceItem.state_reason))
                                 .where(col(EvidenceItem.id).in_(list(pending)))).all()
            for item_id, state, reason in rows:
                if ItemState(state) in TERMINAL:
                    pending.discard(item_id)
                    if state != ItemState.READY:
                        problems.append(f"{item_id} ended {state}: {reason}")
            if pending:
                time.sleep(0.5)  # coarse poll: it must not eat the CPU being measured
        elapsed = time.perf_counter() - start
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
    with db.read() as s:
        ready_events: dict[str | None, int] = {item_id: int(n) for item_id, n in s.execute(
            select(col(CustodyEvent.item_id), func.count()).where(col(CustodyEvent.action) == "item.ready")
            .group_by(col(CustodyEvent.item_id))).all()}
        derivs = s.execute(select(col(Derivative.item_id), col(Derivative.kind), func.count()).group_by(
            col(Derivative.item_id), col(Derivative.kind)).having(func.count() > 1)).all()
    twice = [i for i, n in ready_events.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} items reached ready more than once")
    if derivs:
        problems.append(f"{len(derivs)} derivative kinds made twice")
    db.dispose()
    return elapsed, len(ids), "; ".join(problems[:5])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--clip-seconds", type=int, default=5)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="exhibit-workers-"))
    os.chmod(work, 0o755)  # noqa: S103 - the postgres user must traverse it to its cluster
    pg = moto = clamd = None
    try:
        print(f"making {args.photos} photos (3 MP JPEG) and {args.clips} clips ({args.clip_seconds} s 1080p30 H.264)")
        files = make_photos(work / "photos", args.photos)
        for i in range(args.clips):
            clip = work / f"clip{i:02d}.mov"
            make_clip(clip, args.clip_seconds)
            files.append(clip)
        pg = PgCluster(work / "pg")
        moto = Moto()
        clamd = ClamdManager(Settings(data_dir=work / "clamd-home"))
        clamd.start(supervise=False)
        print(f"{'workers':>8}{'seconds':>10}{'items/s':>10}{'x one worker':>14}  check")
        base = None
        for n in (int(x) for x in args.workers.split(",")):
            elapsed, items, problems = run(n, files, pg, moto, clamd, work)
            rate = items / elapsed
            base = base or rate
            print(f"{n:>8}{elapsed:>10.1f}{rate:>10.2f}{rate / base:>14.2f}  {problems or 'each item ready once'}")
            sys.stdout.flush()
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        return 0
    finally:
        if clamd is not None:
            clamd.stop()
        if moto is not None:
            moto.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
