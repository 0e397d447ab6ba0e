"""Guessing upload links: counted per client in the database, never blocking a valid link
(issue 11 item 4; SECURITY_CHECKLIST AC-15)."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from storage.db import Database
from tests.fixtures.upload import UploadEnv, make_env
from tests.fixtures.upload_server import UploadServer, make_upload_link
from upload_api import auth
from upload_api.app import create_app

pytestmark = pytest.mark.anyio

BAD = "/u/" + "g" * 40


def client_at(app: object, ip: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app, client=(ip, 40000)),  # type: ignore[arg-type]
                              base_url="http://testserver")


async def test_bad_lookups_from_one_carrier_address_never_block_a_valid_link(upload_env: UploadEnv) -> None:
    nat = "203.0.113.5"  # thousands of citizens behind one carrier-grade NAT
    async with client_at(upload_env.app, nat) as c:
        statuses = [(await c.get(f"{BAD}{i:03d}")).status_code for i in range(auth.GUESS_LIMIT + 2)]
        assert statuses == [404] * auth.GUESS_LIMIT + [429] * 2
        # A citizen at the same address with a real link gets in, again and again.
        for _ in range(3):
            assert (await c.get(f"/u/{upload_env.link.token}")).status_code == 303
    async with client_at(upload_env.app, "198.51.100.7") as other:
        assert (await other.get(f"{BAD}999")).status_code == 404


async def test_two_app_instances_share_one_allowance(db: Database, tmp_path: Path) -> None:
    env = make_env(db, tmp_path)
    second = create_app(env.settings, db, env.store, secret=env.secret)
    async with client_at(env.app, "203.0.113.5") as one, client_at(second, "203.0.113.5") as two:
        for i in range(auth.GUESS_LIMIT):
            assert (await (one if i % 2 else two).get(f"{BAD}{i:03d}")).status_code == 404
        assert (await one.get(f"{BAD}x01")).status_code == 429
        assert (await two.get(f"{BAD}x02")).status_code == 429


def test_two_server_processes_behind_a_trusted_proxy(tmp_path: Path) -> None:
    """Real uvicorn processes, one database, the proxy on 127.0.0.1 naming the citizen in
    X-Forwarded-For: the citizens are told apart, and the two processes count together."""
    data = tmp_path / "data"
    data.mkdir()
    env = {"EXHIBIT_TRUSTED_PROXIES": "127.0.0.1/32"}
    servers = [UploadServer(data_dir=data, env=env), UploadServer(data_dir=data, env=env)]
    try:
        for server in servers:
            server.start()
        url, _ref = make_upload_link(data, base_url=servers[0].base_url)
        token = url.rsplit("/u/", 1)[1]
        with httpx2.Client(timeout=10.0) as http:
            def get(server: UploadServer, path: str, citizen: str) -> int:
                return http.get(f"{server.base_url}{path}", headers={"X-Forwarded-For": citizen}).status_code

            guesser = "203.0.113.5"
            statuses = [get(servers[i % 2], f"{BAD}{i:03d}", guesser) for i in range(auth.GUESS_LIMIT + 1)]
            assert statuses == [404] * auth.GUESS_LIMIT + [429]
            assert get(servers[0], f"{BAD}x01", guesser) == 429
            assert get(servers[1], f"{BAD}x02", guesser) == 429
            # Another citizen behind the same proxy has their own count...
            assert get(servers[1], f"{BAD}x03", "198.51.100.7") == 404
            # ...and a valid link opens for everyone, the guesser's address included.
            assert get(servers[0], f"/u/{token}", guesser) == 303
            assert get(servers[1], f"/u/{token}", "198.51.100.8") == 303
    finally:
        for server in servers:
            server.stop()


async def test_wrong_api_keys_from_an_address_never_block_a_valid_key_there(upload_env: UploadEnv) -> None:
    from storage import apikeys

    with upload_env.db.write() as s:
        _row, key = apikeys.add_api_key(upload_env.db, s, "forms", actor="test")
    office = "192.0.2.80"  # the force's web forms and someone guessing keys, one address
    async with client_at(upload_env.app, office) as c:
        statuses = [(await c.get("/api/v1/reports/R1/evidence", headers={"Authorization": f"Bearer exk_wrong{i}"}))
                    .status_code for i in range(auth.GUESS_LIMIT + 1)]
        assert statuses == [401] * auth.GUESS_LIMIT + [429]
        r = await c.post("/api/v1/reports", json={"reference": "WEB/1", "kind": "rtc", "title": "t"},
                         headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 201, r.text
