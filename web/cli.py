"""The `tongke` command."""

from __future__ import annotations

import getpass
import signal
import sys
from typing import Annotated, Any

import typer

from common.settings import get_settings
from scheduler import cli as timetable_cli

app = typer.Typer(help="同课 tongke — 教联体平台命令行", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="数据库：迁移与状态", no_args_is_help=True)
user_app = typer.Typer(help="账号管理", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(timetable_cli.app, name="timetable")
bench_app = typer.Typer(help="基准测试：打印表格并写 JSON", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
recordings_app = typer.Typer(help="录播资源库", no_args_is_help=True)
app.add_typer(recordings_app, name="recordings")


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Migrate the database to the newest schema (safe to run repeatedly)."""
    from common.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"数据库已迁移到 {revision}")


@db_app.command("revision")
def db_revision(message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    from alembic import command

    from common.migrate import alembic_config

    command.revision(
        alembic_config(get_settings().database_url), message=message, autogenerate=True
    )


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision."""
    from common.db import get_engine
    from common.migrate import current_revision

    typer.echo(current_revision(get_engine(get_settings().database_url)) or "(空数据库)")


def _ensure_migrated() -> None:
    from alembic.script import ScriptDirectory

    from common.db import get_engine
    from common.migrate import alembic_config, current_revision

    settings = get_settings()
    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    current = current_revision(get_engine(settings.database_url))
    if current != head:
        _fail(
            f"数据库结构不是最新（当前 {current or '空'}，需要 {head}）："
            "请先运行 `tongke db upgrade`"
        )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="监听地址")] = None,
    port: Annotated[int | None, typer.Option(help="端口")] = None,
    workers: Annotated[int, typer.Option(help="Web 进程数")] = 1,
) -> None:
    """Run the web app (the database must be migrated)."""
    import uvicorn

    settings = get_settings()
    _ensure_migrated()
    uvicorn.run(
        "web.main:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        proxy_headers=True,
        log_config=None,
    )


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@app.command()
def demo(
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="填充后启动 Web")] = True,
    reset: Annotated[bool, typer.Option(help="删除并重建演示数据库（仅 SQLite）")] = False,
    password: Annotated[str, typer.Option(help="演示账号的密码")] = "tongke-demo",
    classrooms: Annotated[
        bool,
        typer.Option(
            "--classrooms/--no-classrooms", help="启动模拟课堂（机器人教室终端直播同步课）"
        ),
    ] = True,
) -> None:
    """Migrate, seed the demo alliance (once), print the demo logins, then serve with
    simulated live classrooms (TONGKE_DEMO_CLASSROOMS lessons, in a process of their own)."""
    from pathlib import Path

    from sqlalchemy import select

    from common.accounts.models import Account
    from common.alliance.demo import seed_demo
    from common.db import get_engine, session_scope
    from common.errors import ConflictError
    from common.migrate import upgrade
    from research.demo import seed_research
    from web.page_shell import ROLE_LABELS

    settings = get_settings()
    if reset:
        if not settings.is_sqlite:
            _fail("--reset 只用于 SQLite 演示数据库")
        path = Path(settings.database_url.split(":///", 1)[-1])
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    upgrade(settings.database_url)
    engine = get_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            summary = seed_demo(session, password=password)
            seed_research(session)
    except ConflictError:
        typer.echo("演示数据已存在，直接使用（重新生成请加 --reset）")
    else:
        typer.echo(
            f"已填充演示数据：{'、'.join(summary.alliances)}；{summary.schools} 所学校，"
            f"{summary.campuses} 个校区，{summary.classes} 个班，{summary.teachers} 位教师，"
            f"{summary.students} 名学生，{summary.sync_groups} 组同步/专递课堂"
        )
    typer.echo("")
    typer.echo(f"演示账号（密码均为 {password}；教室终端用配对码接入，无密码）：")
    with session_scope(engine) as session:
        for account in session.scalars(select(Account).order_by(Account.id).limit(60)):
            label = ROLE_LABELS.get(account.role, account.role)
            typer.echo(f"  {label:<8} {account.username:<20} {account.display_name}")
    typer.echo("")
    url = f"http://{settings.host}:{settings.port}"
    if not serve_after:
        return
    from streaming import demo_classrooms

    media_worker = None
    if settings.routes_to_sfu_workers:
        # With Redis the rooms live in SFU workers: the demo runs one next to the web app.
        import subprocess

        media_worker = subprocess.Popen([sys.executable, "-m", "web.cli", "sfu"])
        typer.echo(f"SFU 媒体进程：{settings.sfu_host}:{settings.sfu_port}（经 Redis 路由）")
    bots = None
    if classrooms and settings.demo_classrooms > 0:
        with session_scope(engine) as session:
            seats = demo_classrooms.plan_demo_classrooms(session, count=settings.demo_classrooms)
        lessons = {seat.code: [s.label for s in seats if s.code == seat.code] for seat in seats}
        for code, labels in lessons.items():
            typer.echo(f"模拟课堂 {code}：{labels[0]} → {'、'.join(labels[1:])}")
        local = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        bots = demo_classrooms.start_process(f"http://{local}:{settings.port}", seats)
    typer.echo(f"打开 {url} 登录。按 Ctrl+C 停止。")
    sys.stdout.flush()
    # uvicorn re-raises SIGTERM after its graceful shutdown: make that an exit that runs
    # `finally`, so the classrooms' process stops with the demo.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        serve(host=None, port=None, workers=1)
    finally:
        for process in (bots, media_worker):
            if process is not None:
                demo_classrooms.stop_process(process)


