-- dbsync 0.7: the connector layer (mappings of staged records into the DBA's tables, bindings,
-- checkpoints, listeners) and the job queue's priorities, enqueueing, parallel runners and history.
\echo Use "ALTER EXTENSION dbsync UPDATE TO '0.7'" to load this file. \quit

------------------------------------------------------------------------------------------------
-- The job queue
------------------------------------------------------------------------------------------------
ALTER TABLE dbsync.job ADD COLUMN priority integer NOT NULL DEFAULT 10;   -- smaller runs first
ALTER TABLE dbsync.job DROP CONSTRAINT job_kind_check;
ALTER TABLE dbsync.job ADD CONSTRAINT job_kind_check
    CHECK (kind IN ('changes_pull', 'upgrade_poll', 'export_poll', 'ilog_maintain', 'replication_sync',
                    'map_apply', 'checkpoint_retry', 'job_purge', 'noop', 'call'));
ALTER TABLE dbsync.job ADD CONSTRAINT job_max_attempts_check CHECK (max_attempts >= 1);
DROP INDEX dbsync.job_due_idx;
CREATE INDEX job_due_idx ON dbsync.job (priority, run_at, id) WHERE state = 'pending';
CREATE INDEX job_history_idx ON dbsync.job (finished_at) WHERE state IN ('done', 'failed');
-- A subscription's recurring pull is unique; pulls enqueued by hand come and go beside it.
DROP INDEX dbsync.job_pull_idx;
CREATE UNIQUE INDEX job_pull_idx ON dbsync.job (subscription_id)
    WHERE kind = 'changes_pull' AND repeat_every IS NOT NULL;
-- At most one waiting apply per subscription: the next one covers everything staged by then.
CREATE UNIQUE INDEX job_map_apply_idx ON dbsync.job (subscription_id)
    WHERE kind = 'map_apply' AND state = 'pending';

CREATE OR REPLACE VIEW dbsync.subscription_status AS
SELECT s.id,
       s.server,
       s.evidences,
       s.enabled,
       s.phase,
       s.cursor_version,
       s.remote_version,
       CASE WHEN s.phase = 'load' THEN NULL
            ELSE greatest(s.remote_version - s.cursor_version, 0) END AS lag_versions,
       s.last_run_at,
       s.last_success_at,
       s.failures,
       s.last_error,
       s.last_error_at,
       j.state = 'running' AS running,
       CASE WHEN s.enabled AND j.state = 'pending' THEN j.run_at END AS next_run_at
  FROM dbsync.subscription s
  LEFT JOIN dbsync.job j ON j.subscription_id = s.id AND j.kind = 'changes_pull' AND j.repeat_every IS NOT NULL;

-- Wakes the database's runners when the transaction that added or rescheduled jobs commits.
CREATE FUNCTION dbsync.job_wake_on_commit()
RETURNS trigger
AS 'MODULE_PATHNAME', 'dbsync_job_wake_on_commit'
LANGUAGE C;
CREATE TRIGGER job_wake AFTER INSERT OR UPDATE OF run_at, state ON dbsync.job
    FOR EACH STATEMENT EXECUTE FUNCTION dbsync.job_wake_on_commit();

-- Jobs a DBA may enqueue, and the arguments each one takes.
CREATE FUNCTION @extschema@.dbsync_job_enqueue(
    kind text,
    args jsonb DEFAULT '{}',
    run_at timestamptz DEFAULT now(),
    priority integer DEFAULT 10,
    max_attempts integer DEFAULT 5)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    sub dbsync.subscription;
    fn regprocedure;
    job_id bigint;
BEGIN
    IF kind IS NULL OR args IS NULL OR run_at IS NULL OR priority IS NULL OR max_attempts IS NULL THEN
        RAISE EXCEPTION 'the arguments of dbsync_job_enqueue must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(args) <> 'object' THEN
        RAISE EXCEPTION 'job arguments must be a JSON object, not %', jsonb_typeof(args)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_attempts < 1 THEN
        RAISE EXCEPTION 'max_attempts must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    CASE kind
    WHEN 'changes_pull', 'map_apply', 'checkpoint_retry' THEN
        IF NOT args ? 'server' OR jsonb_typeof(args->'server') <> 'string' THEN
            RAISE EXCEPTION 'a % job needs {"server": "<name>"}', kind USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT * INTO sub FROM dbsync.subscription s WHERE s.server = args->>'server';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'server "%" has no subscription', args->>'server' USING ERRCODE = 'undefined_object';
        END IF;
        IF NOT pg_has_role(current_user, sub.owner, 'MEMBER') THEN
            RAISE EXCEPTION 'permission denied for the subscription of server "%"', sub.server
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    WHEN 'replication_sync' THEN
        IF jsonb_typeof(args->'config') <> 'number' THEN
            RAISE EXCEPTION 'a replication_sync job needs {"config": <key>}' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM dbsync.replication_config_visible((args->>'config')::bigint);
        -- The config's recurring job, if it has one, is that key's only job: run it at run_at instead.
        UPDATE dbsync.job j SET run_at = dbsync_job_enqueue.run_at, priority = dbsync_job_enqueue.priority
         WHERE j.kind = 'replication_sync' AND (j.args->>'config')::bigint = (dbsync_job_enqueue.args->>'config')::bigint
        RETURNING j.id INTO job_id;
        IF FOUND THEN
            RETURN job_id;
        END IF;
    WHEN 'call' THEN
        fn := to_regprocedure(coalesce(args->>'function', '') || '(jsonb)');
        IF fn IS NULL THEN
            RAISE EXCEPTION 'a call job needs {"function": "<name>"} naming a function that takes jsonb'
                USING ERRCODE = 'undefined_function',
                      DETAIL = format('No function %s(jsonb) exists.', coalesce(args->>'function', '<missing>'));
        END IF;
        IF NOT has_function_privilege(fn, 'EXECUTE') THEN
            RAISE EXCEPTION 'permission denied for function %', fn USING ERRCODE = 'insufficient_privilege';
        END IF;
        args := args || jsonb_build_object('function', fn::text);
    WHEN 'noop', 'job_purge', 'ilog_maintain' THEN
        NULL;
    ELSE
        RAISE EXCEPTION 'unknown job kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Kinds: changes_pull, map_apply, checkpoint_retry, replication_sync, call, noop, '
                         'job_purge, ilog_maintain.';
    END CASE;
    args := args - 'server' || CASE WHEN sub.id IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('server', sub.server) END;
    INSERT INTO dbsync.job AS j (kind, args, subscription_id, owner, run_at, priority, max_attempts)
    VALUES (dbsync_job_enqueue.kind, dbsync_job_enqueue.args, sub.id, coalesce(sub.owner, current_user::regrole::oid),
            dbsync_job_enqueue.run_at, dbsync_job_enqueue.priority, dbsync_job_enqueue.max_attempts)
    ON CONFLICT (subscription_id) WHERE kind = 'map_apply' AND state = 'pending'
    DO UPDATE SET run_at = least(j.run_at, excluded.run_at), priority = least(j.priority, excluded.priority)
    RETURNING j.id INTO job_id;
    RETURN job_id;
END
$$;

