"""``bench/`` never names a method or a dataset: what it needs to know about one, the method
class or the dataset's registry entry declares (display name, batch-norm treatment, budgets,
augmentation, channels, ...). This test parses every Python file of ``bench/`` and fails on any
registered name, alias, display name or benchmark id used as a string or an identifier;
comments, docstrings and argparse ``help``/``description`` texts may mention them (they
explain, they do not decide).

Exempt: ``bench/theory/``, whose "MTL" and "ANIL" are the kernel predictors F_MTL and F_ANIL of
the paper's Section 4 (closed forms and tiny trained networks on synthetic regression), not
registry lookups: it never builds a registered method or dataset. Shell scripts (the prepared
GPU script) are usage examples and are not scanned; the reference CSV is data.
"""
import ast
import re
from pathlib import Path

from datasets import DATASETS
from methods import METHODS

BENCH = Path(__file__).resolve().parents[2] / "bench"
EXEMPT = {BENCH / "theory"}


def forbidden_words() -> set[str]:
    words: set[str] = set()
    for name in METHODS.names():
        cls = METHODS.get(name)
        words |= {name, cls.display_name, *METHODS.aliases_of(name)}
    for name in DATASETS.names():
        words |= {name, DATASETS.get(name).benchmark, *DATASETS.aliases_of(name)}
    return words


def pattern(words: set[str]) -> re.Pattern:
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9_])(?:{alternatives})(?![A-Za-z0-9_])")


PROSE_KEYWORDS = {"help", "description", "epilog"}
PROSE_NAMES = {"HELP"}  # bench/commands/*: the subcommand's line in `python -m bench --help`


def prose(tree: ast.AST) -> set[int]:
    """Docstrings (module, class, function, attribute) and argparse help texts (``help=``
    keywords, a subcommand module's ``HELP``)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in PROSE_KEYWORDS:
            ids |= {id(part) for part in ast.walk(node.value)}
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in PROSE_NAMES
                                                for t in node.targets):
            ids |= {id(part) for part in ast.walk(node.value)}  # a subcommand's help line
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                ids.add(id(body[0].value))
        # attribute docstrings: a bare string right after an assignment
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if isinstance(stmts, list):
                for before, stmt in zip(stmts, stmts[1:]):
                    if isinstance(before, (ast.Assign, ast.AnnAssign)) and \
                            isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                        ids.add(id(stmt.value))
    return ids


def names_used(source: str, regex: re.Pattern) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    skip = prose(tree)
    hits = []
    for node in ast.walk(tree):
        texts: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            texts.append(node.value)
        elif isinstance(node, ast.Name):
            texts.append(node.id)
        elif isinstance(node, ast.Attribute):
            texts.append(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            texts.append(node.name)
        elif isinstance(node, ast.arg):
            texts.append(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            texts.append(node.arg)
        elif isinstance(node, ast.alias):
            texts += [node.name, node.asname or ""]
        for text in texts:
            for match in regex.finditer(text):
                hits.append((getattr(node, "lineno", 0), match.group(0)))
    return hits


def bench_files() -> list[Path]:
    return [p for p in sorted(BENCH.rglob("*.py"))
            if not any(p.is_relative_to(folder) for folder in EXEMPT)]


def test_bench_names_no_method_and_no_dataset():
    regex = pattern(forbidden_words())
    found = [f"{path.relative_to(BENCH.parent)}:{line}: {word!r}"
             for path in bench_files() for line, word in names_used(path.read_text(), regex)]
    assert not found, "bench/ names methods or datasets:\n" + "\n".join(found)


def test_the_check_sees_strings_and_identifiers_but_not_comments_or_docstrings():
    regex = pattern({"mtl", "MetaOptNet", "mini-imagenet"})
    source = '''"""Module docstring about mtl."""
x = 1
"""Attribute docstring: MetaOptNet."""


def f(mtl):  # a comment on mtl
    """Docstring: mini-imagenet."""
    parser.add_argument("--x", help=f"like mtl {x}")
    return {"key": "MetaOptNet", "other": f"{mtl}-mini-imagenet", "mtl_p": 0}
'''
    assert sorted(word for _, word in names_used(source, regex)) == [
        "MetaOptNet", "mini-imagenet", "mtl", "mtl"]
    assert len(bench_files()) > 20 and forbidden_words() >= {"mtl", "maml", "glyphs", "mini"}