@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[
        str, typer.Option(help="bureau / alliance_admin / school_admin / teacher / student")
    ],
    name: Annotated[str | None, typer.Option(help="显示名称")] = None,
    password: Annotated[str | None, typer.Option(help="密码（不填则交互输入）")] = None,
    alliance_id: int | None = None,
    school_id: int | None = None,
    teacher_id: int | None = None,
    student_id: int | None = None,
) -> None:
    """Create an account (the first bureau or alliance admin of a new installation)."""
    from pydantic import ValidationError

    from common.accounts import service as accounts
    from common.alliance.resources import account_scope_columns
    from common.alliance.schemas import AccountCreate
    from common.db import get_engine, session_scope
    from common.errors import AppError

    if role == "terminal":
        _fail("教室终端通过配对码接入，不能用命令行创建")
    if password is None:
        password = getpass.getpass("密码：")
        if password != getpass.getpass("再次输入密码："):
            _fail("两次输入的密码不一致")
    settings = get_settings()
    # The command line is the installation's operator: it may create any role.
    try:
        payload = AccountCreate(
            username=username,
            display_name=name or username,
            role=role,
            password=password,
            alliance_id=alliance_id,
            school_id=school_id,
            teacher_id=teacher_id,
            student_id=student_id,
        )
        with session_scope(get_engine(settings.database_url)) as session:
            account = accounts.create_account(
                session,
                username=payload.username,
                display_name=payload.display_name,
                role=payload.role,
                password=payload.password,
                **account_scope_columns(session, payload),
            )
            typer.echo(f"已创建账号 {account.username}（{account.role}，id {account.id}）")
    except AppError as exc:
        _fail(exc.message)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail(f"参数无效：{problems}")


@app.command()
def worker(check: Annotated[bool, typer.Option(help="只检查能否连接 Redis")] = False) -> None:
    """Run the background job worker (arq on Redis)."""
    from common.worker import run_worker
    from web.jobs import register_all

    settings = get_settings()
    if not settings.redis_url:
        _fail("后台任务进程需要 Redis：设置 TONGKE_REDIS_URL（未设置时任务在 Web 进程内执行）")
    sys.exit(run_worker(settings, register=register_all, check=check))


@app.command()
def sfu(
    host: Annotated[str | None, typer.Option(help="监听地址（默认 TONGKE_SFU_HOST）")] = None,
    port: Annotated[int | None, typer.Option(help="端口（默认 TONGKE_SFU_PORT）")] = None,
    worker_id: Annotated[
        str | None, typer.Option("--worker-id", help="Redis 中的进程名（默认 主机名-进程号）")
    ] = None,
    check: Annotated[bool, typer.Option(help="只检查能否连接 Redis")] = False,
) -> None:
    """Run an SFU media worker: it hosts lesson rooms, registers itself in Redis and claims
    the rooms it opens there; the web process relays each join's signaling to it."""
    import asyncio

    from streaming.cluster import SfuCluster
    from streaming.worker import default_worker_id, run_sfu_worker
    from web.jobs import register_all

    settings = get_settings()
    if not settings.redis_url:
        _fail("SFU 媒体进程需要 Redis：设置 TONGKE_REDIS_URL（未设置时课堂在 Web 进程内运行）")
    assert settings.redis_url is not None
    if check:

        async def ping(url: str) -> bool:
            cluster = SfuCluster(url)
            try:
                return await cluster.ping()
            finally:
                await cluster.close()

        try:
            asyncio.run(ping(settings.redis_url))
        except Exception as exc:
            _fail(f"无法连接 Redis：{exc}")
        typer.echo("Redis 可用")
        return
    run_sfu_worker(
        settings,
        host=host or settings.sfu_host,
        port=port or settings.sfu_port,
        worker_id=worker_id or default_worker_id(),
        register_jobs=register_all,
    )


