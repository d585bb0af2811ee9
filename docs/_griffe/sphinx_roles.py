"""A griffe extension for the API reference: Sphinx roles in docstrings become code spans.

The packages' docstrings name other objects the Sphinx way (``:class:`FlowError```,
``:func:`create```, ``:meth:`OtelHook.end_open_spans```); mkdocstrings renders Markdown, where
those would show up verbatim. Loaded by ``mkdocs.yml`` (``extensions:``); nothing is fetched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj|const):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`name``` (and ``:role:`~name```) to ```name``` in every docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(r"`\1`", obj.docstring.value)
