"""Jinja2 templates from ``templates/``: cloud-init user-data, bootstrap script, mrjob.conf.

In an installed labkit the folder ships as ``labkit.templates``; in a source checkout it
is the top-level ``templates/`` beside the package.
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2


def template_dir() -> Path:
    try:
        import labkit.templates as shipped  # type: ignore[import-not-found]

        return Path(shipped.__file__).parent
    except ImportError:
        return Path(__file__).resolve().parent.parent / "templates"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    # Every roster or config value that reaches a shell goes through this filter.
    env.filters["q"] = lambda value: shlex.quote(str(value))
    return env


def render(name: str, **values: Any) -> str:
    return environment().get_template(name).render(**values)