@app.command("turn-credential")
def turn_credential_command(
    hours: Annotated[float, typer.Option(help="有效小时数")] = 1.0,
) -> None:
    """Print a TURN username and password for checking the relay from a school's network
    (e.g. in a browser's trickle-ICE page), minted like a user's and expiring by itself."""
    import time

    from streaming.ice import turn_server

    settings = get_settings()
    if not settings.turn_urls or settings.turn_secret is None:
        _fail("未配置 TURN：请设置 TONGKE_TURN_URLS 和 TONGKE_TURN_SECRET")
    if not 0 < hours <= 24:
        _fail("有效小时数须在 0 到 24 之间")
    server = turn_server(settings, "check", expires_at=int(time.time() + hours * 3600))
    typer.echo("\n".join(server["urls"]))
    typer.echo(f"username: {server['username']}")
    typer.echo(f"password: {server['credential']}")


@recordings_app.command("expire")
def recordings_expire() -> None:
    """Delete the files of recordings past their alliance's retention rule (run daily)."""
    from common.db import get_engine, session_factory
    from recordings.service import expire_recordings
    from recordings.storage import remote_storage

    settings = get_settings()
    expired = expire_recordings(
        session_factory(get_engine(settings.database_url)),
        media_root=settings.media_root,
        remote=remote_storage(settings),
    )
    typer.echo(f"已删除 {len(expired)} 段过期录像的文件")


