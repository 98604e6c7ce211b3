"""The Content-Security-Policy (django-csp, brikk/settings.py): scripts and styles from this server only,
no inline code and no eval. The browser suite (tests/dashboard/test_browser.py) checks that Chromium
reports no violation on the dashboard, the admin and /api/docs/."""

import base64
import hashlib
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.template import engines

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def test_dashboard_pages_carry_a_policy_without_inline_code_or_eval(client, owner):
    from django.test import Client

    client.force_login(owner)
    for path in ("/", "/agents/", "/messages/", "/echo/", "/login/", "/api/docs/"):
        response = (Client() if path == "/login/" else client).get(path)
        assert response.status_code == 200, path
        directives = policy(response)
        assert directives["default-src"] == ["'self'"]
        assert directives["script-src"] == ["'self'"], path
        assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
        assert not any("unsafe" in source for sources in directives.values() for source in sources), path


def test_api_docs_are_served_from_our_static_files():
    from django.test import Client

    page = Client().get("/api/docs/").content.decode()
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in src for src in sources)
    assert all(src.startswith("/") for src in sources), sources  # nothing from another host
    assert "<script>" not in page  # the start-up script comes from ?script (SpectacularSwaggerSplitView)


def _inline_style_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@pytest.mark.parametrize("template", list(settings.BRIKK_CSP_STYLE_HASHES))
def test_each_allowed_inline_style_hash_matches_its_template(template):
    source = Path(engines["django"].engine.find_template(template)[0].origin.name).read_text()
    styles = re.findall(r"<style>(.*?)</style>", source, re.S)
    assert len(styles) == 1, template
    assert _inline_style_hash(styles[0]) == settings.BRIKK_CSP_STYLE_HASHES[template]
    assert settings.BRIKK_CSP_STYLE_HASHES[template] in settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["style-src"]


def test_our_templates_hold_no_inline_script_style_handler_or_eval():
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"{name}: inline <script>"
        assert not re.search(r"\sstyle=", text), f"{name}: style attribute"
        assert not re.search(r"\son[a-z]+=|hx-on|hx-vars|js:", text), f"{name}: inline handler or eval"
        assert not re.search(r'hx-trigger="[^"]*\[', text), f"{name}: an htmx trigger filter needs eval"
        if name != "templates/500.html":
            assert "<style" not in text, f"{name}: inline <style>"
