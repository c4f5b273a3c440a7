"""Self-contained HTML pages for people (the gallery, the dry-run and feedback reports).

Jinja2 with autoescaping on, the one stylesheet (page_templates/style.css) inlined in every
page, charts inlined as SVG: a page needs nothing from the network and reads the same on
paper (the stylesheet has a print section).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from . import __version__
from .markdown import render_inline, render_markdown

TEMPLATES = Path(__file__).resolve().parent / "page_templates"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = render_markdown
    env.filters["md_inline"] = render_inline
    env.globals["stylesheet"] = Markup(  # our own file
        (TEMPLATES / "style.css").read_text(encoding="utf-8")
    )
    env.globals["version"] = __version__
    return env


def render_page(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