-- Internal: what the worker's job_purge job runs; finished one-off jobs older than keep go.
CREATE FUNCTION dbsync.job_purge(keep interval)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM dbsync.job
         WHERE state IN ('done', 'failed') AND repeat_every IS NULL AND finished_at < now() - keep
        RETURNING 1)
    SELECT count(*) FROM gone;
$$;

-- Id 0, not the sequence's: CREATE EXTENSION creates the sequence in this same transaction, and with
-- wal_level = minimal a sequence's first values taken there are not WAL-logged, so after a crash the
-- sequence would hand them out again (seen as duplicate job ids after a runner was killed).
INSERT INTO dbsync.job (id, kind, owner, repeat_every, priority)
SELECT 0, 'job_purge', (SELECT relowner FROM pg_class WHERE oid = 'dbsync.job'::regclass), interval '1 hour', 100;

------------------------------------------------------------------------------------------------
-- The connector: mappings, bindings, checkpoints, listeners
------------------------------------------------------------------------------------------------
-- Which record the apply of a subscription reaches: staged records are final up to this version.
CREATE INDEX record_version_idx ON dbsync.record (subscription_id, version);

CREATE TABLE dbsync.mapping (
    id              serial PRIMARY KEY,
    subscription_id integer NOT NULL REFERENCES dbsync.subscription ON DELETE CASCADE,
    evidence        text NOT NULL,
    target          regclass NOT NULL,
    key_column      name NOT NULL,          -- the target's one-column primary key
    fields          jsonb NOT NULL,         -- {"remote field": "column"}
    transform       regprocedure,           -- f(jsonb) -> jsonb of {"column": value}
    refs            jsonb NOT NULL,         -- {"remote field": {"column": .., "evidence": ..}}
    on_delete       text NOT NULL,          -- 'delete', 'ignore' or 'mark'
    mark_column     name,                   -- for 'mark': boolean (true) or timestamp (now())
    enabled         boolean NOT NULL DEFAULT true,
    owner           oid NOT NULL,
    applied_version bigint NOT NULL DEFAULT 0,  -- staged records up to this version are applied
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_applied_at timestamptz,
    UNIQUE (subscription_id, evidence, target),
    CHECK (on_delete IN ('delete', 'ignore', 'mark') AND (on_delete = 'mark') = (mark_column IS NOT NULL))
);

-- One per mapped remote record: its ids on both sides and the version applied.
CREATE TABLE dbsync.binding (
    mapping_id   integer NOT NULL REFERENCES dbsync.mapping ON DELETE CASCADE,
    remote_id    bigint NOT NULL,
    evidence     text NOT NULL,
    code         text,                      -- the record's kod: "code:<kod>" points at it
    external_ids text[],                    -- as the last change listed them (code:, ext:)
    local_key    text,                      -- the target row's key; NULL once deleted there
    version      bigint NOT NULL,           -- the staged version last applied
    deleted      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mapping_id, remote_id)
);
CREATE INDEX binding_code_idx ON dbsync.binding (mapping_id, code);

-- Records that could not be applied, and why; one open checkpoint per record and mapping.
CREATE TABLE dbsync.checkpoint (
    id               bigserial PRIMARY KEY,
    mapping_id       integer NOT NULL REFERENCES dbsync.mapping ON DELETE CASCADE,
    evidence         text NOT NULL,
    remote_id        bigint NOT NULL,
    version          bigint NOT NULL,
    reason           text NOT NULL CHECK (reason IN ('reference', 'error')),
    sqlstate         text,
    error            text NOT NULL,
    payload          jsonb,
    waiting_evidence text,                  -- reference: the record it waits for
    waiting_id       bigint,
    waiting_code     text,
    attempts         integer NOT NULL DEFAULT 1,
    reviewed         boolean NOT NULL DEFAULT false,
    resolution       text CHECK (resolution IN ('applied', 'resolved', 'superseded')),
    resolved_by      name,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (reviewed = (resolution IS NOT NULL))
);
CREATE UNIQUE INDEX checkpoint_open_idx ON dbsync.checkpoint (mapping_id, remote_id) WHERE NOT reviewed;
CREATE INDEX checkpoint_waiting_idx ON dbsync.checkpoint (waiting_evidence, waiting_id) WHERE NOT reviewed;

-- SQL functions called after each applied record, in the same transaction.
CREATE TABLE dbsync.listener (
    id              serial PRIMARY KEY,
    subscription_id integer NOT NULL REFERENCES dbsync.subscription ON DELETE CASCADE,
    evidence        text NOT NULL,
    function        regprocedure NOT NULL,
    owner           oid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription_id, evidence, function)
);

