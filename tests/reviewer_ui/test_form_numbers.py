"""Bad numbers in staff forms (i11 item 5): ``expires=infd`` and ``max_bytes=1e400G``
were a 500 (``int(float("inf"))``); every staff form that takes a number answers a bad
one with a 400 that names the field, and makes nothing."""

from __future__ import annotations

import pytest
from sqlmodel import select

from storage.models import Share, UploadLink
from storage.settings import parse_bytes, parse_count, parse_duration
from tests.fixtures.casework import Casework

BAD = ["infd", "inf", "1e400G", "1e400", "nan", "NaN", "-1", "-7d", "0x10", "1_000", "٣", "9" * 400, "1.5.5", "7 days"]
GOOD_LINK = {"expires": "3d", "max_files": "7", "max_bytes": "500M"}


@pytest.mark.parametrize("field", ["expires", "max_files", "max_bytes"])
def test_link_form_refuses_bad_numbers_by_name(casework: Casework, field: str) -> None:
    officer = casework.user("officer")
    report = casework.report(officer)
    client = casework.client(officer)
    for value in [*BAD, "1e400M" if field == "max_bytes" else "0"]:
        r = client.post(f"/reports/{report.id}/links", {**GOOD_LINK, field: value})
        assert r.status_code == 400, (field, value)
        assert f"({field})" in r.text, (field, value)
    with casework.db.read() as session:
        assert list(session.exec(select(UploadLink))) == []
    assert client.post(f"/reports/{report.id}/links", GOOD_LINK).status_code == 200


@pytest.mark.parametrize("scope", ["item", "report"])
def test_share_forms_refuse_bad_day_counts_by_name(casework: Casework, scope: str) -> None:
    officer = casework.user("officer")
    partner = casework.user("partner")
    report = casework.report(officer)
    item = casework.item(report).item
    url = f"/items/{item.id}/shares" if scope == "item" else f"/reports/{report.id}/shares"
    client = casework.client(officer)
    for value in [*BAD, "0", "366", "1.5"]:
        r = client.post(url, {"partner": f"user:{partner.id}", "days": value})
        assert r.status_code == 400, value
        assert "(days)" in r.text, value
    with casework.db.read() as session:
        assert list(session.exec(select(Share))) == []


def test_strict_parsers_refuse_what_float_accepted() -> None:
    for bad in BAD:
        for parse in (parse_bytes, parse_duration, parse_count):
            with pytest.raises(ValueError):
                parse(bad)
    assert parse_bytes("1.5G") == 3 << 29 and parse_bytes("2GiB") == 2 << 30 and parse_bytes("512 MB") == 512 << 20
    assert parse_duration("36h") == 36 * 3600 and parse_duration("45") == 45 and parse_count(" 12 ") == 12
