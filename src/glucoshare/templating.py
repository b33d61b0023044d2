"""One way to load the Jinja2 templates that ship inside the package (works installed as a wheel)."""

from __future__ import annotations

from functools import cache
from importlib import resources

import jinja2


@cache
def templates(package: str) -> jinja2.Environment:
    """The autoescaping Jinja2 environment of ``package``'s ``templates`` folder (strict undefined)."""
    folder = resources.files(package) / "templates"
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: (folder / name).read_text(encoding="utf-8")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
