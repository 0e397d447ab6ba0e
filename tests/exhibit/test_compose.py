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


# -- the Compose Specification, checked by a real validator (issue 16 item 2) -------------------
#
# The schema is the Compose Specification's own JSON schema (compose-spec/compose-spec,
# Apache-2.0), as vendored, with its licence, by check-jsonschema (a locked dev dependency:
# check_jsonschema/builtin_schemas/vendor/compose-spec.json and licenses/LICENSE.compose-spec),
# so no copy in this repository goes stale unnoticed. Validated with jsonschema.


def _compose_schema() -> dict[str, Any]:
    import json
    from importlib.resources import files

    vendor = files("check_jsonschema") / "builtin_schemas" / "vendor"
    assert "Apache License" in (vendor / "licenses" / "LICENSE.compose-spec").read_text()
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


def _errors(document: Any) -> list[str]:
    import jsonschema

    validator_class = jsonschema.validators.validator_for(_compose_schema())
    validator = validator_class(_compose_schema(), format_checker=validator_class.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    assert _errors(yaml.safe_load(COMPOSE.read_text())) == []


def test_the_validator_catches_what_a_compose_engine_would_refuse() -> None:
    # Proof that the check above can fail: mistakes an operator would only meet at
    # `docker compose up`.
    data = yaml.safe_load(COMPOSE.read_text())
    data["services"]["upload"]["depends_on"]["migrate"]["condition"] = "service_finished"
    data["services"]["staff"]["restart_policy"] = "always"  # not a service key
    data["services"]["worker"]["networks"] = "internal"  # a list or a mapping
    errors = "\n".join(_errors(data))
    assert "services/upload/depends_on:" in errors and "service_finished" in errors
    assert "'restart_policy' was unexpected" in errors
    assert "services/worker/networks:" in errors


def test_only_upload_nodes_face_the_public_network_and_everything_else_is_internal() -> None:
    data = yaml.safe_load(COMPOSE.read_text())
    services = data["services"]
    assert data["networks"]["internal"] == {"internal": True}
    on_public = sorted(name for name, s in services.items() if "public" in s.get("networks", []))
    assert on_public == ["upload"]
    published = sorted(name for name, s in services.items() if s.get("ports"))
    assert published == ["upload"]
    for name, service in services.items():
        assert service.get("networks"), f"{name} must name its networks (the default network is not internal)"
        assert set(service["networks"]) <= ({"public", "internal", "egress"} if name == "clamd"
                                            else {"public", "internal"}), name
    # Every upload replica gets a host port of its own (a single port cannot be published twice).
    first, last = services["upload"]["ports"][0].split(":")[-2].split("-")
    assert int(last) - int(first) + 1 >= services["upload"]["deploy"]["replicas"]
    # Doors report readiness through /readyz.
    for name in ("upload", "staff"):
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"]), name


def test_minio_buckets_are_created_at_start_with_object_lock_and_clamd_updates_its_signatures() -> None:
    services = _services()
    init = services["minio-init"]
    script = " ".join(init["command"])
    for bucket in ("evidence", "checkpoints"):
        assert f"mc mb --ignore-existing --with-lock local/{bucket}" in script
    # The buckets the servers use are the ones created with Object Lock.
    assert services["upload"]["environment"]["EXHIBIT_STORAGE_URL"].startswith("s3://evidence/")
    assert services["staff"]["environment"]["EXHIBIT_CHECKPOINT_URL"].startswith("s3://checkpoints/")
    assert services["migrate"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    clamd = services["clamd"]
    assert clamd["environment"]["CLAMAV_NO_FRESHCLAMD"] == "false"
    assert any(v.endswith(":/var/lib/clamav") for v in clamd["volumes"])


def _interpolate(value: str) -> str:
    """What Compose makes of ``${VAR:-default}`` with nothing set: the default."""
    import re

    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_clamd_has_a_route_out_for_freshclam_and_nothing_else_shares_it() -> None:
    # UP-03: freshclam must reach the signature mirrors, or the scanner runs on signatures
    # that never update. `internal: true` has no route out, so clamd needs another network.
    data = yaml.safe_load(COMPOSE.read_text())
    clamd = data["services"]["clamd"]
    outward = [n for n in clamd["networks"] if not data["networks"][n].get("internal")]
    assert outward, clamd["networks"]
    for network in outward:
        assert network != "public"
        sharing = sorted(name for name, s in data["services"].items() if network in s.get("networks", []))
        assert sharing == ["clamd"], (network, sharing)


def test_services_get_their_own_minio_users_never_the_root_credentials() -> None:
    # An upload node is internet-facing: broken into, root credentials would own every
    # bucket, the signed checkpoints included.
    services = _services()
    for name, service in services.items():
        env = service.get("environment") or {}
        text = " ".join(f"{k}={v}" for k, v in env.items())
        if name not in ("minio", "minio-init"):
            assert "MINIO_ROOT_" not in text, name
    upload_env = services["upload"]["environment"]
    staff_env = services["staff"]["environment"]
    assert upload_env["AWS_ACCESS_KEY_ID"] != staff_env["AWS_ACCESS_KEY_ID"]
    assert services["worker"]["environment"]["AWS_ACCESS_KEY_ID"] == staff_env["AWS_ACCESS_KEY_ID"]
    # The upload user's policy: the evidence bucket only, no checkpoints, no bypass/holds/versions.
    import json

    script = " ".join(services["minio-init"]["command"])
    assert "mc admin policy attach local exhibit-upload --user \"$$UPLOAD_ACCESS\"" in script
    policy = json.loads((COMPOSE.parent / "deploy" / "minio" / "exhibit-upload.json").read_text())
    resources = {r for st in policy["Statement"] for r in st["Resource"]}
    actions = {a for st in policy["Statement"] for a in st["Action"]}
    assert resources == {"arn:aws:s3:::evidence", "arn:aws:s3:::evidence/*"}
    assert not any("*" in a or "Bypass" in a or "LegalHold" in a or "Version" in a for a in actions), actions


def test_upload_nodes_trust_the_load_balancer_and_publish_on_a_chosen_address() -> None:
    services = _services()
    upload = services["upload"]
    assert "EXHIBIT_LB_ADDRESSES" in upload["environment"]["EXHIBIT_TRUSTED_PROXIES"]
    for port in upload["ports"]:
        bound = _interpolate(port)
        assert bound.count(":") == 2 and bound.split(":")[0] == "127.0.0.1", port
    assert "127.0.0.0/8" in _interpolate(services["staff"]["environment"]["EXHIBIT_METRICS_ALLOW"])
