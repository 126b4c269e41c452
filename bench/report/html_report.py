"""``bench report RESULTS``: one self-contained HTML page to share a sweep.

The page holds what ``bench table`` prints (the accuracy, efficiency, comparison and time-to-
accuracy tables, the L2-penalty table where there are eval results, with every footnote), every
figure ``bench table`` draws embedded as a base64 PNG, and the provenance the results record:
code versions (git commit, uncommitted changes), devices, package versions, data sources and
when the runs started. It needs nothing else to display: no stylesheet, script or image from
elsewhere, so it can be mailed or attached as it is.

The results are read once and the tables and figures built once
(:func:`bench.report.all_tables.build_tables`); their files are written into a temporary folder,
so the results folder is only read; the page is written atomically (:mod:`core.atomic`) to ``--out``
(default ``RESULTS/report.html``). The Markdown of the tables is the small subset that
:mod:`bench.report.table` writes (headings, pipe tables, bullet lists, paragraphs, ``code``); it is
turned into HTML here, every piece of text escaped.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from bench import __version__
from core.atomic import write_text_atomic

if TYPE_CHECKING:
    from bench.store.result_set import ResultFiles

DEFAULT_NAME = "report.html"
_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
p, li { font-size: 0.9em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
code { background: #f3f3f3; padding: 0 0.2em; }
.scroll { overflow-x: auto; }
"""


# ------------------------------------------------------------------------------ Markdown subset

def _inline(text: str) -> str:
    """Escape ``text`` and render its ``code`` spans and **bold**."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if len(part) >= 2 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            escaped = html.escape(part)
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: Sequence[str]) -> str:
    header, body = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    head = "".join(f"<th>{_inline(c)}</th>" for c in header)
    rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>\n"
                   for row in body)
    return (f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}'
            "</tbody></table></div>\n")


def markdown_to_html(text: str) -> str:
    """HTML of the Markdown subset :mod:`bench.report.table` writes: ``#`` headings, pipe tables (a
    header row, a rule row, body rows), ``- `` bullet lists, paragraphs, inline ``code`` and
    **bold**."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>\n")
            paragraph.clear()

    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            flush()
            i += 1
        elif re.match(r"^#{1,5} ", line):
            flush()
            level = line.index(" ")
            out.append(f"<h{level}>{_inline(line[line.index(' ') + 1:])}</h{level}>\n")
            i += 1
        elif line.lstrip().startswith("|"):
            flush()
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            if len(block) >= 2 and set(block[1].replace("|", "").strip()) <= set("-: "):
                out.append(_table(block))
            else:
                out.append(f"<p>{_inline(' '.join(block))}</p>\n")
        elif line.lstrip().startswith("- "):
            flush()
            items = []
            while i < len(lines) and lines[i].lstrip().startswith("- "):
                items.append(f"<li>{_inline(lines[i].lstrip()[2:])}</li>")
                i += 1
            out.append("<ul>\n" + "\n".join(items) + "\n</ul>\n")
        else:
            paragraph.append(line.strip())
            i += 1
    flush()
    return "".join(out)


# ---------------------------------------------------------------------------------- provenance

def _counted(values: Iterable[str]) -> list[tuple[str, int]]:
    return sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0]))


