"""The string enums' shared lookup: any letter case, and a failure that names the choices."""

from __future__ import annotations

from enum import StrEnum
from typing import Self


class Choice(StrEnum):
    """A :class:`~enum.StrEnum` whose lookup by value ignores letter case.

    ``TaskType("background")`` is ``TaskType.BACKGROUND``; a value matching no member raises a
    ``ValueError`` that lists the allowed values (instead of a bare "is not a valid" message).
    """

    @classmethod
    def _missing_(cls, value: object) -> Self:
        if isinstance(value, str):
            folded = value.casefold()
            for member in cls:
                if member.value.casefold() == folded:
                    return member
        choices = ", ".join(repr(member.value) for member in cls)
        raise ValueError(
            f"{value!r} is not a {cls.__name__}; use one of {choices} (or {cls.__name__}.<NAME>)"
        )
