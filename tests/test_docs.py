"""The documentation is tested: every ```python block of docs/**/*.md and README.md runs.

* The blocks of one page run in order, in one namespace, in a temporary directory.
* A block made of ``--8<-- "path.py:section"`` lines (pymdownx.snippets) shows source code included
  by section markers, so it cannot go stale: the harness includes it the same way, checks that each
  section exists and is not empty, and compiles it; it is not run (it is the library's own code).
* A block preceded (on the line before its fence) by ``<!-- no-test: reason -->`` is
  compiled but not run; only GPU (CuPy) blocks use it, and the page says so.
* Printed output is checked where the page states it: a ```text block right after a
  python block (blank lines between are allowed) must equal what the block printed;
  otherwise ``# prints: ...`` comments, in order, are the expected lines.
* Pages must not leak state: ``dj.RULES``, NumPy's routes to rules (``dj.register_numpy``) and
  ``dj.config`` are restored after each page.

And ``mkdocs build --strict`` must pass (skipped when mkdocs is not installed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dualjac as dj
from dualjac import numpy_api

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^(?P<indent>\s*)```\s*(?P<lang>[\w+-]*)")
NO_TEST = re.compile(r"<!--\s*no-test:\s*(?P<reason>.+?)\s*-->")
PRINTS = re.compile(r"#\s*prints:\s?(?P<text>.*)$")
SNIPPET = re.compile(r'^\s*-+8<-+\s+"(?P<path>[^":]+)(?::(?P<section>[\w-]+))?"\s*$')
# the Markdown code column of the site is about 100 characters wide: wider lines hide behind a scrollbar
MAX_CODE_WIDTH = 100


@dataclasses.dataclass
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    skip: str | None  # the no-test reason
    expected: str | None = None  # printed output the page states
    included: bool = False  # made of snippet lines: source code included by section marker


def include_snippets(code: str) -> str:
    """Replace ``--8<-- "path:section"`` lines by the section of the file, as pymdownx.snippets does."""
    out = []
    for line in code.splitlines():
        m = SNIPPET.match(line)
        if not m:
            out.append(line)
            continue
        path = ROOT / m["path"]
        assert path.is_file(), f"snippet {m['path']!r} does not exist"
        lines = path.read_text(encoding="utf-8").splitlines()
        if m["section"]:
            marks = [i for i, s in enumerate(lines) if re.search(rf"-+8<-+ \[(start|end):{m['section']}\]", s)]
            assert len(marks) == 2 and "start" in lines[marks[0]], f"{m['path']}: no section {m['section']!r}"
            lines = lines[marks[0] + 1 : marks[1]]
        assert any(s.strip() for s in lines), f"snippet {m['path']}:{m['section']} is empty"
        out += lines
    return "\n".join(out) + "\n"


def blocks(path: Path) -> list[Block]:
    """Fenced blocks of a Markdown file, with their no-test markers and expected output."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    text_before = ""  # the last non-blank line outside a fence, if it is right before the fence
    gap_is_blank = False  # only blank lines since the previous block closed
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            text_before = lines[i] if lines[i].strip() else ""
            gap_is_blank = gap_is_blank and not lines[i].strip()
            i += 1
            continue
        indent, start, body = len(m["indent"]), i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            line = lines[i]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            i += 1
        i += 1  # past the closing fence
        marker = NO_TEST.search(text_before)
        block = Block(m["lang"], "\n".join(body) + "\n", start + 1, marker["reason"] if marker else None)
        if any(SNIPPET.match(line) for line in body):
            block.code, block.included = include_snippets(block.code), True
        if block.lang == "text" and found and found[-1].lang == "python" and gap_is_blank:
            found[-1].expected = block.code
        found.append(block)
        text_before, gap_is_blank = "", True
    return found


def python_blocks(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.lang in ("python", "py")]