-- Internal: the subscription of a server, for a role that is a member of its owner.
CREATE FUNCTION dbsync.subscription_of(server text)
RETURNS dbsync.subscription
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub dbsync.subscription;
BEGIN
    IF server IS NULL THEN
        RAISE EXCEPTION 'server name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO sub FROM dbsync.subscription s WHERE s.server = subscription_of.server;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'server "%" has no subscription', server
            USING ERRCODE = 'undefined_object', HINT = 'Subscribe first: SELECT dbsync_subscribe(''' || server || ''');';
    END IF;
    IF NOT pg_has_role(current_user, sub.owner, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied for the subscription of server "%"', server
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Mapped records are applied with the rights of the subscription''s owner.';
    END IF;
    RETURN sub;
END
$$;

-- Internal: checks an evidence name the way dbsync_subscribe does.
CREATE FUNCTION dbsync.check_evidence(sub dbsync.subscription, evidence text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF evidence IS NULL OR evidence !~ '^[a-z0-9-]+$' THEN
        RAISE EXCEPTION 'invalid evidence name %', coalesce(quote_literal(evidence), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give a name such as ''faktura-vydana'' or ''adresar''.';
    END IF;
    IF sub.evidences IS NOT NULL AND NOT evidence = ANY (sub.evidences) THEN
        RAISE EXCEPTION 'the subscription of server "%" does not sync evidence "%"', sub.server, evidence
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It syncs %s.', array_to_string(sub.evidences, ', '));
    END IF;
END
$$;

-- Internal: checks a function that takes jsonb, for a role that will run it.
CREATE FUNCTION dbsync.check_jsonb_function(fn regprocedure, returns_jsonb boolean, what text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p pg_proc;
BEGIN
    SELECT * INTO p FROM pg_proc WHERE oid = fn;
    IF p.pronargs <> 1 OR p.proargtypes[0] <> 'jsonb'::regtype OR p.proretset
       OR (returns_jsonb AND p.prorettype <> 'jsonb'::regtype) OR p.prokind <> 'f' THEN
        RAISE EXCEPTION '% % must take one jsonb argument%', what, fn,
                        CASE WHEN returns_jsonb THEN ' and return jsonb' ELSE '' END
            USING ERRCODE = 'invalid_function_definition';
    END IF;
    IF NOT has_function_privilege(fn, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %', fn USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

-- Internal: the type of a target column as a cast names it (no typmod: the assignment checks it).
CREATE FUNCTION dbsync.column_type(tbl regclass, col name)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
$$;

-- Internal: checks a writable target column.
CREATE FUNCTION dbsync.check_target_column(tbl regclass, col text, what text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a pg_attribute;
BEGIN
    IF col IS NULL THEN
        RAISE EXCEPTION '% must name a column of %', what, tbl USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO a FROM pg_attribute
     WHERE attrelid = tbl AND attname = col AND attnum > 0 AND NOT attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" of % does not exist', col, tbl
            USING ERRCODE = 'undefined_column', DETAIL = format('It is named by %s.', what);
    END IF;
    IF a.attgenerated <> '' THEN
        RAISE EXCEPTION 'column "%" of % is generated and cannot be written', col, tbl
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE FUNCTION @extschema@.dbsync_map(
    server text,
    evidence text,
    target regclass,
    fields jsonb DEFAULT '{}',
    transform regproc DEFAULT NULL,
    refs jsonb DEFAULT '{}',
    on_delete text DEFAULT 'delete',
    enabled boolean DEFAULT true)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub dbsync.subscription := dbsync.subscription_of(server);
    key_col name;
    fn regprocedure;
    norm_refs jsonb := '{}';
    f record;
    ref_col text;
    ref_ev text;
    mark name;
    mark_type text;
    columns text[] := '{}';
    map_id integer;
BEGIN
    PERFORM dbsync.check_evidence(sub, evidence);
    IF target IS NULL THEN
        RAISE EXCEPTION 'target table must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = target) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', target USING ERRCODE = 'wrong_object_type';
    END IF;
    SELECT a.attname INTO key_col
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = target AND i.indisprimary AND i.indnatts = 1;
    IF key_col IS NULL THEN
        RAISE EXCEPTION 'table % needs a one-column primary key', target
            USING ERRCODE = 'invalid_table_definition',
                  DETAIL = 'Bindings link each remote record to the key of its row.';
    END IF;
    IF fields IS NULL OR jsonb_typeof(fields) <> 'object' OR refs IS NULL OR jsonb_typeof(refs) <> 'object' THEN
        RAISE EXCEPTION 'fields and refs must be JSON objects of {"remote field": "column"}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR f IN SELECT * FROM jsonb_each(fields) LOOP
        IF jsonb_typeof(f.value) <> 'string' THEN
            RAISE EXCEPTION 'field "%" must map to a column name, not %', f.key, f.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM dbsync.check_target_column(target, f.value->>0, format('field "%s"', f.key));
        columns := columns || (f.value->>0);
    END LOOP;
    FOR f IN SELECT * FROM jsonb_each(refs) LOOP
        ref_col := CASE jsonb_typeof(f.value) WHEN 'string' THEN f.value->>0 WHEN 'object' THEN f.value->>'column' END;
        ref_ev := CASE WHEN jsonb_typeof(f.value) = 'object' THEN f.value->>'evidence' END;
        PERFORM dbsync.check_target_column(target, ref_col, format('reference "%s"', f.key));
        IF ref_ev IS NOT NULL AND ref_ev !~ '^[a-z0-9-]+$' THEN
            RAISE EXCEPTION 'invalid evidence name % for reference "%"', quote_literal(ref_ev), f.key
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- Without a given evidence, the record's "<field>@ref" link names it; learn it from a staged record.
        IF ref_ev IS NULL THEN
            SELECT substring(r.payload->>(f.key || '@ref') FROM '^/c/[^/]+/([^/]+)/') INTO ref_ev
              FROM dbsync.record r
             WHERE r.subscription_id = sub.id AND r.evidence = dbsync_map.evidence AND r.payload ? (f.key || '@ref')
             LIMIT 1;
        END IF;
        norm_refs := norm_refs || jsonb_build_object(f.key, jsonb_build_object('column', ref_col, 'evidence', ref_ev));
        columns := columns || ref_col;
    END LOOP;
    IF (SELECT count(*) <> count(DISTINCT c) FROM unnest(columns) c) THEN
        RAISE EXCEPTION 'a column of % is named twice in fields and refs', target
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF transform IS NOT NULL THEN
        fn := transform::oid::regprocedure;
        PERFORM dbsync.check_jsonb_function(fn, true, 'transform');
    END IF;
    IF cardinality(columns) = 0 AND fn IS NULL THEN
        RAISE EXCEPTION 'the mapping of "%" writes no column', evidence
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give fields, refs or a transform.';
    END IF;
    IF NOT key_col = ANY (columns)
       AND NOT EXISTS (SELECT FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                        WHERE d.adrelid = target AND a.attname = key_col)
       AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = target AND a.attname = key_col
                                                   AND a.attidentity <> '') THEN
        RAISE EXCEPTION 'the key column "%" of % has no default and is not mapped', key_col, target
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Map a remote field to it, or give it a default.';
    END IF;
    IF on_delete IS NULL THEN
        RAISE EXCEPTION 'on_delete must not be null' USING ERRCODE = 'null_value_not_allowed';
    ELSIF on_delete NOT IN ('delete', 'ignore') THEN
        PERFORM dbsync.check_target_column(target, on_delete, 'on_delete');
        mark := on_delete;
        mark_type := dbsync.column_type(target, mark);
        IF mark_type NOT IN ('boolean', 'timestamp with time zone', 'timestamp without time zone') THEN
            RAISE EXCEPTION 'on_delete column "%" of % must be boolean or a timestamp, not %', mark, target, mark_type
                USING ERRCODE = 'datatype_mismatch';
        END IF;
        IF mark = ANY (columns) THEN
            RAISE EXCEPTION 'on_delete column "%" is also mapped', mark USING ERRCODE = 'invalid_parameter_value';
        END IF;
        on_delete := 'mark';
    END IF;
    -- The owner of the subscription applies: it needs the rights.
    IF NOT has_table_privilege(sub.owner, target, 'SELECT, INSERT, UPDATE')
       OR (on_delete = 'delete' AND NOT has_table_privilege(sub.owner, target, 'DELETE')) THEN
        RAISE EXCEPTION 'role "%" (owner of the subscription) may not write %', sub.owner::regrole, target
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Grant SELECT, INSERT, UPDATE (and DELETE for on_delete => ''delete'') on the table.';
    END IF;
    INSERT INTO dbsync.mapping (subscription_id, evidence, target, key_column, fields, transform, refs,
                                on_delete, mark_column, enabled, owner)
    VALUES (sub.id, evidence, target, key_col, fields, fn, norm_refs, on_delete, mark, enabled, current_user::regrole)
    RETURNING id INTO map_id;
    -- What is staged already is applied (backfilled) by the worker, or by dbsync_map_apply.
    PERFORM dbsync.map_schedule(sub.id);
    RETURN map_id;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'evidence "%" of server "%" is already mapped into %', evidence, server, target
        USING ERRCODE = 'duplicate_object', HINT = 'Remove it first with dbsync_unmap.';
END
$$;

CREATE FUNCTION @extschema@.dbsync_unmap(server text, evidence text, target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub dbsync.subscription := dbsync.subscription_of(server);
BEGIN
    DELETE FROM dbsync.mapping m
     WHERE m.subscription_id = sub.id AND m.evidence = dbsync_unmap.evidence AND m.target = dbsync_unmap.target;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'evidence "%" of server "%" is not mapped into %', evidence, server, target
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

-- Internal: a pending map_apply job for the subscription, if it has enabled mappings.
CREATE FUNCTION dbsync.map_schedule(sub_id integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO dbsync.job AS j (kind, args, subscription_id, owner, priority)
    SELECT 'map_apply', jsonb_build_object('server', s.server), s.id, s.owner, 5
      FROM dbsync.subscription s
     WHERE s.id = sub_id AND EXISTS (SELECT FROM dbsync.mapping m WHERE m.subscription_id = s.id AND m.enabled)
    -- Updating the pending job (not DO NOTHING) locks it until this transaction ends: no runner can
    -- claim it meanwhile and run it against the cursor as it was before this transaction.
    ON CONFLICT (subscription_id) WHERE kind = 'map_apply' AND state = 'pending'
    DO UPDATE SET run_at = least(j.run_at, excluded.run_at);
END
$$;

-- Staged changes committed with a new cursor: their mappings have work.
CREATE FUNCTION dbsync.map_on_cursor()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dbsync.map_schedule(NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER subscription_map_apply AFTER UPDATE OF cursor_version, phase ON dbsync.subscription
    FOR EACH ROW WHEN (NEW.cursor_version IS DISTINCT FROM OLD.cursor_version OR NEW.phase <> OLD.phase)
    EXECUTE FUNCTION dbsync.map_on_cursor();

-- Internal: a mapping's references with the evidence each points at: the one given, else the
-- evidence mapped into the table that the column's foreign key references (NULL: the record's
-- "<field>@ref" link says it, record by record).
CREATE FUNCTION dbsync.map_refs(m dbsync.mapping)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(r.key, jsonb_build_object('column', r.value->>'column', 'evidence',
           coalesce(r.value->>'evidence',
                    (SELECT m2.evidence FROM pg_constraint c
                       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                       JOIN dbsync.mapping m2 ON m2.target = c.confrelid AND m2.subscription_id = m.subscription_id
                      WHERE c.conrelid = m.target AND c.contype = 'f' AND cardinality(c.conkey) = 1
                        AND a.attname = r.value->>'column'
                      ORDER BY m2.id LIMIT 1)))), '{}')
      FROM jsonb_each(m.refs) r;
$$;

-- Internal: the statement that applies staged records of a mapping. $1: record ids, $2: highest
-- version to apply. It returns (changed rows, inserted, waiting on references, listener events).
-- Upserts insert unbound records (new key first, so the binding knows it) and update bound ones; a
-- record whose reference is not bound yet becomes a 'reference' checkpoint instead.
CREATE FUNCTION dbsync.map_upsert_sql(m dbsync.mapping, with_events boolean)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tgt text := m.target::text;
    key_type text := dbsync.column_type(m.target, m.key_column);
    key_col text := quote_ident(m.key_column);
    field_of jsonb := '{}';         -- column -> remote field
    ref_of jsonb := '{}';           -- column -> index in the ref arrays
    ref_evs text[] := '{}';
    ref_ids text[] := '{}';
    ref_codes text[] := '{}';
    ref_wants text[] := '{}';
    ref_keys text[] := '{}';
    ref_maps text[] := '{}';        -- the referenced mapping's id: a constant when the evidence is known
    f record;
    a record;
    n integer := 0;
    expr text;
    field_expr text;
    ins_cols text[] := '{}';
    ins_vals text[] := '{}';
    upd_cols text[] := '{}';
    upd_vals text[] := '{}';
    key_expr text;
    link text;
BEGIN
    FOR f IN SELECT * FROM jsonb_each_text(m.fields) LOOP
        field_of := field_of || jsonb_build_object(f.value, f.key);
    END LOOP;
    FOR f IN SELECT key, value->>'column' AS col, value->>'evidence' AS ev FROM jsonb_each(dbsync.map_refs(m)) ORDER BY key LOOP
        n := n + 1;
        ref_of := ref_of || jsonb_build_object(f.col, n);
        link := format('(r.payload->>%L)', f.key || '@ref');
        ref_evs := ref_evs || format('coalesce(%L, substring(%s FROM ''^/c/[^/]+/([^/]+)/''))', f.ev, link);
        ref_ids := ref_ids || format('coalesce(substring(%1$s FROM ''/([0-9]+)\.json$'')::bigint, '
                                     'CASE WHEN r.payload->>%2$L ~ ''^[0-9]{1,18}$'' THEN (r.payload->>%2$L)::bigint END)',
                                     link, f.key);
        ref_codes := ref_codes || format('CASE WHEN r.payload->>%1$L LIKE ''code:%%'' THEN substr(r.payload->>%1$L, 6) END',
                                         f.key);
        ref_wants := ref_wants || format('nullif(r.payload->>%L, '''')', f.key);
        -- The bound key: by remote id when the record says it, else by code, in the evidence's first mapping.
        ref_maps := ref_maps || CASE WHEN f.ev IS NULL THEN
            format('(SELECT min(m2.id) FROM dbsync.mapping m2 WHERE m2.subscription_id = %s AND m2.evidence = s.ref_evs[%s])',
                   m.subscription_id, n)
            ELSE coalesce((SELECT min(m2.id)::text FROM dbsync.mapping m2
                            WHERE m2.subscription_id = m.subscription_id AND m2.evidence = f.ev), 'NULL') END;
        ref_keys := ref_keys || format(
            'coalesce((SELECT b2.local_key FROM dbsync.binding b2 WHERE b2.mapping_id = m2.id AND b2.remote_id = s.ref_ids[%1$s] '
            'AND b2.local_key IS NOT NULL), (SELECT b2.local_key FROM dbsync.binding b2 WHERE b2.mapping_id = m2.id '
            'AND s.ref_ids[%1$s] IS NULL AND b2.code = s.ref_codes[%1$s] AND b2.local_key IS NOT NULL LIMIT 1))',
            n);
    END LOOP;

    FOR a IN SELECT att.attname, format_type(att.atttypid, NULL) AS typ, att.attidentity,
                    pg_get_expr(d.adbin, d.adrelid) AS def
               FROM pg_attribute att LEFT JOIN pg_attrdef d ON d.adrelid = att.attrelid AND d.adnum = att.attnum
              WHERE att.attrelid = m.target AND att.attnum > 0 AND NOT att.attisdropped AND att.attgenerated = ''
              ORDER BY att.attnum LOOP
        field_expr := NULL;
        IF field_of ? a.attname THEN
            field_expr := format('(s.payload->>%L)::%s', field_of->>a.attname, a.typ);
        ELSIF ref_of ? a.attname THEN
            field_expr := format('s.ref_keys[%s]::%s', ref_of->>a.attname, a.typ);
        ELSIF a.attname = m.mark_column THEN
            field_expr := CASE WHEN a.typ = 'boolean' THEN 'false' ELSE format('NULL::%s', a.typ) END;
        END IF;
        IF a.attname = m.key_column THEN
            -- The key of a new row, known before the insert so that its binding can name it.
            key_expr := coalesce(field_expr,
                                 CASE WHEN a.attidentity <> '' THEN
                                      format('nextval(pg_get_serial_sequence(%L, %L))', tgt, a.attname) END,
                                 a.def) || '::text';
            ins_cols := ins_cols || key_col;
            ins_vals := ins_vals || format('s.new_key::%s', key_type);
            IF field_expr IS NOT NULL THEN
                upd_cols := upd_cols || key_col;
                upd_vals := upd_vals || field_expr;
            END IF;
            CONTINUE;
        END IF;
        IF m.transform IS NOT NULL THEN
            -- What the transform returns wins over fields; a column it leaves out keeps its value.
            expr := format('CASE WHEN s.t ? %L THEN (s.t->>%L)::%s ELSE %%s END', a.attname, a.attname, a.typ);
            IF a.attidentity = 'a' THEN
                CONTINUE;
            END IF;
            ins_cols := ins_cols || quote_ident(a.attname);
            ins_vals := ins_vals || format(expr, coalesce(field_expr, a.def, 'NULL'));
            upd_cols := upd_cols || quote_ident(a.attname);
            upd_vals := upd_vals || format(expr, coalesce(field_expr, 'x.' || quote_ident(a.attname)));
        ELSIF field_expr IS NOT NULL THEN
            ins_cols := ins_cols || quote_ident(a.attname);
            ins_vals := ins_vals || field_expr;
            upd_cols := upd_cols || quote_ident(a.attname);
            upd_vals := upd_vals || field_expr;
        END IF;
    END LOOP;

    RETURN format($sql$
WITH src AS MATERIALIZED (
    SELECT r.record_id, r.version, r.payload, b.local_key AS old_key, %1$s AS t,
           ARRAY[%2$s]::text[] AS ref_evs, ARRAY[%3$s]::bigint[] AS ref_ids,
           ARRAY[%4$s]::text[] AS ref_codes, ARRAY[%5$s]::text[] AS ref_wants,
           (SELECT c.external_ids FROM dbsync.change c WHERE c.subscription_id = r.subscription_id
               AND c.evidence = r.evidence AND c.record_id = r.record_id ORDER BY c.version DESC LIMIT 1) AS ext_ids
      FROM dbsync.record r
      LEFT JOIN dbsync.binding b ON b.mapping_id = %6$s AND b.remote_id = r.record_id
     WHERE r.subscription_id = %7$s AND r.evidence = %8$L AND r.record_id = ANY ($1) AND r.version <= $2
       AND NOT r.deleted AND r.payload IS NOT NULL AND (b.version IS NULL OR b.version < r.version)
), resolved AS MATERIALIZED (
    SELECT s.*, ARRAY[%9$s]::text[] AS ref_keys
      FROM src s
), ready AS MATERIALIZED (
    SELECT s.*, coalesce(s.old_key, %10$s) AS new_key
      FROM resolved s
     WHERE NOT EXISTS (SELECT FROM generate_subscripts(s.ref_wants, 1) i
                        WHERE s.ref_wants[i] IS NOT NULL AND s.ref_keys[i] IS NULL)
), upd AS (
    UPDATE %11$s AS x SET (%12$s) = ROW(%13$s)
      FROM ready s WHERE s.old_key IS NOT NULL AND x.%14$s = s.old_key::%15$s
    RETURNING s.record_id
), ins AS (
    INSERT INTO %11$s AS x (%16$s) OVERRIDING SYSTEM VALUE
    SELECT %17$s FROM ready s WHERE s.record_id NOT IN (SELECT record_id FROM upd)
    RETURNING 1
), bind AS (
    INSERT INTO dbsync.binding AS b (mapping_id, remote_id, evidence, code, external_ids, local_key, version)
    SELECT %6$s, s.record_id, %8$L, s.payload->>'kod', s.ext_ids, s.new_key, s.version FROM ready s
    ON CONFLICT (mapping_id, remote_id) DO UPDATE
       SET code = excluded.code, external_ids = excluded.external_ids, local_key = excluded.local_key,
           version = excluded.version, deleted = false, updated_at = now()
), closed AS (
    UPDATE dbsync.checkpoint c SET reviewed = true, resolution = 'applied', updated_at = now()
     WHERE c.mapping_id = %6$s AND NOT c.reviewed AND c.remote_id IN (SELECT record_id FROM ready)
), waiting AS (
    INSERT INTO dbsync.checkpoint AS c (mapping_id, evidence, remote_id, version, reason, error, payload,
                                        waiting_evidence, waiting_id, waiting_code)
    SELECT %6$s, %8$L, s.record_id, s.version, 'reference',
           format('reference "%%s" to %%s %%s is not bound yet', w.field, coalesce(s.ref_evs[w.i], '<unknown evidence>'),
                  coalesce(s.ref_ids[w.i]::text, s.ref_wants[w.i])),
           s.payload, s.ref_evs[w.i], s.ref_ids[w.i], s.ref_codes[w.i]
      FROM resolved s
      CROSS JOIN LATERAL (SELECT i, (ARRAY[%18$s]::text[])[i] AS field FROM generate_subscripts(s.ref_wants, 1) i
                           WHERE s.ref_wants[i] IS NOT NULL AND s.ref_keys[i] IS NULL ORDER BY i LIMIT 1) w
    ON CONFLICT (mapping_id, remote_id) WHERE NOT reviewed DO UPDATE
       SET version = excluded.version, reason = excluded.reason, sqlstate = NULL, error = excluded.error,
           payload = excluded.payload, waiting_evidence = excluded.waiting_evidence,
           waiting_id = excluded.waiting_id, waiting_code = excluded.waiting_code,
           attempts = c.attempts + 1, updated_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM ready)::bigint, (SELECT count(*) FROM ins)::bigint, (SELECT count(*) FROM waiting)::bigint,
       %19$s
$sql$,
        CASE WHEN m.transform IS NULL THEN 'NULL::jsonb' ELSE format('%s(r.payload)', m.transform::regproc) END,
        array_to_string(ref_evs, ', '), array_to_string(ref_ids, ', '),
        array_to_string(ref_codes, ', '), array_to_string(ref_wants, ', '),
        m.id, m.subscription_id, m.evidence,
        CASE WHEN n = 0 THEN '' ELSE
            (SELECT string_agg(format('(SELECT %s FROM (SELECT %s::integer AS id) m2)', ref_keys[i], ref_maps[i]),
                               ', ' ORDER BY i)
               FROM generate_subscripts(ref_keys, 1) i) END,
        key_expr,
        tgt, array_to_string(upd_cols, ', '),
        CASE WHEN cardinality(upd_cols) = 0 THEN 'x.' || key_col ELSE array_to_string(upd_vals, ', ') END,
        key_col, key_type,
        array_to_string(ins_cols, ', '), array_to_string(ins_vals, ', '),
        (SELECT string_agg(quote_literal(k), ', ' ORDER BY k) FROM jsonb_object_keys(m.refs) k),
        CASE WHEN with_events THEN
            'coalesce((SELECT jsonb_agg(jsonb_build_object(''operation'', CASE WHEN s.old_key IS NULL OR s.record_id NOT IN '
            '(SELECT record_id FROM upd) THEN ''insert'' ELSE ''update'' END, ''remote_id'', s.record_id, '
            '''key'', s.new_key, ''version'', s.version, ''payload'', s.payload) ORDER BY s.version, s.record_id) '
            'FROM ready s), ''[]'')'
        ELSE 'NULL::jsonb' END);
END
$$;

-- Internal: the statement that applies deleted records of a mapping (same parameters and result).
CREATE FUNCTION dbsync.map_delete_sql(m dbsync.mapping, with_events boolean)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key_type text := dbsync.column_type(m.target, m.key_column);
    action text;
BEGIN
    action := CASE m.on_delete
        WHEN 'delete' THEN format('DELETE FROM %s x USING src s WHERE s.old_key IS NOT NULL AND x.%s = s.old_key::%s '
                                  'RETURNING s.record_id', m.target, quote_ident(m.key_column), key_type)
        WHEN 'mark' THEN format('UPDATE %s x SET %s = %s FROM src s WHERE s.old_key IS NOT NULL AND x.%s = s.old_key::%s '
                                'RETURNING s.record_id', m.target, quote_ident(m.mark_column),
                                CASE WHEN dbsync.column_type(m.target, m.mark_column) = 'boolean' THEN 'true' ELSE 'now()' END,
                                quote_ident(m.key_column), key_type)
        ELSE 'SELECT s.record_id FROM src s WHERE false' END;
    RETURN format($sql$
WITH src AS MATERIALIZED (
    SELECT r.record_id, r.version, r.payload, b.local_key AS old_key
      FROM dbsync.record r
      JOIN dbsync.binding b ON b.mapping_id = %1$s AND b.remote_id = r.record_id
     WHERE r.subscription_id = %2$s AND r.evidence = %3$L AND r.record_id = ANY ($1) AND r.version <= $2
       AND r.deleted AND b.version < r.version
), act AS (
    %4$s
), bind AS (
    UPDATE dbsync.binding b SET deleted = true, version = s.version, updated_at = now(),
           local_key = CASE WHEN %5$L = 'delete' THEN NULL ELSE b.local_key END
      FROM src s WHERE b.mapping_id = %1$s AND b.remote_id = s.record_id
)
SELECT (SELECT count(*) FROM act)::bigint, 0::bigint, 0::bigint, %6$s
$sql$,
        m.id, m.subscription_id, m.evidence, action, m.on_delete,
        CASE WHEN with_events THEN
            'coalesce((SELECT jsonb_agg(jsonb_build_object(''operation'', ''delete'', ''remote_id'', s.record_id, '
            '''key'', s.old_key, ''version'', s.version, ''payload'', s.payload) ORDER BY s.version, s.record_id) '
            'FROM src s' || CASE WHEN m.on_delete = 'ignore' THEN '' ELSE ' WHERE s.record_id IN (SELECT record_id FROM act)' END
            || '), ''[]'')'
        ELSE 'NULL::jsonb' END);
