"""The HTML report: one self-contained page, opened in real headless Chromium.

Screenshots land in ``artifacts/`` (ignored by git) for people to look at.
Chromium comes from Debian's ``chromium`` package, which ``make test``
installs; without it these tests skip, except in CI, where they fail.
"""

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from padiff_graph.cli import main

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Elements(HTMLParser):
    """Every element's tag and attributes, in document order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))

    def having(self, tag: str | None = None, **wanted: str) -> list[dict[str, str]]:
        """Attributes of the elements with this tag and attributes (``class_`` means one of the classes)."""
        result = []
        for name, attrs in self.found:
            if tag is not None and name != tag:
                continue
            classes = attrs.get("class", "").split()
            if all(
                value in classes if key == "class_" else attrs.get(key.replace("_", "-")) == value
                for key, value in wanted.items()
            ):
                result.append(attrs)
        return result


def chromium(url: str, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: make test installs Debian's chromium package")
        pytest.skip("chromium is not installed (make test installs it: apt-get install chromium)")
    profile = tmp_path / "chromium-profile"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # the page must need no network at all
        f"--user-data-dir={profile}",
        *flags,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def diff_page(tmp_path_factory) -> Path:
    page = tmp_path_factory.mktemp("html") / "report.html"
    result = CliRunner().invoke(
        main, ["diff", f"{EX}/gelu_fault.py:base", f"{EX}/gelu_fault.py:raw", "--html", str(page), "--quiet"]
    )
    assert result.exit_code == 1 and result.output == ""
    return page


def test_the_page_is_self_contained_and_embeds_the_json_document(diff_page) -> None:
    text = diff_page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "the page must not fetch anything"
    assert "<link" not in text and "@import" not in text
    assert Elements(text).having("script", id="padiff-data")
    data = json.loads(text.split('id="padiff-data" type="application/json">', 1)[1].split("</script>", 1)[0])
    assert data["kind"] == "diff" and data["first_divergence"]["base"] == "mlp.act"


def test_chromium_shows_both_trees_and_the_marked_layer(diff_page, tmp_path) -> None:
    dom = Elements(chromium(diff_page.as_uri(), tmp_path, "--dump-dom").stdout)
    assert dom.having(id="tree-base") and dom.having(id="tree-raw")
    assert [body.get("data-ready") for body in dom.having(class_="diff")] == ["1"], "the page's script ran"
    base_rows = [a for a in dom.having(class_="row") if a["id"].startswith("b-")]
    raw_rows = [a for a in dom.having(class_="row") if a["id"].startswith("r-")]
    assert {a["data-path"] for a in base_rows} >= {"", "embed", "mlp", "mlp.fc1", "mlp.act", "mlp.fc2", "norm"}
    assert [a["data-path"] for a in base_rows if "diverged" in a["class"].split()] == ["mlp.act"]
    assert [a["data-path"] for a in raw_rows if "diverged" in a["class"].split()] == ["mlp.act"]
    assert len(dom.having("path", class_="link")) == 7 and len(dom.having("path", class_="diverged")) == 1
    assert dom.having(id="first-divergence-line")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-diff.png"
    chromium(diff_page.as_uri(), tmp_path, "--window-size=1400,1000", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_chromium_renders_a_check_page_with_unmatched_layers(tmp_path) -> None:
    page = tmp_path / "check.html"
    result = CliRunner().invoke(
        main, ["check", f"{EX}/extra_layer.py:base", f"{EX}/extra_layer.py:raw", "--html", str(page), "-q"]
    )
    assert result.exit_code == 1 and result.output == ""
    dom = Elements(chromium(page.as_uri(), tmp_path, "--dump-dom").stdout)
    unmatched = [a["data-path"] for a in dom.having(class_="unmatched") if a.get("data-path") is not None]
    assert unmatched == ["aux_head"]
    assert dom.having(class_="finding") and dom.having(id="verdict")
    ARTIFACTS.mkdir(exist_ok=True)
    chromium(page.as_uri(), tmp_path, "--window-size=1400,900", f"--screenshot={ARTIFACTS / 'report-check.png'}")
