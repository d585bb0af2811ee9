"""What a journal entry holds: step ids, and the patch from a node's input to one output.

A step's *document* is its message as JSON: the envelope's fields with ``payload`` (a bare value
the runtime carries keeps the envelope it travels in). An entry stores only the patch from the
input's document to the output's, so a node that bumps a counter next to a large untouched list
writes the counter alone. Patches compare by identity first (untouched parts cost nothing to
diff), then by strict JSON equality; a list that differs is replaced whole.

A patch is ``{"=": {key: json}, "-": [key, ...], ">": {key: patch}}`` with empty parts left out:
set these keys, remove those, patch these nested objects. ``None`` is a value like any other, and
a removed key is listed, so both replay exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, cast

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from ._types import Carried, Message

__all__ = ["INGRESS_STEP", "Patch", "apply_patch", "child_step", "diff", "fields_of"]

INGRESS_STEP = "0"
"""The step id of a trace's ingress message."""

Patch = dict[str, Any]
_SAME: Any = object()


def child_step(parent: str, node: str, index: int | str) -> str:
    """The step id of output ``index`` of ``node``'s invocation on step ``parent``.

    The first 20 hex digits of sha256(``parent/node/index``): stable across re-runs.
    """
    return hashlib.sha256(f"{parent}/{node}/{index}".encode()).hexdigest()[:20]


def fields_of(item: Any) -> tuple[str, Mapping[str, Any]]:
    """``(kind, fields)`` of what travels on a floe: the document before it is made JSON.

    Kinds: ``"m"`` a ``Message``, ``"c"`` a bare value with its envelope, ``"v"`` a bare value
    with no envelope at all (only ``payload``).
    """
    if isinstance(item, Message):
        return "m", item.__dict__
    if type(item) is Carried:
        fields = dict(item.envelope.__dict__)
        fields["payload"] = item.value
        return "c", fields
    return "v", {"payload": item}


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data (pydantic's rules; ``ValueError`` when it has none)."""
    try:
        return to_jsonable_python(value)
    except Exception as exc:
        if isinstance(value, BaseModel):  # pydantic < 2.13 cannot here while a deferred build
            try:  # (defer_build=True, as StreamChunk has) is pending; model_dump builds it
                return value.model_dump(mode="json")
            except Exception:
                pass
        raise ValueError(
            f"a journaled value must be JSON-serialisable through pydantic; "
            f"{type(value).__name__} is not ({exc})"
        ) from exc


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> Patch:
    """The patch that turns document ``old`` into ``new`` (both field mappings)."""
    patch = _diff_map(old, new)
    return {} if patch is _SAME else patch


def _diff_map(old: Mapping[str, Any], new: Mapping[str, Any]) -> Any:
    sets: dict[str, Any] = {}
    subs: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            sets[key] = to_json(value)
            continue
        before = old[key]
        if value is before:
            continue
        change = _diff_value(before, value)
        if change is _SAME:
            continue
        if type(change) is _Nested:
            subs[key] = change.patch
        else:
            sets[key] = change
    removed = [key for key in old if key not in new]
    if not (sets or subs or removed):
        return _SAME
    patch: Patch = {}
    if sets:
        patch["="] = sets
    if removed:
        patch["-"] = removed
    if subs:
        patch[">"] = subs
    return patch


class _Nested:
    __slots__ = ("patch",)

    def __init__(self, patch: Patch) -> None:
        self.patch = patch


def _diff_value(old: Any, new: Any) -> Any:
    """``_SAME``, a ``_Nested`` patch, or the new value's JSON (a replacement)."""
    if _quick_same(old, new):  # the common cases: a counter, a name, a flag, an empty meta
        return _SAME if old == new else new
    if isinstance(new, BaseModel) and type(old) is type(new) and _plain_model(type(new)):
        inner = _diff_map(old.__dict__, new.__dict__)
    elif type(new) is dict and type(old) is dict and _str_keys(new) and _str_keys(old):  # pyright: ignore[reportUnknownArgumentType]
        inner = _diff_map(cast(dict[str, Any], old), cast(dict[str, Any], new))
    else:
        return _diff_json(to_json(old), to_json(new))
    return inner if inner is _SAME else _Nested(inner)


def _diff_json(old: Any, new: Any) -> Any:
    if type(old) is dict and type(new) is dict:
        inner = _diff_map(cast(dict[str, Any], old), cast(dict[str, Any], new))
        return inner if inner is _SAME else _Nested(inner)
    return _SAME if same_json(old, new) else new


_SCALARS: frozenset[type[object]] = frozenset((str, int, bool, type(None)))
"""Types whose values are their own JSON and compare exactly with ``==`` (floats excluded: NaN)."""


def _quick_same(old: object, new: object) -> bool:
    """Whether ``old == new`` alone decides: equal scalar types, or two empty dicts."""
    kind = type(new)
    if kind is not type(old):
        return False
    return kind in _SCALARS or (kind is dict and not old and not new)


def same_json(a: Any, b: Any) -> bool:
    """Equality of JSON values that also tells ``1``, ``1.0`` and ``True`` apart."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        da, db = cast(dict[str, Any], a), cast(dict[str, Any], b)
        return da.keys() == db.keys() and all(same_json(v, db[k]) for k, v in da.items())
    if type(a) is list:
        la, lb = cast(list[Any], a), cast(list[Any], b)
        return len(la) == len(lb) and all(same_json(x, y) for x, y in zip(la, lb, strict=True))
    return bool(a == b)


def _plain_model(cls: type[BaseModel]) -> bool:
    """Whether ``cls`` dumps to JSON as its fields by name (so its ``__dict__`` can be diffed)."""
    plain = _PLAIN.get(cls)
    if plain is None:
        decorators = cls.__pydantic_decorators__
        config = cls.model_config
        plain = not (
            decorators.field_serializers
            or decorators.model_serializers
            or decorators.computed_fields
            or config.get("serialize_by_alias")
            or config.get("extra") == "allow"
        )
        _PLAIN[cls] = plain
    return plain


_PLAIN: dict[type[BaseModel], bool] = {}


def _str_keys(value: dict[Any, Any]) -> bool:
    return all(type(key) is str for key in value)


def apply_patch(document: Any, patch: Patch) -> Any:
    """``document`` with ``patch`` applied (a new object; ``document`` is left unchanged)."""
    if not patch:
        return document
    if type(document) is not dict:
        raise ValueError("a journal patch applies to a JSON object only; the journal is corrupt")
    result = dict(cast(dict[str, Any], document))
    result.update(patch.get("=", {}))
    for key in patch.get("-", ()):
        result.pop(key, None)
    for key, inner in patch.get(">", {}).items():
        result[key] = apply_patch(result.get(key), inner)
    return result