def _load_benchmark(name: str) -> Any:
    """A script of benchmarks/ (not part of the installed package: it needs the source tree)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tongke_bench_{name}", path)
    if spec is None or spec.loader is None or not path.exists():
        _fail(f"找不到基准测试脚本 {path}（需要在源码目录中安装 tongke）")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@bench_app.command("recording")
def bench_recording(
    minutes: Annotated[float, typer.Option(help="每节课的时长（分钟）")] = 45.0,
    streams: Annotated[str, typer.Option(help="同时录制的路数，逗号分隔")] = "1,4,8",
    json_path: Annotated[str | None, typer.Option("--json", help="把结果写成 JSON 文件")] = None,
    pace: Annotated[str, typer.Option(help="fast（快于实时，保留时间戳）或 realtime")] = "fast",
    reference: Annotated[
        bool, typer.Option("--reference/--no-reference", help="同时测 ffmpeg H.264 重新编码")
    ] = True,
    renditions: Annotated[
        bool, typer.Option("--renditions/--no-renditions", help="同时测 HLS 多码率与缩略图")
    ] = False,
    loudness: Annotated[
        str, typer.Option(help="--renditions 的响度标准化：linear、dynamic 或 off")
    ] = "linear",
    clip_seconds: Annotated[float, typer.Option(help="循环使用的编码片段长度（秒）")] = 30.0,
    resolution: Annotated[
        str, typer.Option(help="模拟摄像头的分辨率，例如 640x360、1920x1080")
    ] = "640x360",
    live_hls: Annotated[
        bool, typer.Option("--live-hls/--no-live-hls", help="录制时同时转码 H.264/HLS 并计时")
    ] = False,
    live_nice: Annotated[
        int, typer.Option(min=0, max=19, help="实时转码 ffmpeg 的 nice 值（生产默认 10）")
    ] = 10,
) -> None:
    """Record simulated live lessons through the real recorder, then make them playable."""
    from pathlib import Path

    try:
        counts = [int(part) for part in streams.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        _fail("--streams 应为正整数列表，例如 1,4,8")
    if pace not in ("fast", "realtime"):
        _fail("--pace 只能是 fast 或 realtime")
    if minutes <= 0:
        _fail("--minutes 必须大于 0")
    if loudness not in ("linear", "dynamic", "off"):
        _fail("--loudness 只能是 linear、dynamic 或 off")
    bench = _load_benchmark("recording")
    try:
        size = bench.parse_resolution(resolution)
    except ValueError:
        _fail("--resolution 应为偶数的 宽x高，从 160x90 到 3840x2160，例如 1920x1080")
    bench.main(
        minutes=minutes,
        streams=counts,
        json_path=Path(json_path) if json_path else None,
        pace=pace,
        reference=reference,
        renditions=renditions,
        loudness=loudness,
        clip_seconds=clip_seconds,
        resolution=size,
        live_hls=live_hls,
        live_nice=live_nice,
        write=typer.echo,
    )


BENCH_NETNS_FLAG = "TONGKE_BENCH_IN_NETNS"


def _bench_soak(
    sfu: str,
    resolution: str,
    subscribers: int,
    minutes: int,
    json_path: str | None,
    publisher: str,
) -> None:
    import asyncio
    import json
    from pathlib import Path

    from streaming.bench import run_soak

    typer.echo(f"长时间运行：{sfu} {resolution} × {subscribers} 订阅者，{minutes} 分钟")
    typer.echo(f"{'minute':>8}  {'rss_mib':>10}  {'growth_mib':>10}")

    def print_sample(sample: dict[str, Any]) -> None:
        typer.echo(f"{sample['minute']:>8}  {sample['rss_mib']:>10}  {sample['growth_mib']:>10}")

    result = asyncio.run(
        run_soak(
            resolution=resolution,
            subscribers=subscribers,
            minutes=minutes,
            sfu=sfu,
            on_sample=print_sample,
            publisher_mode=publisher,
        )
    )
    typer.echo(
        f"每订阅者内存 {result['memory_mib_per_subscriber']} MiB；"
        f"{minutes} 分钟增长 {result['growth_mib']} MiB"
        f"（折合每小时 {result['growth_mib_per_hour']} MiB）"
    )
    if json_path:
        Path(json_path).write_text(json.dumps({"soak": result}, ensure_ascii=False, indent=2))
        typer.echo(f"已写入 {json_path}")


MEDIAN_COLUMNS = (
    "cpu_percent_per_subscriber", "us_per_packet", "delay_ms_p50", "delay_ms_p99",
    "first_frame_ms", "delivered_ratio",
)  # fmt: skip


def _median_table(rows: list[dict[str, Any]]) -> str:
    """`bench sfu --repeat`'s closing table: per SFU, resolution and subscribers, the median
    of each headline figure with its range."""

    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        if value is None:
            return "–"
        low, high = row["ranges"].get(column, (value, value))
        return f"{value:g} ({low:g}–{high:g})"

    lines = ["  ".join(["sfu", "resolution", "subscribers", *MEDIAN_COLUMNS])]
    for row in rows:
        cells = [str(row["sfu"]), str(row["resolution"]), str(row["subscribers"])]
        lines.append("  ".join(cells + [cell(row, c) for c in MEDIAN_COLUMNS]))
    return "\n".join(lines)


@bench_app.command("sfu")
def bench_sfu(
    subscribers: Annotated[str, typer.Option(help="订阅者人数，逗号分隔")] = "1,8,32,64",
    seconds: Annotated[float, typer.Option(help="每轮测量秒数")] = 30.0,
    resolutions: Annotated[str, typer.Option(help="发布分辨率，逗号分隔")] = "640x360,1920x1080",
    sfus: Annotated[
        str, typer.Option("--sfus", help="参与对比的 SFU：tongke,mediarelay,janus")
    ] = "tongke,mediarelay,janus",
    relay_max_subscribers: Annotated[
        int, typer.Option(help="MediaRelay（逐路重新编码）最多测到的订阅者人数")
    ] = 32,
    warm_up: Annotated[float, typer.Option(help="发布与加入后的预热秒数")] = 3.0,
    repeat: Annotated[
        int,
        typer.Option(
            help="重复轮数：每轮各 SFU 重新启动、顺序交替（A B、B A…），最后给出中位数与范围"
        ),
    ] = 1,
    json_path: Annotated[str | None, typer.Option("--json", help="结果写入的 JSON 文件")] = None,
    netns: Annotated[
        bool, typer.Option("--netns/--no-netns", help="在私有网络命名空间中运行（需 root）")
    ] = True,
    soak_minutes: Annotated[
        int,
        typer.Option(
            help="长时间运行：一个房间（第一个 SFU、分辨率与人数）持续 N 分钟，每分钟打印内存"
        ),
    ] = 0,
    publisher: Annotated[
        str,
        typer.Option(
            help="发布端视频：looped（预先编码一次、循环发送，发布端几乎不占 CPU）"
            "或 live（逐帧绘制并编码，与教室终端相同）"
        ),
    ] = "looped",
) -> None:
    """Measure the tongke SFU beside aiortc's MediaRelay and Janus videoroom, each in its own
    process and fed the same stream: one publisher, N subscribers."""
    import asyncio
    import json
    import os
    import shutil
    from pathlib import Path

    from streaming.bench import BITRATES, NETNS_SETUP, PUBLISHER_MODES, SFUS, run_bench

    if netns and not os.environ.get(BENCH_NETNS_FLAG) and os.geteuid() == 0:
        unshare = shutil.which("unshare")
        if unshare is not None:
            # Nothing leaves the machine; a veth pair inside carries Janus's ICE.
            argv = [sys.executable, "-m", "web.cli", "bench", "sfu", *sys.argv[3:]]
            os.environ[BENCH_NETNS_FLAG] = "1"
            script = f'{NETNS_SETUP} && exec "$@"'
            os.execv(unshare, [unshare, "-n", "sh", "-c", script, "sh", *argv])
    sizes = [r.strip() for r in resolutions.split(",") if r.strip()]
    unknown = [r for r in sizes if r not in BITRATES]
    if unknown:
        _fail(f"不支持的分辨率：{', '.join(unknown)}（可选 {', '.join(BITRATES)}）")
    chosen = tuple(s.strip() for s in sfus.split(",") if s.strip())
    if not chosen or any(s not in SFUS for s in chosen):
        _fail(f"不支持的 SFU：{sfus}（可选 {', '.join(SFUS)}）")
    counts = [int(n) for n in subscribers.split(",") if n.strip()]
    if not counts or min(counts) < 1:
        _fail("订阅者人数须为正整数")
    if soak_minutes < 0:
        _fail("长时间运行分钟数不能为负")
    if publisher not in PUBLISHER_MODES:
        _fail(f"不支持的发布端视频：{publisher}（可选 {', '.join(PUBLISHER_MODES)}）")
    if repeat < 1:
        _fail("重复轮数须为正整数")
    if repeat > 1 and soak_minutes:
        _fail("长时间运行只测一轮，不能与 --repeat 同用")
    if soak_minutes:
        _bench_soak(chosen[0], sizes[0], counts[0], soak_minutes, json_path, publisher)
        return
    columns: tuple[str, ...] = (
        "sfu", "resolution", "subscribers", "cpu_percent", "cpu_percent_per_subscriber",
        "us_per_packet", "delay_ms_p50", "delay_ms_p99", "first_frame_ms", "connected_ms",
        "late_join_first_frame_ms", "delivered_ratio", "memory_mib_per_subscriber",
        "publisher_kbps", "sfu_loop_lag_ms_p99", "sfu_loop_lag_own_ms_p99", "sfu_cpu_wait_percent",
    )  # fmt: skip
    if repeat > 1:
        columns = ("repetition", *columns)
    typer.echo("  ".join(f"{c:>12}" for c in columns))

    def print_run(run: dict[str, Any]) -> None:
        typer.echo("  ".join(f"{run.get(c)!s:>12}" for c in columns))

    result = asyncio.run(
        run_bench(
            resolutions=sizes,
            subscribers=counts,
            seconds=seconds,
            sfus=chosen,
            relay_max_subscribers=relay_max_subscribers,
            warm_up=warm_up,
            repeat=repeat,
            on_run=print_run,
            publisher_mode=publisher,
        )
    )
    if repeat > 1:
        typer.echo(f"\n{repeat} 轮的中位数（最小–最大）：")
        typer.echo(_median_table(result["runs"]))
    for skip in result["skipped"]:
        where = f" {skip['resolution']} × {skip['subscribers']}" if "subscribers" in skip else ""
        typer.echo(f"跳过 {skip['sfu']}{where}：{skip['reason']}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, ensure_ascii=False, indent=2))
        typer.echo(f"已写入 {json_path}")


def _settings_problem(error: Any) -> str:
    """One validation error of ``Settings`` named by its environment variable."""
    field = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if not field:
        return message
    name = f"TONGKE_{field.upper()}"
    return message if message.startswith(name) else f"{name}: {message}"


def main() -> None:
    """The ``tongke`` command: a setting that does not validate stops it with one line naming
    the variable (exit 2), not a traceback."""
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        problems = "; ".join(_settings_problem(error) for error in exc.errors())
        typer.secho(f"配置错误：{problems}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
