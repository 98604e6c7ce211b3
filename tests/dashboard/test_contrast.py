"""WCAG AA contrast of the dashboard palette, computed from the CSS custom properties themselves."""

import re
from pathlib import Path

import pytest
from django.conf import settings

CSS = Path(settings.BASE_DIR) / "static" / "css" / "dashboard.css"

# (text, background) pairs the stylesheet actually uses for text.
TEXT_PAIRS = [
    ("--text", "--bg"),
    ("--text", "--surface"),
    ("--text", "--surface-2"),
    ("--text-muted", "--bg"),
    ("--text-muted", "--surface"),
    ("--text-muted", "--surface-2"),
    ("--link", "--bg"),
    ("--link", "--surface"),
    ("--on-accent", "--accent"),
    ("--on-accent", "--accent-hover"),
    ("--on-danger", "--danger-strong"),
    ("--success", "--success-bg"),
    ("--warning", "--warning-bg"),
    ("--danger", "--danger-bg"),
    ("--info", "--info-bg"),
    ("--neutral", "--neutral-bg"),
    ("--success", "--surface"),
    ("--warning", "--surface"),
    ("--danger", "--surface"),
    ("--danger", "--bg"),
    ("--text", "--success-bg"),
    ("--text", "--warning-bg"),
    ("--text", "--danger-bg"),
    ("--text", "--info-bg"),
]


def palette() -> dict[str, str]:
    root = re.search(r":root\s*{(.*?)}", CSS.read_text(), re.S).group(1)
    return dict(re.findall(r"(--[\w-]+):\s*(#[0-9a-fA-F]{6})\s*;", root))


def luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_formula_matches_known_values():
    assert contrast("#ffffff", "#000000") == pytest.approx(21.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize(("text", "background"), TEXT_PAIRS)
def test_text_colours_meet_wcag_aa(text, background):
    colours = palette()
    ratio = contrast(colours[text], colours[background])
    assert ratio >= 4.5, f"{text} on {background}: {ratio:.2f}:1 is below 4.5:1"
