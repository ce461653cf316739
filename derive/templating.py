"""Jinja2 environment over templates/: StrictUndefined, trimmed blocks.

Contract. ``render(name, **context)`` renders ``templates/<name>``. Templates
ship inside the wheel as the package ``derive.templates`` (pyproject maps the
top-level templates/ folder there); from a source checkout they are read from
templates/ beside the package first. A missing variable is an error, never an empty
string.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import jinja2


def _template_text(name: str) -> str:
    # a source checkout (or git worktree) reads its own templates, even when an
    # editable install of another checkout maps ``derive.templates`` elsewhere
    checkout = Path(__file__).resolve().parent.parent
    beside = checkout / "templates" / name
    if (checkout / "pyproject.toml").is_file() and beside.is_file():
        return beside.read_text("utf-8")
    try:
        root = resources.files("derive.templates")
        candidate = root.joinpath(name)
        if candidate.is_file():
            return candidate.read_text("utf-8")
    except ModuleNotFoundError:
        pass
    return beside.read_text("utf-8")


def template_texts() -> dict[str, str]:
    """Every template's name and text, as :func:`render` reads them (for cache keys)."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "templates").is_dir():
        names = [p.name for p in (checkout / "templates").glob("*.j2")]
    else:
        names = [p.name for p in resources.files("derive.templates").iterdir() if p.name.endswith(".j2")]
    return {name: _template_text(name) for name in sorted(names)}


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


def warm() -> None:
    """Compile every template now (a build's parent process, before forking its
    workers: each inherits them compiled instead of compiling its own)."""
    for name in template_texts():
        environment().get_template(name)


def render(name: str, **context) -> str:
    return environment().get_template(name).render(**context)
