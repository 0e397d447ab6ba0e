"""i15 item 5: times in the force's zone (EXHIBIT_TIME_ZONE, default Europe/London, summer
time included) with the UTC instant on hover; sizes through one formatter."""

from __future__ import annotations

import datetime as dt

import pytest

from reviewer_ui import context, items, reports
from storage.settings import Settings
from tests.fixtures.casework import Casework

SUMMER = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)
WINTER = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("at", "shown"), [(SUMMER, "1 Jul 2026 13:00 BST"), (WINTER, "1 Dec 2026 12:00 GMT")])
def test_the_item_page_says_london_time_with_utc_on_hover(casework: Casework, at: dt.datetime, shown: str) -> None:
    officer = casework.user("officer")
    item = casework.item(casework.report(officer), received_at=at).item
    html = casework.client(officer).get(f"/items/{item.id}").text
    utc = at.strftime("%Y-%m-%d %H:%M:%S")
    assert f'<time datetime="{at:%Y-%m-%dT%H:%M:%SZ}" title="{utc} UTC">{shown}</time>' in html


def test_another_zone_is_a_setting_and_a_typo_stops_the_start(casework: Casework) -> None:
    assert Settings.from_env({"EXHIBIT_DATA_DIR": "/srv/x"}).time_zone == "Europe/London"
    assert Settings.from_env({"EXHIBIT_DATA_DIR": "/srv/x", "EXHIBIT_TIME_ZONE": "America/New_York"}).time_zone \
        == "America/New_York"
    with pytest.raises(ValueError, match="EXHIBIT_TIME_ZONE"):
        Settings.from_env({"EXHIBIT_DATA_DIR": "/srv/x", "EXHIBIT_TIME_ZONE": "Europe/Londno"})
    casework.ctx.settings = casework.settings.replace(time_zone="America/New_York")
    officer = casework.user("officer")
    item = casework.item(casework.report(officer), received_at=SUMMER).item
    assert ">1 Jul 2026 08:00 EDT</time>" in casework.client(officer).get(f"/items/{item.id}").text


def test_one_size_formatter() -> None:
    assert items._fmt_bytes is context.format_bytes
    assert reports._fmt_bytes(3 << 20) == context.format_bytes(3 << 20) == "3.0 MiB"
