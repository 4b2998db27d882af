"""MkDocs hook: render docstring examples (``>>>`` lines and their output) as code blocks.

The public docstrings carry doctests (run by ``pytest --doctest-modules``). In Markdown a line
starting with ``>>>`` is a nested blockquote, so mkdocstrings would show them as quotes, and read
``[1.0, ...]`` in the output as cross-references. This hook adds a Markdown preprocessor, to the
pages and to mkdocstrings alike, that wraps each run of doctest lines in a ```pycon fence.
"""

from __future__ import annotations

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

FENCE = re.compile(r"^\s*(```|~~~)")


class _DoctestFences(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        in_fence = in_doctest = False
        for line in lines:
            if in_doctest and not line.strip():  # a blank line ends the example
                out += ["```", ""]
                in_doctest = False
            if FENCE.match(line) and not in_doctest:
                in_fence = not in_fence
            elif not in_fence and not in_doctest and line.lstrip().startswith(">>>"):
                indent = line[: len(line) - len(line.lstrip())]
                out += ["", f"{indent}```pycon"]
                in_doctest = True
            out.append(line)
        if in_doctest:
            out.append("```")
        return out


class DoctestFences(Extension):
    def extendMarkdown(self, md):  # noqa: N802 (Markdown's API)
        md.preprocessors.register(_DoctestFences(md), "doctest_fences", 40)  # before superfences (25)


@event_priority(100)  # before mkdocstrings reads the extension list
def on_config(config):
    config.markdown_extensions.append(DoctestFences())
    return config
