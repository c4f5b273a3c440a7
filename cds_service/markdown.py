"""Card Markdown to HTML, for every page a person reads (the gallery and the reports).

One renderer, markdown-it-py with the CommonMark preset plus tables and strikethrough (what
GitHub-flavoured card details use), **raw HTML off**: a `<script>` written in a template or a
record comes out as text. Links keep markdown-it's own URL check (no `javascript:`, `data:`,
`file:`); absolute links open in a new tab without handing over the opener.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup


def _link_open(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    href = str(token.attrGet("href") or "")
    if href.startswith(("https://", "http://")):
        token.attrSet("target", "_blank")
        token.attrSet("rel", "noopener noreferrer")
    return self.renderToken(tokens, idx, options, env)


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("link_open", _link_open)
    return md


def render_markdown(text: str) -> Markup:
    """Block Markdown (a card detail) as safe HTML."""
    return Markup(_parser().render(text))  # markdown-it escaped it; raw HTML is off


def render_inline(text: Any) -> Markup:
    """One line of Markdown (e.g. a Markdown-escaped fact value) as safe inline HTML."""
    return Markup(_parser().renderInline(str(text)))
