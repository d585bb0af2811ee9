"""Schema version 1 of ``PostgresDurableStore`` (before the store-speed work), verbatim.

The migration test creates a schema with it, fills it through its functions, and checks that a
store of today migrates it forward keeping the data. Never edit: it is what old deployments hold.
"""

# {s} is the quoted schema name. One statement per list item (asyncpg runs them in order).
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
        stream_id       bigint NOT NULL REFERENCES {s}.pf_streams (id) ON DELETE CASCADE,
        seq             bigint NOT NULL,
        value           bytea  NOT NULL,
        ts              double precision NOT NULL,
        idempotency_key text,
        PRIMARY KEY (stream_id, seq)
    )""",
    """CREATE TABLE {s}.pf_idempotency (
        stream_id bigint NOT NULL REFERENCES {s}.pf_streams (id) ON DELETE CASCADE,
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
    """CREATE FUNCTION {s}.pf_append(
        p_stream text, p_value bytea, p_tenant text, p_user text, p_session text,
        p_key text, p_ttl double precision, p_first_ttl double precision,
        p_now double precision,
        OUT o_status integer, OUT o_seq bigint,
        OUT o_tenant text, OUT o_user text, OUT o_session text
    ) LANGUAGE plpgsql AS $$
    DECLARE
        r record;
        v_stream bigint;
    BEGIN
        LOOP
            SELECT id, tenant, user_id, session_id, last_seq, expires_at INTO r
              FROM {s}.pf_streams WHERE name = p_stream FOR UPDATE;
            IF FOUND AND r.expires_at IS NOT NULL AND r.expires_at <= p_now THEN
                DELETE FROM {s}.pf_streams WHERE id = r.id;  -- expired: start it anew
            ELSIF FOUND THEN
                IF r.tenant <> p_tenant THEN
                    o_status := 1; o_tenant := r.tenant; o_user := r.user_id;
                    o_session := r.session_id;
                    RETURN;
                END IF;
                IF p_key IS NOT NULL THEN
                    SELECT i.seq INTO o_seq FROM {s}.pf_idempotency i
                     WHERE i.stream_id = r.id AND i.key = p_key;
                    IF FOUND THEN
                        o_status := 0;
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
        IF p_key IS NOT NULL THEN
            INSERT INTO {s}.pf_idempotency (stream_id, key, seq) VALUES (v_stream, p_key, o_seq);
        END IF;
        o_status := 0;
    END
    $$""",
)