def provenance_rows(results: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(what, value) lines of the provenance the results record: code versions, devices, CPUs,
    package versions, data, start times and commands, each value with its number of runs."""
    runs = [r for r in results if isinstance(r.get("provenance"), Mapping)]
    prov = [r["provenance"] for r in runs]
    if not prov:
        return [("runs", "none record their provenance")]

    def many(values: Iterable[str]) -> str:
        counted = _counted(values)
        return "; ".join(f"{v} ({n} run{'s' if n > 1 else ''})" for v, n in counted)

    def code(p: Mapping[str, Any]) -> str:
        sha = p.get("git_sha")
        if not sha:
            return "unknown (not run from a git checkout)"
        dirty = p.get("git_dirty")
        return f"{sha}" + (" with uncommitted changes" if dirty else "" if dirty is False
                           else ", changes unknown")

    def device(p: Mapping[str, Any]) -> str:
        count = int(p.get("device_count", 1) or 1)
        return f"{p.get('device', '?')} ({p.get('device_type', '?')})" + (
            f" x{count}" if count > 1 else "")

    packages: dict[str, list[str]] = {}
    for p in prov:
        for name, version in sorted((p.get("packages") or {}).items()):
            packages.setdefault(name, []).append(str(version))
    starts = sorted(str(p.get("started_at")) for p in prov if p.get("started_at"))
    data = [r.get("data") for r in runs]
    rows = [("runs", f"{len(runs)} ({sum(1 for r in runs if r.get('status') == 'ok')} "
                     "finished)"),
            ("code version (git commit)", many(code(p) for p in prov)),
            ("devices", many(device(p) for p in prov)),
            ("CPUs", many(str(p.get("cpu", "?")) for p in prov))]
    rows += [(f"package {name}", many(versions)) for name, versions in sorted(packages.items())]
    if not packages:
        rows.append(("packages", "not recorded (results written before package versions were "
                                 "recorded)"))
    rows.append(("data", many(
        f"{d.get('name')}: {d.get('source')} (fingerprint {str(d.get('fingerprint'))[:12]})"
        if isinstance(d, Mapping) else "not recorded (schema /1 result)" for d in data)))
    if starts:
        rows.append(("started", starts[0] if starts[0] == starts[-1]
                     else f"{starts[0]} to {starts[-1]}"))
    commands = _counted(str(p.get("command")) for p in prov if p.get("command"))
    for command, n in commands[:10]:
        rows.append(("command", f"{command} ({n} run{'s' if n > 1 else ''})"))
    if len(commands) > 10:
        rows.append(("command", f"... and {len(commands) - 10} more"))
    return rows


def _provenance_html(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>\n"
                   for k, v in rows)
    return f'<div class="scroll"><table>\n<tbody>\n{body}</tbody></table></div>\n'


# -------------------------------------------------------------------------------------- page

def _figure_html(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    name = html.escape(path.name)
    return (f'<figure id="{name}"><img src="data:image/png;base64,{data}" alt="{name}">'
            f"<figcaption>{name}</figcaption></figure>\n")


def render(folder: Path, tables_markdown: str, figures: Sequence[Path],
           results: Sequence[Mapping[str, Any]], generated: str) -> str:
    """The page: title, the tables and their footnotes, the figures, the provenance."""
    title = f"bridgebench report: {Path(folder).resolve().name}"
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n",
        f"<h1>{html.escape(title)}</h1>\n",
        f"<p>Results folder <code>{html.escape(str(Path(folder).resolve()))}</code>; page made "
        f"{html.escape(generated)} by bridgebench {html.escape(__version__)} "
        "(<code>python -m bench report</code>). Tables, footnotes and figures are those of "
        "<code>python -m bench table</code> on the same folder.</p>\n",
        '<nav><ul><li><a href="#tables">Tables</a></li><li><a href="#figures">Figures</a></li>'
        '<li><a href="#provenance">Provenance</a></li></ul></nav>\n',
        '<section id="tables">\n', markdown_to_html(tables_markdown), "</section>\n",
        '<section id="figures">\n<h2>Figures</h2>\n',
        "".join(_figure_html(p) for p in figures) or "<p>No figures (nothing to draw).</p>\n",
        "</section>\n",
        '<section id="provenance">\n<h2>Provenance</h2>\n',
        "<p>As the run results record it; each value with the number of runs that "
        "recorded it.</p>\n",
        _provenance_html(provenance_rows(results)), "</section>\n</body>\n</html>\n"]
    return "".join(parts)


def _figure_order(path: Path) -> tuple[int, str]:
    order = ("figure2", "device_hours", "learning_curves", "l2_penalty")
    rank = next((i for i, prefix in enumerate(order) if path.name.startswith(prefix)),
                len(order))
    return rank, path.name


def write_report(folder: Path | ResultFiles, out: Path, options: Any = None,
                 strict: bool = False) -> Path:
    """Write the report of the results under ``folder`` (or of the files already found there,
    :func:`bench.store.result_set.find_result_files`) to ``out``; returns ``out``. The results
    are read once (:func:`bench.store.result_set.load_result_set`) and the tables built once
    (:func:`bench.report.all_tables.build_tables`): their files are written into a temporary
    folder, so the results folder is only read."""
    # start-up: build_parser imports this module for add_arguments; the tables pull in
    # pandas, matplotlib and every method
    from bench.report.all_tables import build_tables
    from bench.store.result_set import load_result_set

    result_set = load_result_set(folder)
    tables = build_tables(result_set, strict=strict, paired=options)
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch:
        tables.write(Path(scratch))
        figures = sorted(Path(scratch).glob("*.png"), key=_figure_order)
        page = render(result_set.folder, tables.text(written=True), figures,
                      result_set.results, generated)
    write_text_atomic(out, page)
    return Path(out)
