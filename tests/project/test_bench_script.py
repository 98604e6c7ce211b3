"""The benchmark script runs end to end at a tiny scale (gunicorn on the real PostgreSQL and Redis) and writes
its figures. This checks the script works, not how fast anything is: the figures are the script's job."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH_PORT = "8119"


@pytest.mark.pg_redis
def test_benchmark_runs_both_scenarios_and_writes_its_figures(tmp_path):
    output = tmp_path / "latest.json"
    done = subprocess.run(
        [sys.executable, "bench/echo_benchmark.py", "--port", BENCH_PORT, "--requests", "60", "--warmup", "5"]
        + ["--concurrency", "3", "--duration", "20", "--output", str(output)],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "echo/bare throughput ratio" in done.stdout
    assert "BRIKK_RATE_LIMIT_AGENT_PER_MINUTE" in done.stdout
    report = json.loads(output.read_text())
    for name in ("bare", "echo"):
        figures = report["results"][name]
        assert figures["requests"] == 60
        assert figures["errors"] == 0
        assert figures["throughput_rps"] > 0
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert report["echo_to_bare_ratio"] == pytest.approx(
        report["results"]["echo"]["throughput_rps"] / report["results"]["bare"]["throughput_rps"], abs=0.001
    )
    # The seeded agent's secrets are used, never reported.
    assert "brk_" not in output.read_text()
    assert "brk_" not in done.stdout


@pytest.mark.pg_redis
def test_profile_script_times_the_echo_and_its_steps(tmp_path):
    stats = tmp_path / "echo.pstats"
    done = subprocess.run(
        [sys.executable, "bench/echo_profile.py", "--requests", "5", "--warmup", "2", "--cprofile", str(stats)],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "signed echo" in done.stdout
    steps = dict(
        (line.split()[1], float(line.split()[0]))
        for line in done.stdout.splitlines()
        if line.startswith("  ") and line.split()[0].replace(".", "").isdigit() and len(line.split()) == 2
    )
    # Every default step ran on each echo (a step that never ran would show 0.000).
    assert steps["coordination.echo.submit_echo"] > 0
    assert steps["coordination.echo_statement.deliver"] > 0  # the echo's one statement (PostgreSQL)
    assert steps["audit.services.announce"] > 0
    assert stats.stat().st_size > 0
    assert "brk_" not in done.stdout
