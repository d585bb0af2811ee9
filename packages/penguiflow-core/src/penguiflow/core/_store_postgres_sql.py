"""The SQL of ``PostgresDurableStore``: its schema (DDL and PL/pgSQL functions) and statements.

``put``, ``append``, ``trim``, ``erase`` and ``purge`` are functions (``put`` and ``append`` lock
the row they change), so each is one round trip; every other operation is one statement.
``MIGRATIONS`` takes older schemas forward. Statements use ``$name`` parameters, numbered into
asyncpg's ``$n`` once per schema.
"""

from __future__ import annotations

import re

__all__ = ["DDL", "LIVE", "MIGRATIONS", "RECORD_COLUMNS", "SELECTED", "Named", "Sql", "named"]

# {s} is the quoted schema name. One statement per list item (asyncpg runs them in order).
#
# Schema version 2. pf_entries and pf_idempotency carry no foreign keys: the functions below keep
# them consistent themselves (an entry is written only under its stream's row lock, and whatever
# deletes a stream deletes its entries and keys in a later statement of the same transaction,
# so it also sees entries committed while it waited for the lock). An entry's idempotency key is
# its nullable ``idempotency_key`` column, unique per stream through a partial index, so an
# append writes one entry row and no second table. pf_idempotency keeps only the keys of
# trimmed entries: ``trim`` moves them there, so a key stays known (as in every backend) after
# its entry is gone.
ENTRY_KEYS = (
    "CREATE UNIQUE INDEX pf_entries_key ON {s}.pf_entries (stream_id, idempotency_key) "
    "WHERE idempotency_key IS NOT NULL"
)


# Entry values TOAST-compressed with lz4 where the server has it (PostgreSQL 14+ built with lz4):
# a journal's first entry carries a whole state (24 KB in the benchmark), and lz4 compresses it
# far faster than pglz (runs of 11 appends with a 22 KB first entry: 344-410 µs per append with
# pglz, 305 with lz4). Elsewhere the column keeps the server's default.
ENTRY_COMPRESSION = """DO $$
BEGIN
    EXECUTE 'ALTER TABLE {s}.pf_entries ALTER COLUMN value SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    NULL;  -- no lz4 (or before PostgreSQL 14): the default compression
END
$$"""

APPEND = """CREATE OR REPLACE FUNCTION {s}.pf_append(
    p_stream text, p_value bytea, p_tenant text, p_user text, p_session text,
    p_key text, p_ttl double precision, p_first_ttl double precision,
    p_now double precision,
    OUT o_status integer, OUT o_seq bigint,
    OUT o_tenant text, OUT o_user text, OUT o_session text
) LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_stream bigint;
    v_known bigint;
BEGIN
    o_status := 0;
    LOOP
        IF p_key IS NULL OR p_ttl IS NULL THEN
            -- The common case: one statement locks this tenant's live stream and takes a seq.
            UPDATE {s}.pf_streams
               SET last_seq = last_seq + 1,
                   expires_at = CASE WHEN p_ttl IS NULL THEN expires_at
                                     ELSE p_now + p_ttl END
             WHERE name = p_stream AND tenant = p_tenant
               AND (expires_at IS NULL OR expires_at > p_now)
            RETURNING id, last_seq INTO v_stream, o_seq;
            IF FOUND THEN
                IF p_key IS NOT NULL THEN
                    -- Under the row lock, in a new snapshot: every append of this stream
                    -- that came before has committed.
                    SELECT k.seq INTO v_known FROM (
                        SELECT e.seq FROM {s}.pf_entries e
                         WHERE e.stream_id = v_stream AND e.idempotency_key = p_key
                        UNION ALL
                        SELECT i.seq FROM {s}.pf_idempotency i
                         WHERE i.stream_id = v_stream AND i.key = p_key
                    ) k LIMIT 1;
                    IF FOUND THEN
                        -- a known key: give the seq back (expires_at did not change)
                        UPDATE {s}.pf_streams SET last_seq = last_seq - 1 WHERE id = v_stream;
                        o_seq := v_known;
                        RETURN;
                    END IF;
                END IF;
                EXIT;
            END IF;
        END IF;
        SELECT id, tenant, user_id, session_id, last_seq, expires_at INTO r
          FROM {s}.pf_streams WHERE name = p_stream FOR UPDATE;
        IF FOUND AND r.expires_at IS NOT NULL AND r.expires_at <= p_now THEN
            -- expired: start it anew (entries and keys first go with it)
            DELETE FROM {s}.pf_entries WHERE stream_id = r.id;
            DELETE FROM {s}.pf_idempotency WHERE stream_id = r.id;
            DELETE FROM {s}.pf_streams WHERE id = r.id;
        ELSIF FOUND THEN
            IF r.tenant <> p_tenant THEN
                o_status := 1; o_tenant := r.tenant; o_user := r.user_id;
                o_session := r.session_id;
                RETURN;
            END IF;
            IF p_key IS NOT NULL THEN
                -- under the row lock: no append of this stream runs meanwhile
                SELECT k.seq INTO o_seq FROM (
                    SELECT e.seq FROM {s}.pf_entries e
                     WHERE e.stream_id = r.id AND e.idempotency_key = p_key
                    UNION ALL
                    SELECT i.seq FROM {s}.pf_idempotency i
                     WHERE i.stream_id = r.id AND i.key = p_key
                ) k LIMIT 1;
                IF FOUND THEN
                    RETURN;
                END IF;
            END IF;
            o_seq := r.last_seq + 1;
            UPDATE {s}.pf_streams
               SET last_seq = o_seq,
                   expires_at = CASE WHEN p_ttl IS NULL THEN r.expires_at
                                     ELSE p_now + p_ttl END
             WHERE id = r.id;
            v_stream := r.id;
            EXIT;
        END IF;
        INSERT INTO {s}.pf_streams (name, tenant, user_id, session_id, last_seq, expires_at)
             VALUES (p_stream, p_tenant, p_user, p_session, 1, p_now + p_first_ttl)
        ON CONFLICT (name) DO NOTHING
        RETURNING id INTO v_stream;
        IF v_stream IS NOT NULL THEN
            o_seq := 1;
            EXIT;
        END IF;
        -- a concurrent first append created the stream: look again
    END LOOP;
    INSERT INTO {s}.pf_entries (stream_id, seq, value, ts, idempotency_key)
         VALUES (v_stream, o_seq, p_value, p_now, p_key);
END
$$"""