END
$$;

-- Internal: applies records by id; a failing set is split in halves until the failing records are
-- alone, and each of those becomes an 'error' checkpoint. Returns {applied, inserted, waiting, failed}.
CREATE FUNCTION dbsync.map_apply_ids(m dbsync.mapping, stmt text, ids bigint[], upto bigint, deleting boolean)
RETURNS bigint[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    applied bigint;
    inserted bigint;
    waiting bigint;
    events jsonb;
    ev jsonb;
    context jsonb;
    calls text[];
    call text;
    half integer;
    a bigint[];
    b bigint[];
    state text;
    msg text;
    detail text;
BEGIN
    IF cardinality(ids) = 0 THEN
        RETURN ARRAY[0, 0, 0, 0];
    END IF;
    BEGIN
        EXECUTE stmt INTO applied, inserted, waiting, events USING ids, upto;
        IF events IS NOT NULL THEN
            -- What every event of this mapping says, and its listeners, looked up once.
            SELECT jsonb_build_object('server', s.server, 'evidence', m.evidence, 'table', m.target::text),
                   array_agg(format('SELECT %s($1)', l.function::regproc) ORDER BY l.id)
              INTO context, calls
              FROM dbsync.subscription s JOIN dbsync.listener l ON l.subscription_id = s.id AND l.evidence = m.evidence
             WHERE s.id = m.subscription_id
             GROUP BY s.server;
            FOR ev IN SELECT value FROM jsonb_array_elements(events) LOOP
                FOREACH call IN ARRAY coalesce(calls, '{}') LOOP
                    EXECUTE call USING ev || context;
                END LOOP;
            END LOOP;
        END IF;
        RETURN ARRAY[applied, inserted, waiting, 0];
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
        -- Not the record's fault: the whole apply fails and runs again.
        IF left(state, 2) IN ('40', '53', '54', '55', '57', '58', 'XX') THEN
            RAISE;
        END IF;
    END;
    IF cardinality(ids) > 1 THEN
        half := cardinality(ids) / 2;
        a := dbsync.map_apply_ids(m, stmt, ids[1:half], upto, deleting);
        b := dbsync.map_apply_ids(m, stmt, ids[half + 1:], upto, deleting);
        RETURN ARRAY[a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4]];
    END IF;
    INSERT INTO dbsync.checkpoint AS c (mapping_id, evidence, remote_id, version, reason, sqlstate, error, payload)
    SELECT m.id, m.evidence, r.record_id, r.version, 'error', state,
           msg || CASE WHEN detail IS NULL OR detail = '' THEN '' ELSE ' (' || detail || ')' END, r.payload
      FROM dbsync.record r
     WHERE r.subscription_id = m.subscription_id AND r.evidence = m.evidence AND r.record_id = ids[1]
    ON CONFLICT (mapping_id, remote_id) WHERE NOT reviewed DO UPDATE
       SET version = excluded.version, reason = 'error', sqlstate = excluded.sqlstate, error = excluded.error,
           payload = excluded.payload, waiting_evidence = NULL, waiting_id = NULL, waiting_code = NULL,
           attempts = c.attempts + 1, updated_at = now();
    RETURN ARRAY[0, 0, 0, 1];
