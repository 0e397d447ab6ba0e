"""docker-compose.yml gives each service one role, and the staff door never reaches the
public network (issue 11 item 2, SECURITY_CHECKLIST AC-17). No Docker engine here: the
file is read as the data it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml  # PyYAML, already in the test environment (moto[server] needs it)

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _services() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    services: dict[str, Any] = data["services"]
    return services


def _role(service: dict[str, Any]) -> str | None:
    command = service.get("command", [])
    if command[:2] != ["exhibit", "serve"]:
        return None
    assert "--role" in command, command  # never the default "all" in the scaled deployment
    return str(command[command.index("--role") + 1])


def test_each_server_service_runs_one_role_and_the_staff_door_is_internal_only() -> None:
    services = _services()
    data = yaml.safe_load(COMPOSE.read_text())
    roles = {name: _role(s) for name, s in services.items() if _role(s) is not None}
    assert sorted(roles.values()) == ["public", "staff"], roles

    (staff_name,) = [n for n, r in roles.items() if r == "staff"]
    staff = services[staff_name]
    assert "ports" not in staff  # never published on the host
    for network in staff["networks"]:
        assert data["networks"][network].get("internal") is True, network

    (public_name,) = [n for n, r in roles.items() if r == "public"]
    public = services[public_name]
    assert "public" in public["networks"]
    # The public door runs no worker or scanner of its own: those are the worker service's.
    assert services["worker"]["command"][:2] == ["exhibit", "worker"]
    assert "public" not in services["worker"]["networks"]
    # Every server waits for the migration step.
    for name in (staff_name, public_name, "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_signing_key_and_the_owner_role_stay_off_the_public_door() -> None:
    # Issue 11 item 3: an upload node that is broken into holds neither the ledger's signing
    # key nor the owner role's password; only the migration step migrates as the owner.
    services = _services()
    for name, service in services.items():
        env = service.get("environment") or {}
        if name == "migrate":
            assert "EXHIBIT_MIGRATION_DATABASE_URL" in env
        else:
            assert "EXHIBIT_MIGRATION_DATABASE_URL" not in env, name
        if "EXHIBIT_DATABASE_URL" in env:
            assert "exhibit_app:" in env["EXHIBIT_DATABASE_URL"], name
    upload = services["upload"]
    assert "secrets" not in upload and "EXHIBIT_SIGNING_KEY_FILE" not in (upload.get("environment") or {})
    for name in ("staff", "worker"):
        assert services[name]["secrets"] == ["ledger_key"], name
        assert services[name]["environment"]["EXHIBIT_CHECKPOINT_URL"].startswith("s3://"), name