TRIM = """CREATE OR REPLACE FUNCTION {s}.pf_trim(
    p_stream text, p_before bigint, p_now double precision
) RETURNS bigint LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM {s}.pf_entries
         WHERE stream_id = (SELECT id FROM {s}.pf_streams WHERE name = p_stream
                               AND (expires_at IS NULL OR expires_at > p_now))
           AND seq < p_before
        RETURNING stream_id, seq, idempotency_key
    ), kept AS (
        INSERT INTO {s}.pf_idempotency (stream_id, key, seq)
        SELECT stream_id, idempotency_key, seq FROM gone WHERE idempotency_key IS NOT NULL
        ON CONFLICT DO NOTHING
    )
    SELECT count(*) FROM gone
$$"""


ERASE = """CREATE OR REPLACE FUNCTION {s}.pf_erase(
    p_tenant text, p_user text, p_session text, p_now double precision
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_records bigint;
    v_streams bigint;
    v_ids bigint[];
BEGIN
    WITH r AS (
        DELETE FROM {s}.pf_records
         WHERE tenant = p_tenant AND (p_user IS NULL OR user_id = p_user)
           AND (p_session IS NULL OR session_id = p_session)
        RETURNING expires_at
    ) SELECT count(*) FILTER (WHERE expires_at IS NULL OR expires_at > p_now)
        INTO v_records FROM r;
    WITH t AS (
        DELETE FROM {s}.pf_streams
         WHERE tenant = p_tenant AND (p_user IS NULL OR user_id = p_user)
           AND (p_session IS NULL OR session_id = p_session)
        RETURNING id, expires_at
    ) SELECT count(*) FILTER (WHERE expires_at IS NULL OR expires_at > p_now),
             array_agg(id)
        INTO v_streams, v_ids FROM t;
    IF v_ids IS NOT NULL THEN
        DELETE FROM {s}.pf_entries WHERE stream_id = ANY (v_ids);
        DELETE FROM {s}.pf_idempotency WHERE stream_id = ANY (v_ids);
    END IF;
    RETURN v_records + v_streams;
END
$$"""


PURGE = """CREATE OR REPLACE FUNCTION {s}.pf_purge(p_now double precision)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_records bigint;
    v_ids bigint[];
BEGIN
    WITH r AS (
        DELETE FROM {s}.pf_records WHERE expires_at IS NOT NULL AND expires_at <= p_now
        RETURNING 1
    ) SELECT count(*) INTO v_records FROM r;
    WITH t AS (
        DELETE FROM {s}.pf_streams WHERE expires_at IS NOT NULL AND expires_at <= p_now
        RETURNING id
    ) SELECT array_agg(id) INTO v_ids FROM t;
    IF v_ids IS NULL THEN
        RETURN v_records;
    END IF;
    DELETE FROM {s}.pf_entries WHERE stream_id = ANY (v_ids);
    DELETE FROM {s}.pf_idempotency WHERE stream_id = ANY (v_ids);
    RETURN v_records + cardinality(v_ids);
END
$$"""

