"""Write the README's configuration table from storage.settings.SETTINGS, so the two cannot
drift: `python scripts/settings_table.py` rewrites the part between the markers."""

import re
from pathlib import Path

from storage.settings import SETTINGS

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(derived)"
        rows.append(f"| `{s.env}` | {default} | {s.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    text = README.read_text()
    new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: f"{BEGIN}\n{table()}\n{END}", text, flags=re.S)
    README.write_text(new)
