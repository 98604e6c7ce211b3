"""The README's configuration table names every environment variable the code reads."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["brikk", "agents", "coordination", "audit"]
# Variables that configure the command-line client, not the server.
CLIENT_ONLY = {"BRIKK_URL", "BRIKK_API_KEY", "BRIKK_SIGNING_SECRET"}
READERS = re.compile(r"""(?:env_\w+\(\s*|environ(?:\.get)?\(\s*|environ\[\s*|getenv\(\s*)["']([A-Z][A-Z0-9_]+)["']""")


def variables_read_by_the_code() -> set[str]:
    found = set()
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            found.update(READERS.findall(path.read_text()))
    return found - CLIENT_ONLY - {"DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE"}


def test_every_variable_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    table_rows = [line for line in readme.splitlines() if line.startswith("| `")]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", "\n".join(table_rows)))
    variables = variables_read_by_the_code()
    assert len(variables) > 40  # the scan itself works
    assert variables - documented == set()