DDL = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    """CREATE TABLE {s}.pf_meta (
        id      integer PRIMARY KEY CHECK (id = 1),
        version integer NOT NULL
    )""",
    """CREATE TABLE {s}.pf_records (
        namespace  text COLLATE "C" NOT NULL,
        key        text COLLATE "C" NOT NULL,
        value      bytea            NOT NULL,
        tenant     text             NOT NULL,
        user_id    text,
        session_id text,
        version    bigint           NOT NULL,
        expires_at double precision,
        updated_at double precision NOT NULL,
        PRIMARY KEY (namespace, key)
    )""",
    "CREATE INDEX pf_records_scope ON {s}.pf_records (tenant, user_id, session_id)",
    "CREATE INDEX pf_records_expiry ON {s}.pf_records (expires_at) WHERE expires_at IS NOT NULL",
    """CREATE TABLE {s}.pf_streams (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name       text COLLATE "C" NOT NULL UNIQUE,
        tenant     text             NOT NULL,
        user_id    text,
        session_id text,
        last_seq   bigint           NOT NULL,
        expires_at double precision
    )""",
    "CREATE INDEX pf_streams_scope ON {s}.pf_streams (tenant, user_id, session_id)",
    "CREATE INDEX pf_streams_expiry ON {s}.pf_streams (expires_at) WHERE expires_at IS NOT NULL",
    """CREATE TABLE {s}.pf_entries (
        stream_id       bigint NOT NULL,
        seq             bigint NOT NULL,
        value           bytea  NOT NULL,
        ts              double precision NOT NULL,
        idempotency_key text,
        PRIMARY KEY (stream_id, seq)
    )""",
    ENTRY_KEYS,
    ENTRY_COMPRESSION,
    """CREATE TABLE {s}.pf_idempotency (
        stream_id bigint NOT NULL,
        key       text   NOT NULL,
        seq       bigint NOT NULL,
        PRIMARY KEY (stream_id, key)
    )""",
    # put: o_status 0 = written (o_version the new version), 1 = another tenant's record
    # (o_tenant/o_user/o_session its scope), 2 = version conflict (o_version the actual one).
    """CREATE FUNCTION {s}.pf_put(
        p_namespace text, p_key text, p_value bytea, p_tenant text, p_user text,
        p_session text, p_ttl double precision, p_if_version bigint, p_now double precision,
        OUT o_status integer, OUT o_version bigint,
        OUT o_tenant text, OUT o_user text, OUT o_session text
    ) LANGUAGE plpgsql AS $$
    DECLARE
        r record;
        found_row boolean;
        actual bigint;
    BEGIN
        LOOP
            SELECT version, tenant, user_id, session_id, expires_at INTO r
              FROM {s}.pf_records WHERE namespace = p_namespace AND key = p_key FOR UPDATE;
            found_row := FOUND;
            actual := 0;
            IF found_row AND (r.expires_at IS NULL OR r.expires_at > p_now) THEN
                IF r.tenant <> p_tenant THEN
                    o_status := 1; o_tenant := r.tenant; o_user := r.user_id;
                    o_session := r.session_id;
                    RETURN;
                END IF;
                actual := r.version;
            END IF;
            IF p_if_version IS NOT NULL AND p_if_version <> actual THEN
                o_status := 2; o_version := actual;
                RETURN;
            END IF;
            IF found_row THEN
                UPDATE {s}.pf_records SET value = p_value, tenant = p_tenant, user_id = p_user,
                       session_id = p_session, version = actual + 1,
                       expires_at = p_now + p_ttl, updated_at = p_now
                 WHERE namespace = p_namespace AND key = p_key;
            ELSE
                INSERT INTO {s}.pf_records (namespace, key, value, tenant, user_id, session_id,
                                            version, expires_at, updated_at)
                     VALUES (p_namespace, p_key, p_value, p_tenant, p_user, p_session, 1,
                             p_now + p_ttl, p_now)
                ON CONFLICT (namespace, key) DO NOTHING;
                IF NOT FOUND THEN
                    CONTINUE;  -- a concurrent put created it first: look again
                END IF;
            END IF;
            o_status := 0; o_version := actual + 1;
            RETURN;
        END LOOP;
    END
    $$""",
    # append: o_status 0 = appended or known key (o_seq), 1 = another tenant's stream.
    APPEND,
    # trim: the dropped entries' keys move to pf_idempotency (in the same statement).
    TRIM,
    # erase and purge: the streams go first (waiting for appends in flight), then, in later
    # statements that see what those appends committed, their entries and keys.
    ERASE,
    PURGE,
)

