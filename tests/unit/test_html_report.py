"""``bench report``: one self-contained HTML page with every table, figure, footnote and the
provenance, parsed back with the standard library's HTML parser (the headless-browser check is
``checks/browser``, ``tox -e browser``)."""
from __future__ import annotations

import base64
import io
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.image import imread

from bench.commands.main import main
from bench.report.html_report import markdown_to_html, provenance_rows
from bench.store.results import read_result

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class Page(HTMLParser):
    """Tables (their header cells), images (alt, src), headings and any external reference."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[str]] = []
        self.images: list[dict[str, str]] = []
        self.headings: list[str] = []
        self.external: list[str] = []
        self._in: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        if tag in ("th", "h2", "h3"):
            self._in, self._text = tag, ""
        if tag == "img":
            self.images.append(attrs)
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)
        if tag in ("script", "link", "iframe"):
            self.external.append(tag)

    def handle_data(self, data):
        if self._in:
            self._text += data

    def handle_endtag(self, tag):
        if tag == self._in == "th" and self.tables:
            self.tables[-1].append(self._text.strip())
        elif tag == self._in:
            self.headings.append(self._text.strip())
        if tag == self._in:
            self._in = None


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, Page]:
    folder = tmp_path_factory.mktemp("report") / "results"
    shutil.copytree(FIXTURES / "results", folder)
    shutil.copytree(FIXTURES / "l2" / "evals", folder / "evals")
    out = folder.parent / "shared" / "page.html"
    out.parent.mkdir()
    assert main(["report", str(folder), "--out", str(out)]) == 0
    parsed = Page()
    parsed.feed(out.read_text(encoding="utf-8"))
    return out, parsed


def test_every_table_is_on_the_page(page):
    _, parsed = page
    headings = parsed.headings
    for name in ("Test accuracy (%), 95% confidence intervals", "Training cost",
                 "Paired comparison with MTL", "Figures", "Provenance"):
        assert name in headings, headings
    assert any(h.startswith("Test accuracy (%) against the L2 penalty") for h in headings)
    def has(*names: str) -> bool:
        return any(all(n in table for n in names) for table in parsed.tables)

    assert has("method", "protocol", "glyphs 5-way 1-shot", "variant")  # accuracy
    assert has("speed-up vs MetaOptNet (train)", "speed-up vs MetaOptNet (run)")  # efficiency
    assert has("method", "baseline", "difference [95% CI]", "verdict")  # comparison
    assert has("code version (git commit)", "devices", "data")  # provenance
    assert len(parsed.tables) >= 6  # and time to accuracy, the L2 table, its paired table


def test_every_figure_is_embedded_and_decodes(page):
    out, parsed = page
    names = [image["alt"] for image in parsed.images]
    assert names == ["figure2.png", "device_hours.png", "l2_penalty.png"]
    for image in parsed.images:
        assert image["src"].startswith("data:image/png;base64,")
        pixels = imread(io.BytesIO(base64.b64decode(image["src"].split(",", 1)[1])),
                        format="png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert parsed.external == []  # self-contained: nothing fetched from elsewhere
    text = out.read_text(encoding="utf-8")
    assert "± over two or more seeds" in text and "Timing rule:" in text  # footnotes


def test_provenance_names_code_devices_and_packages():
    result = dict(read_result(FIXTURES / "results" / "runs" / "mtl_mini_5w5s_quick_seed0.json"))
    result["provenance"] = {**result["provenance"], "git_sha": "abc123", "git_dirty": True,
                            "packages": {"torch": "2.14.1"}}
    rows = dict(provenance_rows([result, result]))
    assert rows["code version (git commit)"] == "abc123 with uncommitted changes (2 runs)"
    assert rows["devices"] == "NVIDIA fixture GPU (cuda) (2 runs)"
    assert rows["package torch"] == "2.14.1 (2 runs)"


def test_markdown_tables_lists_and_text_are_escaped():
    html = markdown_to_html("## A <b>\n\n| x | y |\n|---|---|\n| 1 & 2 | `c<d` |\n\n- one\n"
                            "- two\n\nplain *text*")
    assert "<h2>A &lt;b&gt;</h2>" in html
    assert "<td>1 &amp; 2</td><td><code>c&lt;d</code></td>" in html
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in html and "<p>plain *text*</p>" in html


@pytest.mark.parametrize("problem", ["missing", "empty", "out is a folder"])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys, problem):
    folder = tmp_path / "results"
    args = ["report", str(folder)]
    if problem != "missing":
        folder.mkdir()
    if problem == "out is a folder":
        shutil.copytree(FIXTURES / "results" / "runs", folder / "runs")
        args += ["--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert not (folder / "report.html").exists()