END
$$;

-- Internal: the subscription's enabled mappings, referenced evidences before those that refer to them.
CREATE FUNCTION dbsync.map_order(sub_id integer)
RETURNS SETOF dbsync.mapping
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE dep(id, depth) AS (
        SELECT m.id, 0 FROM dbsync.mapping m WHERE m.subscription_id = sub_id AND m.enabled
        UNION ALL
        SELECT m.id, d.depth + 1
          FROM dep d
          JOIN dbsync.mapping p ON p.id = d.id
          JOIN dbsync.mapping m ON m.subscription_id = sub_id AND m.enabled AND m.id <> p.id
               AND EXISTS (SELECT FROM jsonb_each(dbsync.map_refs(m)) r WHERE r.value->>'evidence' = p.evidence)
         WHERE d.depth < 8)
    SELECT m.* FROM dbsync.mapping m
      JOIN (SELECT id, max(depth) AS depth FROM dep GROUP BY id) d ON d.id = m.id
     ORDER BY d.depth, m.id;
$$;

-- Internal: one apply round of a subscription in the caller's transaction: a window of at most
-- about max_records staged records (all mappings), parents' upserts first and their deletes last,
-- then records whose awaited reference got bound, then the mappings' cursors. The staged records
-- and the cursors that cover them commit together; rounds of one subscription never overlap.
CREATE FUNCTION dbsync.map_apply_round(sub_id integer, max_records integer DEFAULT 10000)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub dbsync.subscription;
    maps dbsync.mapping[];
    m dbsync.mapping;
    upto bigint;
    lo bigint;
    hi bigint;
    ids bigint[];
    res bigint[];
    tot bigint[] := ARRAY[0, 0, 0, 0, 0];
    evs text[];
    with_events boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('dbsync.map_apply'), sub_id);
    SELECT * INTO sub FROM dbsync.subscription WHERE id = sub_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', 0, 'more', false);
    END IF;
    SELECT array_agg(o) INTO maps FROM dbsync.map_order(sub_id) o;
    IF maps IS NULL THEN
        RETURN jsonb_build_object('applied', 0, 'more', false);
    END IF;
    -- Staged records are final below the cursor, the next version to read (the initial load stamps
    -- its records one below the cursor, and they are final once the load is over).
    IF sub.phase = 'sync' THEN
        upto := sub.cursor_version - 1;
    END IF;
    SELECT min(x.applied_version), array_agg(DISTINCT x.evidence) INTO lo, evs FROM unnest(maps) x;
    IF upto IS NULL OR upto <= lo THEN
        hi := lo;
    ELSE
        SELECT r.version INTO hi FROM dbsync.record r
         WHERE r.subscription_id = sub_id AND r.evidence = ANY (evs) AND r.version > lo AND r.version <= upto
         ORDER BY r.version OFFSET greatest(max_records, 1) - 1 LIMIT 1;
        hi := coalesce(hi, upto);
    END IF;

    IF hi > lo THEN
        FOREACH m IN ARRAY maps LOOP
            with_events := EXISTS (SELECT FROM dbsync.listener l
                                    WHERE l.subscription_id = sub_id AND l.evidence = m.evidence);
            SELECT array_agg(r.record_id ORDER BY r.version) INTO ids FROM dbsync.record r
             WHERE r.subscription_id = sub_id AND r.evidence = m.evidence AND NOT r.deleted
               AND r.version > greatest(lo, m.applied_version) AND r.version <= hi;
            res := dbsync.map_apply_ids(m, dbsync.map_upsert_sql(m, with_events), coalesce(ids, '{}'), hi, false);
            tot := ARRAY[tot[1] + res[1] - res[2], tot[2] + res[2], tot[3], tot[4] + res[3], tot[5] + res[4]];
        END LOOP;
        FOR i IN REVERSE cardinality(maps)..1 LOOP
            m := maps[i];
            with_events := EXISTS (SELECT FROM dbsync.listener l
                                    WHERE l.subscription_id = sub_id AND l.evidence = m.evidence);
            SELECT array_agg(r.record_id ORDER BY r.version) INTO ids FROM dbsync.record r
             WHERE r.subscription_id = sub_id AND r.evidence = m.evidence AND r.deleted
               AND r.version > greatest(lo, m.applied_version) AND r.version <= hi;
            res := dbsync.map_apply_ids(m, dbsync.map_delete_sql(m, with_events), coalesce(ids, '{}'), hi, true);
            tot := ARRAY[tot[1], tot[2], tot[3] + res[1], tot[4], tot[5] + res[4]];
            -- A record gone remotely that never reached its row: its open checkpoint has nothing left to apply.
            UPDATE dbsync.checkpoint c SET reviewed = true, resolution = 'superseded', updated_at = now()
             WHERE c.mapping_id = m.id AND NOT c.reviewed AND c.remote_id = ANY (ids)
               AND NOT EXISTS (SELECT FROM dbsync.binding b WHERE b.mapping_id = m.id AND b.remote_id = c.remote_id
                                  AND b.local_key IS NOT NULL AND NOT b.deleted);
        END LOOP;
        UPDATE dbsync.mapping x SET applied_version = hi, last_applied_at = now()
         WHERE x.subscription_id = sub_id AND x.enabled AND x.applied_version < hi;
    END IF;

    -- Records that wait for a reference that is bound now.
    FOREACH m IN ARRAY maps LOOP
        SELECT array_agg(c.remote_id ORDER BY c.version) INTO ids FROM dbsync.checkpoint c
         WHERE c.mapping_id = m.id AND NOT c.reviewed AND c.reason = 'reference'
           -- Two lookups, each on an index (one OR-ed condition scanned every binding per checkpoint).
           AND (EXISTS (SELECT FROM dbsync.mapping m2 JOIN dbsync.binding b ON b.mapping_id = m2.id
                         WHERE m2.subscription_id = sub_id AND m2.evidence = c.waiting_evidence
                           AND b.remote_id = c.waiting_id AND b.local_key IS NOT NULL)
                OR (c.waiting_id IS NULL
                    AND EXISTS (SELECT FROM dbsync.mapping m2 JOIN dbsync.binding b ON b.mapping_id = m2.id
                                 WHERE m2.subscription_id = sub_id AND m2.evidence = c.waiting_evidence
                                   AND b.code = c.waiting_code AND b.local_key IS NOT NULL)));
        IF ids IS NOT NULL THEN
            with_events := EXISTS (SELECT FROM dbsync.listener l
                                    WHERE l.subscription_id = sub_id AND l.evidence = m.evidence);
            m.applied_version := greatest(m.applied_version, hi);
            res := dbsync.map_apply_ids(m, dbsync.map_upsert_sql(m, with_events), ids, greatest(m.applied_version, hi), false);
            tot := ARRAY[tot[1] + res[1] - res[2], tot[2] + res[2], tot[3], tot[4] + res[3], tot[5] + res[4]];
        END IF;
    END LOOP;

    IF tot[1] + tot[2] + tot[3] > 0 THEN
        PERFORM pg_notify('dbsync', json_build_object('server', sub.server, 'subscription', sub_id,
                                                      'applied', tot[1] + tot[2] + tot[3], 'version', hi)::text);
    END IF;
    RETURN jsonb_build_object('from_version', lo, 'to_version', hi, 'inserted', tot[2], 'updated', tot[1],
                              'deleted', tot[3], 'waiting', tot[4], 'failed', tot[5],
                              'more', upto IS NOT NULL AND hi < upto);
