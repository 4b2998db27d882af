"""MkDocs hook: render the pages' TeX to MathML at build time, so math needs no script, font or network.

``pymdownx.arithmatex`` finds the math (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``); this hook swaps
its two processors for subclasses that emit MathML from ``latex2mathml`` (pure Python, MIT) instead of TeX
for a browser script to typeset. Every current browser renders MathML Core natively. The MathML goes through
Markdown's HTML stash, so the table of contents and the search index see the formula's text (``K = n``),
not raw TeX.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as etree

from latex2mathml.converter import convert
from markdown import Extension
from mkdocs.plugins import event_priority
from pymdownx.arithmatex import ArithmatexExtension, BlockArithmatexProcessor, InlineArithmatexPattern

# latex2mathml keeps the backslash of an escaped underscore inside \texttt{...} and \text{...}.
_ESCAPED_UNDERSCORE = re.compile(r"\\_")


def to_mathml(tex: str, display: bool) -> str:
    """MathML for one formula (``display`` for a block of its own)."""
    return convert(_ESCAPED_UNDERSCORE.sub("_", tex.strip()), display="block" if display else "inline")


class _Inline(InlineArithmatexPattern):
    def __init__(self, pattern, config, md):
        super().__init__(pattern, config)
        self.md = md

    def handleMatch(self, m, data):  # noqa: N802 (Markdown's API)
        el, start, end = super().handleMatch(m, data)
        if isinstance(el, str):  # an escaped dollar: plain text
            return el, start, end
        tex = el.text[len(r"\(") : -len(r"\)")]  # generic mode wraps the TeX in \( \)
        return self.md.htmlStash.store(to_mathml(tex, display=False)), start, end


class _Block(BlockArithmatexProcessor):
    def __init__(self, pattern, config, md):
        super().__init__(pattern, config, md)
        self.md = md

    def generic_output(self, parent, math):
        el = etree.SubElement(parent, self.block_tag, {"class": "arithmatex"})
        el.text = self.md.htmlStash.store(to_mathml(math, display=True))


class MathML(Extension):
    def extendMarkdown(self, md):  # noqa: N802 (Markdown's API)
        arithmatex = next(e for e in md.registeredExtensions if isinstance(e, ArithmatexExtension))
        config = arithmatex.getConfigs()
        assert config["generic"], "mkdocs.yml: pymdownx.arithmatex needs generic: true"
        inline = md.inlinePatterns["arithmatex-inline"]
        block = md.parser.blockprocessors["arithmatex-block"]
        # Registering under the same name and priority replaces arithmatex's processors.
        md.inlinePatterns.register(_Inline(inline.pattern, config, md), "arithmatex-inline", 189.9)
        md.parser.blockprocessors.register(_Block(block.pattern.pattern, config, md), "arithmatex-block", 79.9)


@event_priority(100)  # before mkdocstrings reads the extension list
def on_config(config):
    config.markdown_extensions.append(MathML())
    return config
