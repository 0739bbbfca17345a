"""The Jinja2 environment for the XHTML templates: autoescape on, XML-invalid characters removed
from every value, and helpers the templates use."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup

from . import formatters as fmt
from . import timing

TEMPLATES = Path(__file__).with_name("templates")
XHTML = "application/xhtml+xml; charset=utf-8"


def _finalize(value):
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return fmt.xml_text(value)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("xhtml", "svg"), default_for_string=True, default=True),
        finalize=_finalize, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        auto_reload=False)
    env.filters["query"] = lambda d: urlencode({k: fmt.xml_text(v) for k, v in d.items() if v not in (None, "")})
    env.filters["human_bytes"] = fmt.human_bytes
    env.filters["exact"] = fmt.exact
    env.filters["duration"] = fmt.human_duration
    return env


class Renderer:
    def __init__(self):
        self.env = environment()

    def page(self, name: str, **context) -> str:
        with timing.timed("render"):
            return self.env.get_template(name).render(**context)
