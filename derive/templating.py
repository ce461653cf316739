"""Jinja2 environment over templates/: StrictUndefined, trimmed blocks.

Contract. ``render(name, **context)`` renders ``templates/<name>``. Templates
ship inside the wheel as the package ``derive.templates`` (pyproject maps the
top-level templates/ folder there); from a source checkout they are read from
templates/ beside the package. A missing variable is an error, never an empty
string.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import jinja2


def _template_text(name: str) -> str:
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "templates" / name).is_file():
        # a source checkout reads its own templates (an editable install's
        # derive.templates may map to another checkout: a git worktree's)
        return (checkout / "templates" / name).read_text("utf-8")
    try:
        root = resources.files("derive.templates")
        candidate = root.joinpath(name)
        if candidate.is_file():
            return candidate.read_text("utf-8")
    except ModuleNotFoundError:
        pass
    path = Path(__file__).resolve().parent.parent / "templates" / name
    return path.read_text("utf-8")


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: (_template_text(name), None, lambda: True)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(name: str, **context) -> str:
    return environment().get_template(name).render(**context)
