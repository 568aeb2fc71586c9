"""The production-like stack: docker-compose.yml and docker/Dockerfile, checked structurally.

There is no Docker engine where the tests run, so these read the files and hold them to what
`docker compose up` needs: KRaft settings that agree with each other, start-up order by health,
one image for the four app services, each running its own `closedloop` subcommand.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = {"migrate": "migrate", "ingest": "ingest", "worker": "worker", "api": "api"}
DATABASE_URL = "postgresql://closedloop:closedloop@postgres:5432/closedloop"


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, Any]:
    result = compose()["services"]
    assert isinstance(result, dict)
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return cmd.split() if isinstance(cmd, str) else [str(part) for part in cmd]


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    assert isinstance(deps, dict), "depends_on must use the long form with conditions"
    return {name: spec["condition"] for name, spec in deps.items()}


def test_all_six_services_are_defined() -> None:
    assert set(services()) == {"kafka", "postgres", *APP_SERVICES}


def test_kafka_runs_kraft_as_one_combined_node() -> None:
    kafka = services()["kafka"]
    assert kafka["image"] == "apache/kafka:3.9.0"
    env = environment(kafka)
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    assert env["CLUSTER_ID"]

    listeners = dict(
        re.fullmatch(r"(\w+)://[^:]*:(\d+)", item).groups()  # type: ignore[union-attr]
        for item in env["KAFKA_LISTENERS"].split(",")
    )
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners and set(listeners) <= set(protocols)

    # The quorum is this node, on its controller listener, at its compose host name.
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:{listeners[controller]}"
    # Clients reach the broker as kafka:9092, the address the apps are given.
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "PLAINTEXT://kafka:9092" in advertised
    assert not any(item.startswith(f"{controller}://") for item in advertised)
    assert env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT") in listeners
    for name in ("OFFSETS_TOPIC", "TRANSACTION_STATE_LOG"):
        assert env[f"KAFKA_{name}_REPLICATION_FACTOR"] == "1"


@pytest.mark.parametrize("name", ["kafka", "postgres"])
def test_infrastructure_has_a_healthcheck_and_a_volume(name: str) -> None:
    service = services()[name]
    assert service["healthcheck"]["test"]
    assert service.get("volumes")
    assert set(compose()["volumes"]) >= {v.split(":")[0] for v in service["volumes"]}


def test_postgres_is_16_and_checked_with_pg_isready() -> None:
    postgres = services()["postgres"]
    assert postgres["image"].split(":")[1].startswith("16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    env = environment(postgres)
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
        "closedloop",
        "closedloop",
        "closedloop",
    )


@pytest.mark.parametrize(("name", "subcommand"), sorted(APP_SERVICES.items()))
def test_each_app_service_runs_its_closedloop_subcommand(name: str, subcommand: str) -> None:
    service = services()[name]
    assert command(service) == ["closedloop", subcommand]
    env = environment(service)
    assert env["DATABASE_URL"] == DATABASE_URL
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["CLOSEDLOOP_INGEST_HOST"] == "0.0.0.0"
    assert env["CLOSEDLOOP_API_HOST"] == "0.0.0.0"


def test_one_image_is_built_once_and_reused() -> None:
    apps = {name: services()[name] for name in APP_SERVICES}
    images = {service["image"] for service in apps.values()}
    assert len(images) == 1
    builders = [name for name, service in apps.items() if "build" in service]
    assert builders == ["migrate"]
    build = apps["migrate"]["build"]
    assert build["dockerfile"] == "docker/Dockerfile"
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    # The others must wait for the build, never look for the image in a registry.
    assert all(apps[name]["pull_policy"] == "never" for name in APP_SERVICES if name != "migrate")


def test_start_up_order_waits_for_health_and_migrations() -> None:
    svc = services()
    assert depends_on(svc["migrate"]) == {"postgres": "service_healthy"}
    for name in ("ingest", "worker"):
        deps = depends_on(svc[name])
        assert deps["kafka"] == "service_healthy"
        assert deps["migrate"] == "service_completed_successfully"
    assert depends_on(svc["api"])["migrate"] == "service_completed_successfully"


def test_ports_and_restart_policies() -> None:
    svc = services()
    assert "8001:8001" in svc["ingest"]["ports"]
    assert "8000:8000" in svc["api"]["ports"]
    assert "ports" not in svc["worker"]
    assert svc["worker"]["restart"] == "unless-stopped"
    assert svc["migrate"].get("restart", "no") == "no"


def test_dockerfile_installs_the_project_as_a_non_root_user() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    instructions = [line.strip() for line in text.splitlines() if line.strip()[:1].isalpha()]
    assert instructions[0] == "FROM python:3.11-slim"
    run_lines = re.sub(r"\\\n", " ", text)
    assert re.search(r"pip install (--\S+ )*\.(\s|$)", run_lines)
    for copied in ("pyproject.toml", "services", "migrations"):
        assert re.search(rf"^COPY .*\b{copied}\b", text, re.MULTILINE), copied
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
