"""The `tongke` command as an operator uses it, in real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from common.migrate import alembic_config
from tests.shared_data import TIMETABLE_DATA


def tongke(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "web.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "TONGKE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "TONGKE_MEDIA_ROOT": str(tmp_path / "media"),
        "TONGKE_REDIS_URL": "",
    }


def test_serve_refuses_an_unmigrated_database(env: dict[str, str]) -> None:
    result = tongke("serve", env=env)
    assert result.returncode == 1
    assert "tongke db upgrade" in result.stderr


def test_a_setting_that_does_not_validate_is_one_line_naming_it(env: dict[str, str]) -> None:
    result = tongke("db", "current", env={**env, "TONGKE_RECORDING_FFMPEG": "/nonexistent/ffmpeg"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "配置错误：TONGKE_RECORDING_FFMPEG: no executable '/nonexistent/ffmpeg'"
    ), result.stderr
    # a field's own type error is named by its variable too, every problem on the one line
    result = tongke("serve", env={**env, "TONGKE_PORT": "http", "TONGKE_RECORDING_LOUDNESS": "x"})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("配置错误：TONGKE_PORT: ") and result.stderr.count("\n") == 1
    assert "; TONGKE_RECORDING_LOUDNESS: " in result.stderr, result.stderr


def test_db_upgrade_then_user_add(env: dict[str, str]) -> None:
    upgraded = tongke("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert tongke("db", "current", env=env).stdout.strip() == head
    assert tongke("db", "upgrade", env=env).returncode == 0  # repeatable

    created = tongke(
        "user",
        "add",
        "boss",
        "--role",
        "bureau",
        "--name",
        "县教育局",
        "--password",
        "a-long-password",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    assert "已创建账号 boss" in created.stdout
    again = tongke(
        "user", "add", "boss", "--role", "bureau", "--password", "a-long-password", env=env
    )
    assert again.returncode == 1 and "已存在" in again.stderr
    weak = tongke("user", "add", "weak", "--role", "bureau", "--password", "short", env=env)
    assert weak.returncode == 1 and "至少" in weak.stderr
    unlinked = tongke(
        "user", "add", "t1", "--role", "teacher", "--password", "a-long-password", env=env
    )
    assert unlinked.returncode == 1 and "教师账号需要关联教师" in unlinked.stderr
    bad_role = tongke(
        "user", "add", "x", "--role", "wizard", "--password", "a-long-password", env=env
    )
    assert bad_role.returncode == 1 and "参数无效" in bad_role.stderr


def test_demo_seeds_once_and_prints_every_role(env: dict[str, str]) -> None:
    first = tongke("demo", "--no-serve", env=env)
    assert first.returncode == 0, first.stderr
    for username in ("bureau", "admin-sy", "admin-wck", "principal-cy", "student-cy-4-1"):
        assert username in first.stdout
    for label in ("教育局", "教联体管理员", "学校管理员", "教师", "学生", "教室终端"):
        assert label in first.stdout
    second = tongke("demo", "--no-serve", env=env)
    assert second.returncode == 0, second.stderr
    assert "演示数据已存在" in second.stdout and "admin-wck" in second.stdout


def test_worker_needs_redis_and_checks_it(env: dict[str, str], redis_server: str) -> None:
    missing = tongke("worker", env=env)
    assert missing.returncode == 1 and "TONGKE_REDIS_URL" in missing.stderr
    ok = tongke("worker", "--check", env={**env, "TONGKE_REDIS_URL": redis_server})
    assert ok.returncode == 0, ok.stderr
    down = tongke("worker", "--check", env={**env, "TONGKE_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.returncode == 1


def test_sfu_worker_needs_redis_and_checks_it(env: dict[str, str], redis_server: str) -> None:
    missing = tongke("sfu", env=env)
    assert missing.returncode == 1 and "TONGKE_REDIS_URL" in missing.stderr
    ok = tongke("sfu", "--check", env={**env, "TONGKE_REDIS_URL": redis_server})
    assert ok.returncode == 0, ok.stderr
    down = tongke("sfu", "--check", env={**env, "TONGKE_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.returncode == 1 and "Redis" in down.stderr


EXAMPLES = TIMETABLE_DATA


def test_timetable_check_exit_codes(env: dict[str, str], tmp_path: Path) -> None:
    problem = EXAMPLES / "example-small.json"
    good = tongke(
        "timetable", "check", str(problem), str(EXAMPLES / "example-small.solution.json"), env=env
    )
    assert good.returncode == 0, good.stderr
    assert "idle_minutes" in good.stdout and "late_main" in good.stdout
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "tongke-timetable/1"')
    malformed = tongke(
        "timetable", "check", str(broken), str(EXAMPLES / "example-small.solution.json"), env=env
    )
    assert malformed.returncode == 2


def test_itc2007_solves_the_toy_instance(env: dict[str, str], tmp_path: Path) -> None:
    toy = EXAMPLES.parent / "itc2007" / "toy.ctt"
    out = tmp_path / "toy.sol"
    result = tongke("timetable", "itc2007", str(toy), "-o", str(out), "--time-limit", "3", env=env)
    assert result.returncode == 0, result.stderr
    assert "hard 0" in result.stdout
    assert len(out.read_text().splitlines()) == 16  # one line per lecture: 3 + 3 + 5 + 5
