"""The durable-state rules every backend shares: Scope, the check_* input rules, retention_ttl,
and the store errors' attributes and messages."""

from __future__ import annotations

import dataclasses
import math

import pytest

from penguiflow.core import (
    Headers,
    Message,
    PenguiFlowError,
    Scope,
    ScopeMismatch,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)
from penguiflow.core._durable import (
    DEFAULT_MAX_VALUE_BYTES,
    check_key,
    check_limit,
    check_namespace,
    check_stream,
    check_ttl,
    check_value,
    retention_ttl,
)

# --------------------------------------------------------------------------- Scope


def test_scope_requires_a_non_empty_tenant() -> None:
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="tenant"):
            Scope(bad)  # type: ignore[arg-type]


def test_scope_user_and_session_are_none_or_non_empty_strings() -> None:
    with pytest.raises(ValueError, match="user"):
        Scope("acme", "")
    with pytest.raises(ValueError, match="session"):
        Scope("acme", "u1", 7)  # type: ignore[arg-type]
    assert Scope("acme", None, "s1").session == "s1"


def test_scope_is_frozen_slotted_and_hashable() -> None:
    scope = Scope("acme", "u1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        scope.tenant = "beta"  # type: ignore[misc]
    assert not hasattr(scope, "__dict__")
    assert {scope, Scope("acme", "u1")} == {scope}


def test_scope_of_a_message_reads_tenant_user_and_session() -> None:
    message = Message(payload=None, headers=Headers(tenant="acme", user="u1", session="s1"))
    assert Scope.of(message) == Scope("acme", "u1", "s1")
    bare = Message(payload=None, headers=Headers(tenant="acme"))
    assert Scope.of(bare) == Scope("acme")


def test_a_filter_selects_when_tenants_match_and_every_set_field_matches() -> None:
    record = Scope("acme", "u1", "s1")
    assert Scope("acme").selects(record)
    assert Scope("acme", "u1").selects(record)
    assert Scope("acme", "u1", "s1").selects(record)
    assert Scope("acme", None, "s1").selects(record)
    assert not Scope("beta").selects(record)
    assert not Scope("acme", "u2").selects(record)
    assert not Scope("acme", "u1", "s2").selects(record)
    # A narrower filter never selects a broader owner.
    assert not Scope("acme", "u1").selects(Scope("acme"))


# --------------------------------------------------------------------------- input rules


def test_namespaces_are_1_to_64_characters_of_the_allowed_set() -> None:
    for good in ("a", "pf.remote", "A-z_0.9:/", "x" * 64):
        check_namespace(good)
    for bad in ("", "x" * 65, "has space", "semi;colon", "é", "a\x00"):
        with pytest.raises(ValueError, match=r"namespace must be 1-64 characters of \[A-Za-z0-9_"):
            check_namespace(bad)


def test_keys_are_1_to_512_utf8_bytes_without_nul() -> None:
    for good in ("k", "é" * 256, "x" * 512, "a%_*/ b"):
        check_key(good)
    for bad in ("", "é" * 257, "x" * 513, "a\x00b", "\ud800"):
        with pytest.raises(ValueError, match="key must be 1-512 UTF-8 bytes without NUL"):
            check_key(bad)


def test_streams_are_1_to_256_characters_without_nul() -> None:
    for good in ("s", "pf.events/t1", "s" * 256):
        check_stream(good)
    for bad in ("", "s" * 257, "s\x00", "\udfff"):
        with pytest.raises(ValueError, match="stream must be 1-256 characters without NUL"):
            check_stream(bad)


def test_values_must_be_bytes_within_the_limit() -> None:
    check_value(b"", 10)
    check_value(b"x" * 10, 10)
    with pytest.raises(TypeError) as caught:
        check_value("text", 10)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "value must be bytes; encode it, e.g. model.model_dump_json().encode()"
    )
    with pytest.raises(ValueError, match="11 bytes, over max_value_bytes=10"):
        check_value(b"x" * 11, 10)
    assert DEFAULT_MAX_VALUE_BYTES == 16 * 1024 * 1024


def test_ttls_are_none_or_positive_finite_seconds() -> None:
    for good in (None, 0.001, 1, 86400.0):
        check_ttl(good)
    for bad in (0, 0.0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="ttl_s must be > 0 seconds"):
            check_ttl(bad)


def test_limits_are_at_least_one() -> None:
    check_limit(1)
    for bad in (0, -5):
        with pytest.raises(ValueError, match="limit must be >= 1"):
            check_limit(bad)


def test_retention_ttl_takes_the_longest_matching_prefix() -> None:
    retention = {"pf.": 100.0, "pf.events/": 10.0, "": 1000.0, "cache": 5.0}
    assert retention_ttl(retention, "pf.events/t1") == 10.0
    assert retention_ttl(retention, "pf.remote") == 100.0
    assert retention_ttl(retention, "cache.x") == 5.0
    assert retention_ttl(retention, "other") == 1000.0
    assert retention_ttl({"pf.": 1.0}, "other") is None
    assert retention_ttl(None, "pf.events/t1") is None
    assert retention_ttl({}, "pf.events/t1") is None


# --------------------------------------------------------------------------- errors


def test_store_errors_form_one_tree_under_penguiflow_error() -> None:
    for cls in (StoreUnavailable, StoreClosed, VersionConflict, ScopeMismatch):
        assert issubclass(cls, StoreError)
    assert issubclass(StoreError, PenguiFlowError)


def test_store_unavailable_carries_the_original_exception() -> None:
    cause = OSError("disk gone")
    error = StoreUnavailable("the database is unreachable", cause)
    assert error.original_exc is cause
    assert str(error) == "the database is unreachable"
    assert StoreUnavailable("no cause").original_exc is None


def test_version_conflict_names_the_record_and_both_versions() -> None:
    error = VersionConflict("pf.once", "step-1", 0, 3)
    assert (error.namespace, error.key, error.expected, error.actual) == ("pf.once", "step-1", 0, 3)
    assert "pf.once/step-1: expected version 0, found 3" in str(error)
    assert "if_version" in str(error)


def test_scope_mismatch_names_both_scopes() -> None:
    error = ScopeMismatch(Scope("acme"), Scope("beta"))
    assert (error.existing, error.given) == (Scope("acme"), Scope("beta"))
    assert "Scope(tenant='acme'" in str(error) and "Scope(tenant='beta'" in str(error)
    assert "use another key or stream" in str(error)