def _expected(block: Block) -> str | None:
    if block.expected is not None:
        return block.expected
    prints = [PRINTS.search(line) for line in block.code.splitlines()]
    prints = [p["text"] for p in prints if p]
    return "\n".join(prints) + "\n" if prints else None


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=[str(p.relative_to(ROOT)) for p in PAGES_WITH_CODE])
def test_page_code_runs_and_prints_what_it_says(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["docs"])
    saved_rules, saved_config = dict(dj.RULES), dataclasses.replace(dj.config)
    saved_routes = [(t, dict(t)) for t in (numpy_api.UFUNCS, numpy_api.FUNCTIONS)]  # dj.register_numpy
    namespace: dict = {"__name__": "__docs__"}
    try:
        for block in python_blocks(page):
            where = f"{page.relative_to(ROOT)}:{block.line}"
            if block.skip or block.included:
                compile(block.code, where, "exec")  # not run, but it must at least be valid Python
                continue
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    exec(compile(block.code, where, "exec"), namespace)  # noqa: S102
            except Exception as e:
                raise AssertionError(f"the code block at {where} raised {type(e).__name__}: {e}") from e
            want = _expected(block)
            if want is not None:
                assert _norm(out.getvalue()) == _norm(want), (
                    f"the code block at {where} printed\n{out.getvalue()}\nbut the page says\n{want}"
                )
    finally:
        dj.RULES.clear()
        dj.RULES.update(saved_rules)
        for table, items in saved_routes:
            table.clear()
            table.update(items)
        for f in dataclasses.fields(dj.config):
            setattr(dj.config, f.name, getattr(saved_config, f.name))


# GPU blocks stay skipped. The two others are temporary: the blocks that need parts still being
# written (the torch adapter, the linalg rules); delete their markers once those parts are in.
ALLOWED_SKIPS = ("GPU", "CuPy")


def test_no_test_markers_are_only_for_gpu_blocks():
    for page in PAGES:
        for b in python_blocks(page):
            if b.skip:
                assert any(word in b.skip for word in ALLOWED_SKIPS), (
                    f"{page.relative_to(ROOT)}:{b.line} skipped for {b.skip!r}: only GPU blocks may be"
                    " skipped"
                )


def test_no_code_line_is_wider_than_the_column():
    wide = [
        f"{page.relative_to(ROOT)}:{b.line}: {len(line)} characters: {line.strip()[:60]}..."
        for page in PAGES
        if page.parent != ROOT  # the site's pages (README.md is read on the forge, in a wider column)
        for b in blocks(page)
        for line in b.code.splitlines()
        if len(line) > MAX_CODE_WIDTH
    ]
    assert not wide, f"code lines wider than {MAX_CODE_WIDTH} characters (wrap them):\n" + "\n".join(wide)


def test_snippets_include_real_sections():
    code = include_snippets('--8<-- "dualjac/rules/elementwise.py:sin"\n')
    assert code.strip().startswith('_elementwise("sin"') and "8<" not in code
    with pytest.raises(AssertionError, match="no section"):
        include_snippets('--8<-- "dualjac/rules/elementwise.py:no-such-section"\n')
    with pytest.raises(AssertionError, match="does not exist"):
        include_snippets('--8<-- "dualjac/rules/no_such_file.py:sin"\n')


