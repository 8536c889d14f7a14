"""``python -m bench.drills [--quick] [kill] [db_restart] [sigterm] [chaos]``: run the
failure drills on an embedded PostgreSQL of their own (durable settings) and
print what each counted; exit 1 if any promise failed."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from bench.drills import chaos, db_restart, kill, sigterm
from bench.drills.common import Report
from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.core.migrations import migrate


async def fresh_database(server: LocalPostgres, name: str) -> str:
    import psycopg

    async with await psycopg.AsyncConnection.connect(server.url(), autocommit=True) as conn:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        await conn.execute(f"CREATE DATABASE {name}".encode())
    await migrate(server.url(name))
    return server.url(name)


async def main(drills: list[str], quick: bool, work_dir: Path) -> list[Report]:
    server = LocalPostgres(work_dir / "postgres", settings={"max_connections": "200"})
    server.start()
    reports = []
    try:
        for name in drills:
            log_dir = work_dir / f"logs-{name}"
            print(f"drill {name}: running (logs in {log_dir})", flush=True)
            if name == "kill":
                url = await fresh_database(server, "drill_kill")
                report = await kill.run(url, kill.QUICK if quick else kill.KillDrill(), log_dir)
            elif name == "chaos":
                url = await fresh_database(server, "drill_chaos")
                drill = chaos.QUICK if quick else chaos.ChaosDrill()
                report = await chaos.run(server, url, drill, log_dir)
            elif name == "sigterm":
                url = await fresh_database(server, "drill_sigterm")
                drill = sigterm.QUICK if quick else sigterm.SigtermDrill()
                report = await sigterm.run(url, drill, log_dir)
            else:
                url = await fresh_database(server, "drill_db_restart")
                drill = db_restart.QUICK if quick else db_restart.DbRestartDrill()
                report = await db_restart.run(server, url, drill, log_dir)
            report.print()
            reports.append(report)
    finally:
        server.stop("immediate")
    return reports


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the small versions make test runs")
    parser.add_argument(
        "drills",
        nargs="*",
        default=["kill", "db_restart", "sigterm", "chaos"],
        help="which drills",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="easyclaw-drills-"))
    results = asyncio.run(main(args.drills, args.quick, work))
    sys.exit(1 if any(report.problems for report in results) else 0)
