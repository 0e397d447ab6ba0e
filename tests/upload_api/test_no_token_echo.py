"""UP-15: the public door never hands a link token back. Whatever path, method or query
string a token is put in, no response carries it in a header (Location above all) or a
body: the only page that ever sees the token is the one the citizen opened, and that
answers with a cookie and a redirect to ``/u/``."""

from __future__ import annotations

import httpx2
import pytest

from storage import links
from tests.fixtures.upload import LiveServer, UploadEnv

pytestmark = pytest.mark.anyio

PATHS = [
    "/u/{t}/", "/u/{t}//", "/u//{t}", "/u/{t}/x", "/u/{t}/?next=/u/{t}", "/u/{t}?a=1", "/u/{t}%2F",
    "/{t}", "/{t}/", "/u/files/{t}", "/u/files/{t}/", "/u/receipt/{t}", "/u/receipt/{t}/",
    "/u/status/{t}", "/u/status/{t}/", "/u/status/{t}.json", "/u/receipt/{t}.json", "/u/submission/{t}",
    "/u/submission/{t}/", "/u/static/{t}", "/u/static/{t}/", "/api/v1/reports/{t}/evidence",
    "/api/v1/reports/{t}/evidence/", "/api/v1/reports/{t}/links/", "/healthz/?t={t}", "/u/?t={t}",
]
METHODS = ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"]


def assert_no_token(response: httpx2.Response, token: str) -> None:
    where = f"{response.request.method} {response.request.url.raw_path.decode()} -> {response.status_code}"
    for name, value in response.headers.multi_items():
        assert token not in value, f"{where}: the token is echoed in {name}: {value}"
    assert token.encode() not in response.content, f"{where}: the token is echoed in the body"


async def test_no_response_of_the_public_door_echoes_a_link_token(upload_env: UploadEnv) -> None:
    token = upload_env.link.token
    with LiveServer(upload_env.app) as server:
        async with httpx2.AsyncClient(base_url=server.url, follow_redirects=False) as client:
            # The citizen's own link, with a trailing slash as a mail client may add it:
            # before, a 307 to /u/<token> (the token in Location); now nothing to follow.
            r = await client.get(f"/u/{token}/")
            assert_no_token(r, token)
            assert r.status_code == 404
            for path in PATHS:
                for method in METHODS:
                    r = await client.request(method, path.format(t=token),
                                             headers={"Tus-Resumable": "1.0.0"})
                    assert_no_token(r, token)
            # Also as a Bearer token on paths it does not belong to.
            for path in ("/u/files/", "/u/submission", "/u/", "/api/v1/reports", "/u/files/" + "0" * 32):
                for method in METHODS:
                    r = await client.request(method, path, headers={"Authorization": f"Bearer {token}",
                                                                    "Tus-Resumable": "1.0.0"})
                    assert_no_token(r, token)
            # The link itself: a cookie and a redirect to /u/, the token nowhere.
            r = await client.get(f"/u/{token}")
            assert r.status_code == 303 and r.headers["location"] == "/u/"
            assert_no_token(r, token)
            # Links that cannot be used (withdrawn, unknown) get their page, without the token.
            withdrawn = upload_env.new_link()
            with upload_env.db.write() as s:
                links.revoke_link(upload_env.db, s, withdrawn.link.id, actor="user:officer")
            for dead in (withdrawn.token, links.new_token()):
                for path in ("/u/{t}", "/u/{t}/", "/u/{t}?x={t}"):
                    r = await client.get(path.format(t=dead))
                    assert_no_token(r, dead)
