"""A griffe extension for the API reference: Sphinx markup in docstrings becomes Markdown.

The packages' docstrings name other objects the Sphinx way (``:class:`FlowError```,
``:func:`create```, ``:meth:`OtelHook.end_open_spans```) and introduce an indented example with
a paragraph ending in ``::``; mkdocstrings renders Markdown, where the roles would show up
verbatim and the ``::`` doubled (the indented block is already a code block in Markdown).
Loaded by ``mkdocs.yml`` (``extensions:``); nothing is fetched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj|const):`~?([^`]+)`")
# "text::" ends a paragraph that introduces a literal block: Sphinx shows "text:". A line that is
# only "::" shows nothing. A lone Google section name ("Example::") is left alone: as "Example:"
# it would open a section and the code would lose its indentation.
LITERAL_INTRO = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)
LONE_LITERAL = re.compile(r"^[ \t]*::[ \t]*$", re.MULTILINE)
SECTION_NAME = re.compile(
    r"[ \t]*(?:Examples?|Notes?|Warnings?|Usage|Attributes|Args|Returns|Yields|Raises)::[ \t]*$"
)


def _literal_intro(match: re.Match[str]) -> str:
    line_start = match.string.rfind("\n", 0, match.start()) + 1
    if SECTION_NAME.match(match.string, line_start):
        return match.group()
    return ":"


class SphinxRoles(griffe.Extension):
    """In every docstring: ``:role:`name``` (and ``:role:`~name```) to ```name```, ``text::`` to
    ``text:``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = ROLE.sub(r"`\1`", obj.docstring.value)
            text = LONE_LITERAL.sub("", text)
            obj.docstring.value = LITERAL_INTRO.sub(_literal_intro, text)