END
$$;

-- Applies what is staged for the server's mappings now, in the caller's transaction.
CREATE FUNCTION @extschema@.dbsync_map_apply(server text)
RETURNS TABLE (inserted bigint, updated bigint, deleted bigint, waiting bigint, failed bigint, applied_version bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub dbsync.subscription := dbsync.subscription_of(server);
    r jsonb;
BEGIN
    inserted := 0; updated := 0; deleted := 0; waiting := 0; failed := 0;
    LOOP
        r := dbsync.map_apply_round(sub.id);
        inserted := inserted + coalesce((r->>'inserted')::bigint, 0);
        updated := updated + coalesce((r->>'updated')::bigint, 0);
        deleted := deleted + coalesce((r->>'deleted')::bigint, 0);
        waiting := waiting + coalesce((r->>'waiting')::bigint, 0);
        failed := failed + coalesce((r->>'failed')::bigint, 0);
        EXIT WHEN NOT (r->>'more')::boolean;
    END LOOP;
    SELECT min(m.applied_version) INTO applied_version FROM dbsync.mapping m WHERE m.subscription_id = sub.id AND m.enabled;
    RETURN NEXT;
END
$$;

-- Internal: applies one record's staged state again for a checkpoint; returns the checkpoint's state.
CREATE FUNCTION dbsync.checkpoint_apply(cp dbsync.checkpoint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m dbsync.mapping;
    rec dbsync.record;
    with_events boolean;
    after dbsync.checkpoint;
BEGIN
    SELECT * INTO m FROM dbsync.mapping WHERE id = cp.mapping_id;
    PERFORM pg_advisory_xact_lock(hashtext('dbsync.map_apply'), m.subscription_id);
    SELECT * INTO rec FROM dbsync.record r
     WHERE r.subscription_id = m.subscription_id AND r.evidence = m.evidence AND r.record_id = cp.remote_id;
    with_events := EXISTS (SELECT FROM dbsync.listener l WHERE l.subscription_id = m.subscription_id AND l.evidence = m.evidence);
    IF rec.record_id IS NULL OR (rec.deleted AND NOT EXISTS (SELECT FROM dbsync.binding b WHERE b.mapping_id = m.id
                                                              AND b.remote_id = cp.remote_id AND NOT b.deleted)) THEN
        -- Gone remotely, never applied: nothing is left to apply.
        UPDATE dbsync.checkpoint SET reviewed = true, resolution = 'superseded', updated_at = now() WHERE id = cp.id;
    ELSIF rec.deleted THEN
        PERFORM dbsync.map_apply_ids(m, dbsync.map_delete_sql(m, with_events), ARRAY[cp.remote_id], rec.version, true);
        UPDATE dbsync.checkpoint SET reviewed = true, resolution = 'applied', updated_at = now()
         WHERE id = cp.id AND NOT reviewed
           AND EXISTS (SELECT FROM dbsync.binding b WHERE b.mapping_id = m.id AND b.remote_id = cp.remote_id
                          AND b.version >= rec.version);
    ELSE
        PERFORM dbsync.map_apply_ids(m, dbsync.map_upsert_sql(m, with_events), ARRAY[cp.remote_id], rec.version, false);
        -- Already applied by a later change: nothing was left to do.
        UPDATE dbsync.checkpoint SET reviewed = true, resolution = 'applied', updated_at = now()
         WHERE id = cp.id AND NOT reviewed
           AND EXISTS (SELECT FROM dbsync.binding b WHERE b.mapping_id = m.id AND b.remote_id = cp.remote_id
                          AND b.version >= rec.version);
    END IF;
    SELECT * INTO after FROM dbsync.checkpoint WHERE id = cp.id;
    IF after.resolution = 'applied' THEN
        -- Records waiting for this one may go now.
        PERFORM dbsync.map_schedule(m.subscription_id);
    END IF;
    RETURN CASE WHEN after.reviewed THEN after.resolution ELSE after.reason END;
END
$$;

-- Internal: a checkpoint the current role may handle, locked.
CREATE FUNCTION dbsync.checkpoint_for_update(checkpoint_id bigint)
RETURNS dbsync.checkpoint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cp dbsync.checkpoint;
BEGIN
    SELECT c.* INTO cp FROM dbsync.checkpoint c JOIN dbsync.mapping m ON m.id = c.mapping_id
      JOIN dbsync.subscription s ON s.id = m.subscription_id
     WHERE c.id = checkpoint_id AND pg_has_role(current_user, s.owner, 'MEMBER')
       FOR UPDATE OF c;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'checkpoint % does not exist', coalesce(checkpoint_id::text, 'NULL') USING ERRCODE = 'undefined_object';
    END IF;
    IF cp.reviewed THEN
        RAISE EXCEPTION 'checkpoint % is closed already (%)', checkpoint_id, cp.resolution
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN cp;
END
$$;

-- Tries a checkpoint's record again now: 'applied', 'superseded', or still 'reference' / 'error'.
CREATE FUNCTION @extschema@.dbsync_checkpoint_retry(checkpoint_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN dbsync.checkpoint_apply(dbsync.checkpoint_for_update(checkpoint_id));
END
$$;

-- Closes a checkpoint by hand: the DBA has dealt with the record.
CREATE FUNCTION @extschema@.dbsync_checkpoint_resolve(checkpoint_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cp dbsync.checkpoint := dbsync.checkpoint_for_update(checkpoint_id);
BEGIN
    UPDATE dbsync.checkpoint SET reviewed = true, resolution = 'resolved', resolved_by = current_user,
           updated_at = now()
     WHERE id = cp.id;
END
$$;

-- Internal: what the checkpoint_retry job runs: every open checkpoint of the subscription, oldest first.
CREATE FUNCTION dbsync.checkpoint_retry_all(sub_id integer)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cp dbsync.checkpoint;
    outcome text;
    counts jsonb := '{}';
BEGIN
    FOR cp IN SELECT c.* FROM dbsync.checkpoint c JOIN dbsync.mapping m ON m.id = c.mapping_id
               WHERE m.subscription_id = sub_id AND NOT c.reviewed ORDER BY c.id LOOP
        outcome := dbsync.checkpoint_apply(cp);
        counts := counts || jsonb_build_object(outcome, coalesce((counts->>outcome)::int, 0) + 1);
    END LOOP;
    RETURN counts;
END
$$;

CREATE FUNCTION @extschema@.dbsync_listen(server text, evidence text, function regproc)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub dbsync.subscription := dbsync.subscription_of(server);
    fn regprocedure;
    listener_id integer;
BEGIN
    PERFORM dbsync.check_evidence(sub, evidence);
    IF function IS NULL THEN
        RAISE EXCEPTION 'listener function must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    fn := function::oid::regprocedure;
    PERFORM dbsync.check_jsonb_function(fn, false, 'listener');
    INSERT INTO dbsync.listener (subscription_id, evidence, function, owner)
    VALUES (sub.id, evidence, fn, current_user::regrole)
    ON CONFLICT ON CONSTRAINT listener_subscription_id_evidence_function_key DO NOTHING
    RETURNING id INTO listener_id;
    IF listener_id IS NULL THEN
        RAISE EXCEPTION 'function % already listens to "%" of server "%"', fn, evidence, server
            USING ERRCODE = 'duplicate_object';
    END IF;
    RETURN listener_id;
END
$$;

CREATE FUNCTION @extschema@.dbsync_unlisten(server text, evidence text, function regproc)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub dbsync.subscription := dbsync.subscription_of(server);
BEGIN
    DELETE FROM dbsync.listener l
     WHERE l.subscription_id = sub.id AND l.evidence = dbsync_unlisten.evidence
       AND l.function = dbsync_unlisten.function::oid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'function % does not listen to "%" of server "%"', function, evidence, server
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

REVOKE ALL ON dbsync.mapping, dbsync.binding, dbsync.checkpoint, dbsync.listener FROM PUBLIC;
-- The internal helpers of mappings and checkpoints stay executable: they reach no network, file or
-- setting, and every table they read or write is closed to PUBLIC.
REVOKE ALL ON FUNCTION dbsync.job_wake_on_commit() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_job_enqueue(text, jsonb, timestamptz, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.job_purge(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_map(text, text, regclass, jsonb, regproc, jsonb, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_unmap(text, text, regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.map_on_cursor() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_map_apply(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_checkpoint_retry(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_checkpoint_resolve(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_listen(text, text, regproc) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_unlisten(text, text, regproc) FROM PUBLIC;
