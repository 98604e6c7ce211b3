"""`make run` as a new user meets it: the URL it prints is the one it serves, the hints it prints work
when pasted as printed, and running it again keeps the demo password (and so everyone's session)."""

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shell(command: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def test_make_run_prints_its_real_url_and_hints_that_work_as_printed(tmp_path):
    # A user's shell: none of the test run's settings, the demo database in a place of its own.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "BRIKK_"))}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    env["BRIKK_SQLITE_PATH"] = str(tmp_path / "demo.sqlite3")

    plan = shell("make -n run PORT=8390", env)
    assert plan.returncode == 0, plan.stderr
    commands = plan.stdout.splitlines()
    migrate = next(line for line in commands if "manage.py migrate" in line)
    seed = next(line for line in commands if "manage.py seed_demo" in line)
    serve = next(line for line in commands if "manage.py runserver" in line)
    assert serve.endswith("runserver 127.0.0.1:8390")

    assert shell(migrate, env).returncode == 0
    first = shell(seed, env)
    assert first.returncode == 0, first.stderr
    assert "Log in at http://127.0.0.1:8390/" in first.stdout
    password = re.search(r"password: (\S+)", first.stdout).group(1)

    second = shell(seed, env)  # `make run` again
    assert second.returncode == 0, second.stderr
    assert "password: unchanged" in second.stdout and password not in second.stdout
    hints = [line.strip() for line in second.stdout.splitlines() if "manage.py" in line]
    assert len(hints) == 2, second.stdout
    rotate, reset = (next(h for h in hints if word in h) for word in ("rotate_key", "--reset-password"))

    check = (
        "import django; django.setup(); from django.contrib.auth import authenticate; "
        f"print(authenticate(username='demo', password={password!r}) is not None)"
    )
    kept = shell(f'DJANGO_DEBUG=true DJANGO_SETTINGS_MODULE=brikk.settings .venv/bin/python -c "{check}"', env)
    assert kept.stdout.strip() == "True", kept.stderr

    rotated = shell(rotate, env)  # pasted as printed
    assert rotated.returncode == 0, rotated.stderr
    assert re.search(r"API key: brk_\S+", rotated.stdout)
    renewed = shell(reset, env)
    assert renewed.returncode == 0, renewed.stderr
    assert re.search(r"password: (\S+)", renewed.stdout).group(1) != password
    assert "Log in at http://127.0.0.1:8390/" in renewed.stdout
