"""The README's configuration table names every environment variable the code reads."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["brikk", "agents", "coordination", "audit"]
# Variables that configure the command-line client, not the server.
CLIENT_ONLY = {"BRIKK_URL", "BRIKK_API_KEY", "BRIKK_SIGNING_SECRET"}
# \benviron: os.environ, not a WSGI request's environ (gunicorn's post_request reads its CONTENT_LENGTH).
READERS = re.compile(
    r"""(?:env_\w+\(\s*|\benviron(?:\.get)?\(\s*|\benviron\[\s*|getenv\(\s*)["']([A-Z][A-Z0-9_]+)["']"""
)


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


def section(heading: str) -> str:
    """The README's text under ``heading`` up to the next heading of the same or a higher level."""
    readme = (ROOT / "README.md").read_text()
    level = heading.split(" ", 1)[0]
    start = readme.index(f"\n{heading}\n") + len(heading) + 2
    following = re.search(rf"\n#{{1,{len(level)}}} ", readme[start:])
    return readme[start : start + following.start()] if following else readme[start:]


def table_cells(text: str, column: int) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]
    return [row.strip("|").split("|")[column].strip() for row in rows[1:]]


def test_the_error_code_table_lists_exactly_the_registered_codes():
    from brikk.lib.errors import ErrorCode

    codes = [code.strip("`") for code in table_cells(section("### Error codes"), 1)]
    assert sorted(codes) == sorted(code.value for code in ErrorCode)


def test_the_audit_action_table_lists_exactly_the_registered_actions():
    from audit.actions import AuditAction

    cells = table_cells(section("### Audit actions"), 0)
    documented = [action for cell in cells for action in re.findall(r"`([a-z_]+\.[a-z_]+)`", cell)]
    assert sorted(documented) == sorted(action.value for action in AuditAction)


def test_the_layout_tables_match_the_tree_and_the_import_contract():
    layout = section("## Project layout")
    layers = table_cells(layout, 0)[:6]
    paths = [path.strip("`") for path in table_cells(layout, 1)[:6]]
    for path in paths:
        assert (ROOT / path / "__init__.py").is_file(), path
    # Every Python package of the project is in the table, and the table's order is the contract's.
    packages = {f"{path.parent.relative_to(ROOT)}/" for path in ROOT.glob("*/__init__.py")}
    packages |= {f"{path.parent.relative_to(ROOT)}/" for path in (ROOT / "brikk").glob("*/__init__.py")}
    assert packages - {"tests/", "tests/support/", "bench/"} == set(paths)
    contract = (ROOT / ".importlinter").read_text()
    order = [line.strip() for line in contract.split("layers =", 1)[1].split("\n\n", 1)[0].splitlines()[2:]]
    assert [module.replace(".", "/") + "/" for module in order[1:]] == paths[1:]
    assert layers == ["wiring", "dashboard", "coordination", "agents", "audit", "lib"]
    # The concern table names one existing file for each concern.
    concerns = section("## Project layout").split("Where each concern lives", 1)[1]
    for cell in table_cells(concerns, 1):
        for path in re.findall(r"`([a-z_]+/[a-z_/]+\.py)`", cell):
            assert (ROOT / path).is_file(), path


@pytest.mark.django_db
def test_the_metrics_table_lists_exactly_brikks_series():
    """Every brikk_ series the server exposes (counters, histograms, the scrape-time gauges) is documented."""
    from brikk.metrics import exposition

    helped = re.findall(r"^# HELP (brikk_[a-z_]+) ", exposition().decode(), flags=re.MULTILINE)
    exposed = {name for name in helped if not name.endswith("_created")}  # a counter's creation time
    assert {"brikk_inbox_depth", "brikk_inbox_nacks_total", "brikk_inbox_accepted_to_acked_seconds"} <= exposed
    cells = table_cells(section("### Metrics"), 0)
    documented = {name for cell in cells for name in re.findall(r"`(brikk_[a-z_]+)", cell)}
    assert documented == exposed