# Forward migrations: MIGRATIONS[n] takes a schema from version n to n + 1 (run in order, in
# one transaction, under the schema's advisory lock).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 1 -> 2: no foreign keys (the functions keep the discipline), an entry's key indexed in
    # pf_entries, pf_idempotency only for the keys of trimmed entries; new pf_append, and
    # pf_trim / pf_erase / pf_purge, which delete entries and keys themselves; lz4 for new
    # entry values (old ones stay as they are).
    1: (
        "ALTER TABLE {s}.pf_entries DROP CONSTRAINT IF EXISTS pf_entries_stream_id_fkey",
        "ALTER TABLE {s}.pf_idempotency DROP CONSTRAINT IF EXISTS pf_idempotency_stream_id_fkey",
        ENTRY_KEYS,
        ENTRY_COMPRESSION,
        "DELETE FROM {s}.pf_idempotency i USING {s}.pf_entries e "
        "WHERE e.stream_id = i.stream_id AND e.idempotency_key = i.key",
        APPEND,
        TRIM,
        ERASE,
        PURGE,
    ),
}

RECORD_COLUMNS = "key, value, tenant, user_id, session_id, version, expires_at, updated_at"
LIVE = "(expires_at IS NULL OR expires_at > $now)"
SELECTED = (
    "tenant = $tenant AND ($user::text IS NULL OR user_id = $user) "
    "AND ($session::text IS NULL OR session_id = $session)"
)


class Sql:
    """The statements of one schema, with named parameters turned into asyncpg's ``$n``."""

    def __init__(self, schema: str) -> None:
        s = f'"{schema}"'
        self.ddl = tuple(statement.replace("{s}", s) for statement in DDL)
        self.migrations = {
            version: tuple(statement.replace("{s}", s) for statement in statements)
            for version, statements in MIGRATIONS.items()
        }
        self.meta = f"{s}.pf_meta"
        scoped = f"AND {SELECTED}"
        fields = f"SELECT {RECORD_COLUMNS} FROM {s}.pf_records"
        self.put = named(
            f"SELECT * FROM {s}.pf_put($namespace, $key, $value, $tenant, $user, $session, "
            "$ttl, $if_version, $now)"
        )
        self.get = named(f"{fields} WHERE namespace = $namespace AND key = $key AND {LIVE}")
        self.get_scoped = named(
            f"{fields} WHERE namespace = $namespace AND key = $key AND {LIVE} {scoped}"
        )
        take = f"DELETE FROM {s}.pf_records WHERE namespace = $namespace AND key = $key AND {LIVE}"
        self.take = named(f"{take} RETURNING {RECORD_COLUMNS}")
        self.take_scoped = named(f"{take} {scoped} RETURNING {RECORD_COLUMNS}")
        self.delete = named(take)
        self.delete_scoped = named(f"{take} {scoped}")
        self.scan_sql = f"{fields} WHERE namespace = $namespace AND {LIVE}"
        self.append = named(
            f"SELECT * FROM {s}.pf_append($stream, $value, $tenant, $user, $session, $key, "
            "$ttl, $first_ttl, $now)"
        )
        read = (
            f"SELECT e.seq, e.value, e.ts, e.idempotency_key FROM {s}.pf_entries e "
            f"JOIN {s}.pf_streams t ON t.id = e.stream_id "
            "WHERE t.name = $stream AND (t.expires_at IS NULL OR t.expires_at > $now) "
            "AND e.seq > $after"
        )
        order = " ORDER BY e.seq LIMIT $limit"
        self.read = named(read + order)
        self.read_scoped = named(
            f"{read} AND t.tenant = $tenant AND ($user::text IS NULL OR t.user_id = $user) "
            f"AND ($session::text IS NULL OR t.session_id = $session){order}"
        )
        self.trim = named(f"SELECT {s}.pf_trim($stream, $before, $now)")
        self.erase = named(f"SELECT {s}.pf_erase($tenant, $user, $session, $now)")
        self.purge = named(f"SELECT {s}.pf_purge($now)")


class Named:
    """A statement with ``$name`` parameters, numbered in order of first use."""

    __slots__ = ("names", "text")

    def __init__(self, text: str, names: tuple[str, ...]) -> None:
        self.text = text
        self.names = names

    def args(self, **values: object) -> list[object]:
        """The values in parameter order."""
        return [values[name] for name in self.names]


def named(sql: str) -> Named:
    """``sql`` with its ``$name`` parameters numbered in order of first use."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return Named(re.sub(r"\$([a-z_]+)", number, sql), tuple(names))
