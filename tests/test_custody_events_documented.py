"""i15 item 4: the custody events are documented in the README as a table an auditor can
read, and the table lists every action the code can write (and nothing it cannot).

The actions are found by reading the code (``ast``), not from a list kept by hand: every
call of a ledger writer (``ledger.append(action=...)``, ``audit.record/record_sync/
record_in``, ``accounts._event``) and every ``events=[("action", ...)]`` handed to the
worker's ``_move``. A family written with an f-string (``f"item.{target}"``,
``f"upload.{state.value}"``) is expanded over the states it can take. An action passed
on as a variable is only allowed inside a writer that takes ``action`` (or ``events``)
itself: its callers are scanned. If this test fails after you added an event: add a row to the
table between the ``custody-events`` markers in README.md.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from storage.lifecycle import TRANSITIONS
from storage.models import UploadState

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("storage", "reviewer_ui", "upload_api", "processing", "exhibit")
# Writer name -> index of its positional ``action`` argument (None: keyword only).
WRITERS: dict[str, int | None] = {"append": None, "record": 2, "record_sync": 2, "record_in": 3, "_event": 3}
FAMILIES = {
    # lifecycle.transition writes item.<target>: every state something can move to.
    "item.{}": sorted({str(s) for targets in TRANSITIONS.values() for s in targets}),
    # ingest._close_row writes upload.<state> for the closing states (open is upload.started).
    "upload.{}": sorted(str(s) for s in UploadState if s != UploadState.OPEN),
}


def _names(node: ast.expr, where: str) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _names(node.body, where) + _names(node.orelse, where)
    if isinstance(node, ast.JoinedStr):
        shape = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        assert shape in FAMILIES, f"{where}: an action family {shape!r} the test cannot expand"
        return [shape.format(v) for v in FAMILIES[shape]]
    raise AssertionError(f"{where}: an action the test cannot read: {ast.unparse(node)}")


def _passes_through(fn: ast.FunctionDef | ast.AsyncFunctionDef | None, node: ast.expr) -> bool:
    """``action`` inside a writer that takes ``action`` (or ``events``, as the worker's
    ``_move`` does) from its callers, whose calls are scanned."""
    return (isinstance(node, ast.Name) and node.id == "action" and fn is not None
            and bool({"action", "events"} & {a.arg for a in [*fn.args.args, *fn.args.kwonlyargs]}))


def actions_in_code() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
                where = f"{path.relative_to(ROOT)}:{call.lineno}"
                enclosing = next((f for f in reversed(functions)
                                  if f.lineno <= call.lineno <= (f.end_lineno or f.lineno)), None)
                func = call.func
                name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
                args: list[ast.expr] = []
                for kw in call.keywords:
                    if kw.arg == "events" and isinstance(kw.value, ast.List):
                        args += [el.elts[0] for el in kw.value.elts if isinstance(el, ast.Tuple) and el.elts]
                if name in WRITERS:
                    action = next((kw.value for kw in call.keywords if kw.arg == "action"), None)
                    index = WRITERS[name]
                    if action is None and index is not None and len(call.args) > index:
                        action = call.args[index]
                    if action is not None:
                        args.append(action)
                for arg in args:
                    if _passes_through(enclosing, arg):
                        continue
                    for action_name in _names(arg, where):
                        found.setdefault(action_name, where)
    return found


def actions_in_readme() -> list[str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- custody-events:start -->", 1)[1].split("<!-- custody-events:end -->", 1)[0]
    return re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", table, flags=re.M)


def test_the_readme_table_lists_every_action_the_code_writes_and_no_other() -> None:
    code = actions_in_code()
    readme = actions_in_readme()
    assert len(readme) == len(set(readme)), "an action is listed twice"
    missing = {a: where for a, where in code.items() if a not in readme}
    assert missing == {}, "add these to the custody events table in README.md"
    assert sorted(set(readme) - set(code)) == [], "the README lists actions the code never writes"


def test_the_scan_sees_the_events_a_viewer_writes() -> None:
    """The scan is not vacuous: the events this issue is about are found where they are written."""
    code = actions_in_code()
    assert code["item.viewed"].startswith(("reviewer_ui/items.py", "reviewer_ui/partner.py"))
    assert code["media.stream"].startswith("reviewer_ui/media.py")
    for action in ("item.ready", "item.infected", "upload.complete", "user.disabled", "note.edited"):
        assert action in code, action
