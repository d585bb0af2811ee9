"""``json_schema_to_model``: a remote tool's JSON Schema as a pydantic model that validates it.

What the model sends is ``model_dump(mode="json", by_alias=True, exclude_unset=True)``, so an
omitted optional stays omitted. Connect never fails on a schema: whatever cannot be typed
becomes ``Any``.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from typing import Annotated, Any, ForwardRef, Literal, Union, cast

from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = ["dump_arguments", "json_schema_to_model"]

_RESERVED = frozenset(dir(BaseModel)) | {"model_config", "model_fields"}
_SIMPLE = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}


def _mapping(value: object) -> Mapping[str, Any]:
    return cast(Mapping[str, Any], value) if isinstance(value, Mapping) else {}


def _identifier(text: str) -> str:
    ident = re.sub(r"\W", "_", text) or "Model"
    return f"M_{ident}" if ident[0].isdigit() else ident


def _field_name(raw: str, taken: set[str]) -> str:
    name = re.sub(r"\W", "_", raw) or "field"
    if name[0].isdigit() or name.startswith("_"):
        name = f"f_{name.lstrip('_')}"
    while keyword.iskeyword(name) or name in _RESERVED or name in taken:
        name = f"{name}_"
    return name


class _Builder:
    def __init__(self, root: Mapping[str, Any], name: str) -> None:
        self.root = root
        self.name = _identifier(name)
        self.defs: dict[str, Mapping[str, Any]] = {}
        for section in ("$defs", "definitions"):
            defs: Any = root.get(section)
            self.defs[section] = cast(Mapping[str, Any], defs) if isinstance(defs, Mapping) else {}
        self.models: dict[str, type[BaseModel]] = {}
        self.pending: set[str] = set()
        self.forward = False

    def build_root(self) -> type[BaseModel]:
        model = self.model(self.root, self.name)
        if self.forward:
            for built in self.models.values():
                built.model_rebuild(_types_namespace=dict(self.models))
        return model

    def ref(self, ref: str) -> Any:
        if ref == "#":
            self.forward = True
            return ForwardRef(self.name)
        match = re.fullmatch(r"#/(\$defs|definitions)/(.+)", ref)
        if match is None or match.group(2) not in self.defs[match.group(1)]:
            return Any
        section, key = match.group(1), match.group(2)
        suffix = key if section == "$defs" else f"definitions_{key}"
        model_name = _identifier(f"{self.name}_{suffix}")
        if model_name in self.models:
            return self.models[model_name]
        if model_name in self.pending:
            self.forward = True
            return ForwardRef(model_name)
        target = self.defs[section][key]
        if not isinstance(target, Mapping) or not self._is_object(cast(Mapping[str, Any], target)):
            return self.annotation(cast(Mapping[str, Any], target), model_name)
        return self.model(cast(Mapping[str, Any], target), model_name)

    @staticmethod
    def _is_object(schema: Mapping[str, Any]) -> bool:
        return schema.get("type") == "object" or (
            "type" not in schema and isinstance(schema.get("properties"), Mapping)
        )

    def model(self, schema: Mapping[str, Any], model_name: str) -> type[BaseModel]:
        self.pending.add(model_name)
        props = _mapping(schema.get("properties"))
        required_raw: Any = schema.get("required")
        listed: list[Any] = list(required_raw) if isinstance(required_raw, list | tuple) else []  # pyright: ignore[reportUnknownArgumentType]
        required = {r for r in listed if isinstance(r, str)}
        fields: dict[str, Any] = {}
        taken: set[str] = set()
        for raw_name, sub in props.items():
            sub_schema = _mapping(sub)
            annotation = self.annotation(sub_schema, f"{model_name}_{raw_name}")
            field_name = _field_name(str(raw_name), taken)
            taken.add(field_name)
            kwargs: dict[str, Any] = {}
            if field_name != raw_name:
                kwargs["alias"] = raw_name
            description = sub_schema.get("description")
            if isinstance(description, str):
                kwargs["description"] = description
            if raw_name in required:
                default: Any = ...
            else:
                default = sub_schema.get("default")
            fields[field_name] = (annotation, Field(default, **kwargs))
        additional = schema.get("additionalProperties")
        config = ConfigDict(
            extra="forbid" if additional is False else "allow",
            populate_by_name=True,
            serialize_by_alias=True,
        )
        description = schema.get("description")
        model = create_model(
            model_name,
            __config__=config,
            __doc__=description if isinstance(description, str) else None,
            **fields,
        )
        built: type[BaseModel] = model
        self.pending.discard(model_name)
        self.models[model_name] = built
        return built

    def annotation(self, schema: Mapping[str, Any], hint: str) -> Any:
        try:
            return self._annotation(schema, hint)
        except Exception:  # an untypeable sub-schema must never fail connect
            return Any

    def _annotation(self, schema: Mapping[str, Any], hint: str) -> Any:
        if "$ref" in schema and isinstance(schema["$ref"], str):
            return self.ref(schema["$ref"])
        if "const" in schema:
            return Literal[schema["const"]]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            values = tuple(cast(list[Any], schema["enum"]))
            return Literal[values]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                members = [
                    self.annotation(
                        cast(Mapping[str, Any], o) if isinstance(o, Mapping) else {}, f"{hint}_{i}"
                    )
                    for i, o in enumerate(cast(list[Any], options))
                ]
                return _union(members)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(cast(list[Any], all_of)) == 1:
            only: Any = cast(list[Any], all_of)[0]
            return self.annotation(only if isinstance(only, Mapping) else {}, hint)  # pyright: ignore[reportUnknownArgumentType]
        kind = schema.get("type")
        if isinstance(kind, list):
            members = [self._typed(schema, str(k), hint) for k in cast(list[Any], kind)]
            return _union(members)
        if kind is None:
            if isinstance(schema.get("properties"), Mapping):
                kind = "object"
            elif "items" in schema:
                kind = "array"
            else:
                return Any
        return self._typed(schema, str(kind), hint)

    def _typed(self, schema: Mapping[str, Any], kind: str, hint: str) -> Any:
        constraints: dict[str, Any] = {}
        if kind in ("integer", "number"):
            for src, dst in (("minimum", "ge"), ("maximum", "le"), ("multipleOf", "multiple_of")):
                if isinstance(schema.get(src), int | float):
                    constraints[dst] = schema[src]
            for src, dst in (("exclusiveMinimum", "gt"), ("exclusiveMaximum", "lt")):
                if isinstance(schema.get(src), int | float) and not isinstance(schema[src], bool):
                    constraints[dst] = schema[src]
        elif kind == "string":
            for src, dst in (
                ("minLength", "min_length"),
                ("maxLength", "max_length"),
                ("pattern", "pattern"),
            ):
                if src in schema:
                    constraints[dst] = schema[src]
        elif kind == "array":
            items: object = schema.get("items")
            items_schema = _mapping(items)
            inner = (
                self.annotation(items_schema, f"{hint}_item") if isinstance(items, Mapping) else Any
            )
            for src, dst in (("minItems", "min_length"), ("maxItems", "max_length")):
                if isinstance(schema.get(src), int):
                    constraints[dst] = schema[src]
            base: Any = list[inner]
            return Annotated[base, Field(**constraints)] if constraints else base
        elif kind == "object":
            if isinstance(schema.get("properties"), Mapping) and schema["properties"]:
                return self.model(schema, _identifier(hint))
            additional: object = schema.get("additionalProperties")
            value_schema = _mapping(additional)
            value = (
                self.annotation(value_schema, f"{hint}_value")
                if isinstance(additional, Mapping)
                else Any
            )
            return dict[str, value]
        base = _SIMPLE.get(kind, Any)
        return Annotated[base, Field(**constraints)] if constraints else base


def _union(members: list[Any]) -> Any:
    unique: list[Any] = []
    for member in members:
        if member not in unique:
            unique.append(member)
    if Any in unique:
        return Any
    if len(unique) == 1:
        return unique[0]
    return Union[tuple(unique)]  # noqa: UP007


def json_schema_to_model(schema: Mapping[str, Any], *, name: str) -> type[BaseModel]:
    """Build a pydantic model that validates what ``schema`` (a JSON Schema object) accepts.

    Handles ``type`` (also lists), ``properties``/``required``, nested objects, ``items``,
    ``enum``/``const`` (as ``Literal``), ``anyOf``/``oneOf`` (unions), nullables, local
    ``$ref`` into ``$defs``/``definitions`` (recursive too), ``default``, ``description``,
    numeric, string and array constraints and ``additionalProperties: false`` (else extra keys
    pass through). Names that are not identifiers or clash with ``BaseModel`` get aliases.
    Unknown keywords are ignored and untypeable sub-schemas become ``Any``: it never raises on
    a schema. Send ``dump_arguments(model.model_validate(args))``.
    """
    root: Mapping[str, Any] = schema if isinstance(schema, Mapping) else {}  # pyright: ignore[reportUnnecessaryIsInstance]
    try:
        return _Builder(root, name).build_root()
    except Exception:
        return create_model(_identifier(name), __config__=ConfigDict(extra="allow"))


def dump_arguments(model: BaseModel) -> dict[str, Any]:
    """What is sent for validated arguments: set fields only, by their remote names, as JSON."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)