def _shell_commands(text: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped, split like a shell."""
    import shlex

    lines = text.replace("\\\n", " ").splitlines()
    return [cmd for cmd in (shlex.split(line, comments=True) for line in lines) if cmd]


def _help(*command: str) -> str:
    proc = subprocess.run(
        [sys.executable, *command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_shell_blocks_name_what_exists():
    """Shell blocks are not run (installs, minutes-long benchmarks), but what they name must exist: the
    extras, the modules and files, and every --option of dualjac's and the benchmarks' commands."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    helps: dict[tuple[str, ...], str] = {}
    seen = 0
    for page in PAGES:
        for b in blocks(page):
            if b.lang not in ("bash", "sh", "shell"):
                continue
            for cmd in _shell_commands(b.code):
                where = f"{page.relative_to(ROOT)}:{b.line}: {' '.join(cmd)}"
                seen += 1
                if cmd[:2] == ["pip", "install"]:
                    for arg in cmd[2:]:
                        named = re.search(r"\[([\w,-]+)\]", arg)
                        assert not named or set(named[1].split(",")) <= extras, f"{where}: no such extra"
                elif cmd[:2] == ["python", "-m"]:
                    module = cmd[2]
                    assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
                    if module == "pytest":
                        for arg in cmd[3:]:
                            assert arg.startswith("-") or arg == "logcosh" or (ROOT / arg).exists(), where
                    elif module.startswith("benchmarks"):
                        key = ("-m", module)
                        helps.setdefault(key, _help(*key))
                        for opt in (a.split("=")[0] for a in cmd[3:] if a.startswith("--")):
                            assert opt in helps[key], f"{where}: {module} has no option {opt}"
                elif cmd[0] == "python":
                    assert (ROOT / cmd[1]).is_file(), f"{where}: no file {cmd[1]}"
                elif cmd[0] == "dualjac":
                    key = ("-m", "dualjac", cmd[1])
                    helps.setdefault(key, _help(*key))
                    for opt in (a.split("=")[0] for a in cmd[2:] if a.startswith("--")):
                        assert opt in helps[key], f"{where}: dualjac {cmd[1]} has no option {opt}"
                else:
                    assert cmd[0] in ("mkdocs", "make"), f"{where}: a command the test does not know"
                    if cmd[0] == "make":
                        assert re.search(rf"^{cmd[1]}:", (ROOT / "Makefile").read_text(), re.M), where
    assert seen > 10


def test_the_harness_finds_blocks_markers_and_outputs():
    md = (
        "x\n\n```python\nprint(1)\n```\n\n```text\n1\n```\n\n"
        "<!-- no-test: needs a GPU (CuPy) -->\n```python\nimport cupy\n```\n"
        "```python\nprint(2)  # prints: 2\n```\n"
    )
    path = ROOT / "tests" / "_harness_probe.md"
    try:
        path.write_text(md)
        bs = python_blocks(path)
    finally:
        path.unlink()
    assert [b.code for b in bs] == ["print(1)\n", "import cupy\n", "print(2)  # prints: 2\n"]
    assert [b.skip for b in bs] == [None, "needs a GPU (CuPy)", None]
    assert _expected(bs[0]) == "1\n" and _expected(bs[2]) == "2\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once by ``mkdocs build --strict``; CI (CI=true) fails rather than skip without mkdocs."""
    for mod in ("mkdocs", "material", "mkdocstrings", "latex2mathml"):
        if not _has_module(mod):
            if os.environ.get("CI"):
                pytest.fail(f'{mod} is not installed in CI: the test extra must include the docs tools')
            pytest.skip(f'{mod} is not installed: pip install -e ".[docs]"')
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's banner about MkDocs 2.0
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_mkdocs_build_strict(site):
    assert (site / "index.html").exists()


# What a page loads, as opposed to what it links to: <script src>, <link href> (CSS, fonts, icons),
# <img>/<source>/<iframe> src, and CSS url(...).
REMOTE_ASSET = re.compile(
    r"<(?:script|img|source|iframe|embed)\b[^>]*\bsrc=[\"']?(?:https?:)?//"
    r"|<link\b[^>]*\bhref=[\"']?(?:https?:)?//"
    r"|url\(\s*[\"']?(?:https?:)?//"
    r"|@import\s+[\"']?(?:url\()?[\"']?(?:https?:)?//",
    re.IGNORECASE,
)


def test_the_site_loads_nothing_from_the_network(site):
    files = [p for p in site.rglob("*") if p.suffix in (".html", ".css", ".js")]
    assert any(p.suffix == ".css" for p in files), "the theme's CSS was not found: is this the built site?"
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        hits = [text[max(0, m.start() - 40) : m.end() + 60] for m in REMOTE_ASSET.finditer(text)]
        assert not hits, f"{path.relative_to(site)} loads remote assets (vendor them instead): {hits[:3]}"


def test_remote_asset_pattern_can_fail():
    for html in (
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>',
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">',
        "@font-face{src:url(//fonts.gstatic.com/x.woff2)}",
    ):
        assert REMOTE_ASSET.search(html), html
    for html in ('<a href="https://docs.dask.org">Dask</a>', '<math xmlns="http://www.w3.org/1998/Math/MathML">'):
        assert not REMOTE_ASSET.search(html), html


def test_reference_pages_list_each_object_once(site):
    for html in (site / "reference").rglob("*.html"):
        ids = re.findall(r'id="(dualjac\.[^"]+)"', html.read_text(encoding="utf-8"))
        twice = sorted({i for i in ids if ids.count(i) > 1})
        assert not twice, f"{html.relative_to(site)} documents these twice: {twice}"


def test_math_is_rendered_at_build_time(site):
    """Formulas are MathML in the HTML (no TeX left for a script), in headings and the table of contents too."""
    page = (site / "concepts" / "per-sample" / "index.html").read_text(encoding="utf-8")
    assert "<math" in page
    for html in site.rglob("*.html"):
        text = re.sub(r"<(pre|code)\b.*?</\1>", "", html.read_text(encoding="utf-8"), flags=re.S)
        for raw in ("\\(", "\\[", "$$", "\\frac", "\\varepsilon", "\\cdot"):
            assert raw not in text, f"{html.relative_to(site)} has raw TeX {raw!r}"
    # the heading "Why $K = n$ lanes suffice, not $B \cdot n$" reads as text in the table of contents
    toc = re.search(r'href="#why-kn-lanes-suffice-not-bn" class="md-nav__link">\s*<span[^>]*>\s*([^<]*)', page)
    assert toc and toc[1].strip() == "Why K&#x0003D;n lanes suffice, not B&#x000B7;n", toc and toc[1]


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None
