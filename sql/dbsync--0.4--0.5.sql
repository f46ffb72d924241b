-- dbsync 0.5: the transaction log (iLog) of tracked tables.
\echo Use "ALTER EXTENSION dbsync UPDATE TO '0.5'" to load this file. \quit

-- Every table that is or was tracked. Its history stays after untrack and after DROP TABLE.
CREATE TABLE dbsync.ilog_table (
    relid                 oid PRIMARY KEY,
    table_name            text NOT NULL,                -- schema-qualified; the name it had when dropped
    max_days              integer CHECK (max_days BETWEEN 1 AND 365000), -- entries older than this are purged; NULL: kept
    excluded_attnums      int2[] NOT NULL DEFAULT '{}', -- columns never logged (attnums of the table)
    log_unchanged_updates boolean NOT NULL DEFAULT false,
    tracked_at            timestamptz NOT NULL DEFAULT now(),
    untracked_at          timestamptz,
    dropped_at            timestamptz
);

-- Each shape a tracked table (or one of its partitions) had: what decoding its entries needs.
CREATE TABLE dbsync.ilog_layout (
    id            serial PRIMARY KEY,
    tbl           oid NOT NULL,      -- the tracked table
    relid         oid NOT NULL,      -- the table written (a partition of tbl, or tbl)
    signature     bigint NOT NULL,   -- hash of the shape below
    attnames      name[] NOT NULL,   -- by attnum; NULL for a dropped column
    atttypes      oid[] NOT NULL,
    atttypmods    int4[] NOT NULL,
    attlens       int2[] NOT NULL,
    attbyvals     bool[] NOT NULL,
    logged        bool[] NOT NULL,   -- false: dropped or excluded
    key_attnums   int2[] NOT NULL,   -- the key (replica identity), in key order
    whole_row_key boolean NOT NULL,  -- no key index: every logged column is the key
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ilog_layout_shape_idx ON dbsync.ilog_layout (relid, signature);
CREATE INDEX ilog_layout_tbl_idx ON dbsync.ilog_layout (tbl);

-- Versions: taken in one order, committed in another; readers use the horizon (dbsync_ilog_read).
CREATE SEQUENCE dbsync.ilog_version_seq;

-- The entries, one partition per day (UTC) of the writing transaction's start. Images are the
-- table's own values, undecoded: see dbsync.ilog_entries for them as jsonb.
CREATE TABLE dbsync.ilog (
    version   bigint NOT NULL,
    xid       bigint NOT NULL,   -- the writing transaction (txid_current())
    day       date NOT NULL,
    tbl       oid NOT NULL,      -- the tracked table
    layout    integer NOT NULL,  -- dbsync.ilog_layout.id (0 for TRUNCATE)
    key_hash  integer NOT NULL,  -- hash of the row's key after the change (before it, for DELETE)
    op        "char" NOT NULL,   -- I, U, D, T
    old       bytea,             -- DELETE: the row; UPDATE: key and old values of changed columns
    new       bytea              -- INSERT: the row; UPDATE: new values of changed columns
) PARTITION BY RANGE (day);
CREATE INDEX ilog_version_idx ON dbsync.ilog (version);
-- No index on (tbl, key_hash) by default: it would cost writers more than all the rest of the trigger
-- (random inserts). dbsync_record_history scans for the hash; a DBA who reads histories often may add
-- CREATE INDEX ON dbsync.ilog (tbl, key_hash), which the trigger then keeps up to date.
CREATE TABLE dbsync.ilog_default PARTITION OF dbsync.ilog DEFAULT;

-- Who, when and from where: once per transaction.
CREATE TABLE dbsync.ilog_xact (
    xid         bigint NOT NULL,
    day         date NOT NULL,
    username    text NOT NULL,
    application text,
    client_addr inet,
    client_port integer,
    pid         integer,
    xact_start  timestamptz NOT NULL,
    userid      oid
) PARTITION BY RANGE (day);
CREATE INDEX ilog_xact_xid_idx ON dbsync.ilog_xact (xid);
CREATE TABLE dbsync.ilog_xact_default PARTITION OF dbsync.ilog_xact DEFAULT;

SELECT pg_catalog.pg_extension_config_dump('dbsync.ilog_table', '');
SELECT pg_catalog.pg_extension_config_dump('dbsync.ilog_layout', '');

-- The trigger (ilog_trigger.c). Arguments: tracked table oid, flags ('u': log unchanged updates),
-- then the attnums of excluded columns. Nobody but dbsync_track may attach it to a table.
CREATE FUNCTION dbsync.ilog_trigger()
RETURNS trigger AS 'MODULE_PATHNAME', 'dbsync_ilog_trigger' LANGUAGE C;

CREATE FUNCTION dbsync.ilog_decode(layout integer, op "char", old bytea, new bytea,
    OUT key jsonb, OUT before jsonb, OUT after jsonb, OUT changed_columns text[])
AS 'MODULE_PATHNAME', 'dbsync_ilog_decode' LANGUAGE C STABLE;

CREATE FUNCTION dbsync.ilog_key_probe(tbl oid, key jsonb, OUT layout integer, OUT key_hash integer, OUT key jsonb)
RETURNS SETOF record AS 'MODULE_PATHNAME', 'dbsync_ilog_key_probe' LANGUAGE C STRICT STABLE;

-- The log as a DBA reads it.
CREATE VIEW dbsync.ilog_entries AS
SELECT l.version,
       l.tbl::regclass AS tbl,
       CASE WHEN c.oid IS NOT NULL THEN format('%I.%I', n.nspname, c.relname) ELSE t.table_name END AS table_name,
       CASE l.op WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' WHEN 'D' THEN 'DELETE' WHEN 'T' THEN 'TRUNCATE' END
           AS operation,
       d.key,
       d.before,
       d.after,
       d.changed_columns,
       l.xid AS txid,
       x.username,
       x.application,
       x.client_addr,
       x.client_port,
       x.xact_start AS logged_at
  FROM dbsync.ilog l
  LEFT JOIN dbsync.ilog_xact x ON x.day = l.day AND x.xid = l.xid
  LEFT JOIN dbsync.ilog_table t ON t.relid = l.tbl
  LEFT JOIN pg_catalog.pg_class c ON c.oid = l.tbl AND t.dropped_at IS NULL
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 CROSS JOIN LATERAL dbsync.ilog_decode(l.layout, l.op, l.old, l.new) d;

-- Tracked tables and their options.
CREATE VIEW dbsync.ilog_tables AS
SELECT t.relid AS tbl,
       CASE WHEN c.oid IS NOT NULL THEN format('%I.%I', n.nspname, c.relname) ELSE t.table_name END AS table_name,
       EXISTS (SELECT FROM pg_catalog.pg_trigger g
                WHERE g.tgrelid = t.relid AND g.tgname = 'dbsync_ilog' AND g.tgenabled <> 'D') AS tracking,
       t.max_days,
       ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = t.relid AND a.attnum = ANY (t.excluded_attnums) AND NOT a.attisdropped
              ORDER BY a.attnum) AS excluded_columns,
       t.log_unchanged_updates,
       t.tracked_at,
       t.untracked_at,
       t.dropped_at
  FROM dbsync.ilog_table t
  LEFT JOIN pg_catalog.pg_class c ON c.oid = t.relid AND t.dropped_at IS NULL
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace;

-- Internal: the role that called a SECURITY DEFINER function (SET ROLE counts).
CREATE FUNCTION dbsync.ilog_caller()
RETURNS name LANGUAGE sql STABLE
AS $$ SELECT CASE current_setting('role') WHEN 'none' THEN session_user ELSE current_setting('role')::name END $$;

-- Internal: the partitions of one day, for the entries and for their transactions.
CREATE FUNCTION dbsync.ilog_partition_create(d date)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    suffix text := to_char(d, 'YYYYMMDD');
BEGIN
    IF to_regclass('dbsync.ilog_p' || suffix) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Rows of that day that reached a default partition would have to move: leave the day there.
    IF EXISTS (SELECT FROM dbsync.ilog_default WHERE day = d)
       OR EXISTS (SELECT FROM dbsync.ilog_xact_default WHERE day = d) THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE dbsync.%I PARTITION OF dbsync.ilog FOR VALUES FROM (%L) TO (%L)',
                   'ilog_p' || suffix, d, d + 1);
    EXECUTE format('CREATE TABLE dbsync.%I PARTITION OF dbsync.ilog_xact FOR VALUES FROM (%L) TO (%L)',
                   'ilog_xact_p' || suffix, d, d + 1);
    RETURN true;
END
$$;

-- Internal: the partitions of today and the days ahead. Writers never wait for this (they write to
-- the partitions directly); a reader of the log holding the parent makes it give up after 2 s.
CREATE FUNCTION dbsync.ilog_partitions_ensure(days_ahead integer DEFAULT 7)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s'
AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    made integer := 0;
BEGIN
    FOR i IN 0 .. days_ahead LOOP
        BEGIN
            IF dbsync.ilog_partition_create(today + i) THEN
                made := made + 1;
            END IF;
        EXCEPTION
            WHEN lock_not_available OR duplicate_table OR check_violation THEN
                RAISE NOTICE 'dbsync: the iLog partition of % was not created now; it will be later', today + i;
        END;
    END LOOP;
    RETURN made;
END
$$;

-- Internal: a tracked table named by its current name (resolved by the caller: "resolved"), its name
-- when dropped, or its oid.
CREATE FUNCTION dbsync.ilog_table_oid(tbl text, resolved oid)
RETURNS oid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found oid;
BEGIN
    SELECT t.relid INTO found FROM dbsync.ilog_table t WHERE t.dropped_at IS NULL AND t.relid = resolved;
    IF found IS NULL THEN
        SELECT t.relid INTO found FROM dbsync.ilog_table t
         WHERE t.table_name = tbl OR t.relid::text = tbl
            OR (position('.' in tbl) = 0 AND split_part(t.table_name, '.', 2) = tbl)
         ORDER BY t.dropped_at DESC NULLS FIRST, t.untracked_at DESC NULLS FIRST
         LIMIT 1;
    END IF;
    IF found IS NULL THEN
        RAISE EXCEPTION 'dbsync: table "%" has no iLog history', tbl
            USING ERRCODE = 'undefined_table', HINT = 'Tables are tracked with dbsync_track().';
    END IF;
    RETURN found;
END
$$;

-- Internal: the TRUNCATE trigger of a tracked table; for a partitioned table, on each of its leaf
-- partitions instead (statement triggers are not cloned to partitions, and a partition can be truncated
-- on its own). on = false removes them.
CREATE FUNCTION dbsync.ilog_truncate_triggers(tbl regclass, "on" boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target regclass;
BEGIN
    FOR target IN
        SELECT tbl
        UNION
        SELECT p.relid FROM pg_partition_tree(tbl) p JOIN pg_class c ON c.oid = p.relid
         WHERE p.isleaf AND c.relkind = 'r'
    LOOP
        IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = target AND tgname = 'dbsync_ilog_truncate') THEN
            EXECUTE format('DROP TRIGGER dbsync_ilog_truncate ON %s', target);
        END IF;
        CONTINUE WHEN NOT "on" OR (target = tbl AND (SELECT relkind FROM pg_class WHERE oid = tbl) = 'p');
        EXECUTE format('CREATE TRIGGER dbsync_ilog_truncate AFTER TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION dbsync.ilog_trigger(%L)', target, tbl::oid::text);
    END LOOP;
END
$$;

CREATE FUNCTION @extschema@.dbsync_track(tbl regclass, max_days integer DEFAULT NULL,
    excluded_columns name[] DEFAULT '{}', log_unchanged_updates boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    caller name := dbsync.ilog_caller();
    attnums int2[] := '{}';
    col name;
    num int2;
    key_cols int2[];
    other text;
    args text;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'dbsync: the table to track must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.oid, c.relkind, c.relpersistence, c.relispartition, n.nspname, c.relname, c.relreplident
      INTO rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'dbsync: "%" is not a table', tbl USING ERRCODE = 'wrong_object_type';
    END IF;
    IF rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'dbsync: "%" is a temporary table and cannot be tracked', tbl
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF rel.nspname = 'dbsync' THEN
        RAISE EXCEPTION 'dbsync: "%" belongs to dbsync and cannot be tracked', tbl
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF NOT has_table_privilege(caller, tbl, 'TRIGGER') THEN
        RAISE EXCEPTION 'dbsync: permission denied to track "%"', tbl USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'Tracking needs the TRIGGER privilege on the table.';
    END IF;
    -- (the purge computes today - max_days: beyond a thousand years that date does not exist)
    IF max_days IS NOT NULL AND (max_days < 1 OR max_days > 365000) THEN
        RAISE EXCEPTION 'dbsync: max_days must be between 1 and 365000 (or NULL to keep entries)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF rel.relispartition THEN
        SELECT a.relid::regclass::text INTO other FROM pg_partition_ancestors(tbl) a
          JOIN pg_trigger g ON g.tgrelid = a.relid AND g.tgname = 'dbsync_ilog'
         WHERE a.relid <> tbl LIMIT 1;
        IF other IS NOT NULL THEN
            RAISE EXCEPTION 'dbsync: "%" is a partition of the tracked table "%"', tbl, other
                USING ERRCODE = 'feature_not_supported', DETAIL = 'Its changes are logged as changes of that table.';
        END IF;
    END IF;
    IF rel.relkind = 'p' THEN
        SELECT t.relid::regclass::text INTO other FROM pg_partition_tree(tbl) t
          JOIN pg_trigger g ON g.tgrelid = t.relid AND g.tgname = 'dbsync_ilog' AND NOT g.tgisinternal
         WHERE t.relid <> tbl AND g.tgparentid = 0 LIMIT 1;
        IF other IS NOT NULL THEN
            RAISE EXCEPTION 'dbsync: partition "%" of "%" is tracked on its own', other, tbl
                USING ERRCODE = 'feature_not_supported', HINT = 'Untrack it first.';
        END IF;
    END IF;

    SELECT i.indkey::int2[] INTO key_cols FROM pg_index i
     WHERE i.indrelid = tbl AND ((rel.relreplident = 'd' AND i.indisprimary) OR (rel.relreplident = 'i' AND i.indisreplident));
    FOREACH col IN ARRAY coalesce(excluded_columns, '{}') LOOP
        SELECT a.attnum INTO num FROM pg_attribute a
         WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
        IF num IS NULL THEN
            RAISE EXCEPTION 'dbsync: column "%" of "%" does not exist', col, tbl USING ERRCODE = 'undefined_column';
        END IF;
        IF num = ANY (key_cols) THEN
            RAISE EXCEPTION 'dbsync: column "%" is part of the key of "%" and is always logged', col, tbl
                USING ERRCODE = 'feature_not_supported';
        END IF;
        attnums := attnums || num;
    END LOOP;

    IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'dbsync_ilog') THEN
        EXECUTE format('DROP TRIGGER dbsync_ilog ON %s', tbl);
    END IF;
    args := format('%L, %L', tbl::oid::text, CASE WHEN log_unchanged_updates THEN 'u' ELSE '-' END);
    IF cardinality(attnums) > 0 THEN
        args := args || ', ' || (SELECT string_agg(format('%L', a), ', ') FROM unnest(attnums) a);
    END IF;
    EXECUTE format('CREATE TRIGGER dbsync_ilog AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION dbsync.ilog_trigger(%s)', tbl, args);
    PERFORM dbsync.ilog_truncate_triggers(tbl, true);

    INSERT INTO dbsync.ilog_table AS t (relid, table_name, max_days, excluded_attnums, log_unchanged_updates)
    VALUES (tbl, format('%I.%I', rel.nspname, rel.relname), max_days, attnums, log_unchanged_updates)
    ON CONFLICT (relid) DO UPDATE
       SET table_name = EXCLUDED.table_name, max_days = EXCLUDED.max_days,
           excluded_attnums = EXCLUDED.excluded_attnums, log_unchanged_updates = EXCLUDED.log_unchanged_updates,
           tracked_at = CASE WHEN t.untracked_at IS NULL THEN t.tracked_at ELSE now() END,
           untracked_at = NULL, dropped_at = NULL;

    PERFORM dbsync.ilog_partitions_ensure();
    -- The worker keeps partitions ahead and purges old entries, hourly.
    INSERT INTO dbsync.job (kind, owner, repeat_every)
    SELECT 'ilog_maintain', (SELECT relowner FROM pg_class WHERE oid = 'dbsync.ilog'::regclass), interval '1 hour'
     WHERE NOT EXISTS (SELECT FROM dbsync.job WHERE kind = 'ilog_maintain');
END
$$;

CREATE FUNCTION @extschema@.dbsync_untrack(tbl regclass)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'dbsync_ilog') THEN
        RAISE EXCEPTION 'dbsync: "%" is not tracked', tbl USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT has_table_privilege(dbsync.ilog_caller(), tbl, 'TRIGGER') THEN
        RAISE EXCEPTION 'dbsync: permission denied to untrack "%"', tbl USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'Untracking needs the TRIGGER privilege on the table.';
    END IF;
    EXECUTE format('DROP TRIGGER dbsync_ilog ON %s', tbl);
    PERFORM dbsync.ilog_truncate_triggers(tbl, false);
    UPDATE dbsync.ilog_table SET untracked_at = now() WHERE relid = tbl;
END
$$;

-- Reading: entries after a version, in version order, up to the horizon of open writers.
CREATE FUNCTION @extschema@.dbsync_ilog_read(after_version bigint DEFAULT 0, "limit" integer DEFAULT 10000)
RETURNS SETOF dbsync.ilog_entries
AS 'MODULE_PATHNAME', 'dbsync_ilog_read' LANGUAGE C SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- The whole life of one record, in order; it follows the record back through changes of its key.
-- The wrapper resolves the table name with the caller's search_path.
CREATE FUNCTION dbsync.ilog_record_history(tbl text, resolved oid, key jsonb)
RETURNS SETOF dbsync.ilog_entries
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tracked oid := dbsync.ilog_table_oid(tbl, resolved);
    keys jsonb[] := ARRAY[key];
    bounds bigint[] := ARRAY[NULL::bigint];
    found bigint[] := '{}';
    i integer := 1;
    e record;
    key_after jsonb;
BEGIN
    IF key IS NULL OR jsonb_typeof(key) <> 'object' THEN
        RAISE EXCEPTION 'dbsync: a record key must be a JSON object of its key columns'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'For example ''{"id": 42}''.';
    END IF;
    -- (a table tracked but not yet written has no layout: its history is empty, not an error)
    IF EXISTS (SELECT FROM dbsync.ilog_layout l WHERE l.tbl = tracked)
       AND NOT EXISTS (SELECT FROM dbsync.ilog_key_probe(tracked, key)) THEN
        RAISE EXCEPTION 'dbsync: % does not name the key columns of "%"', key, tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The key is the primary key or replica identity; tables without one use every column.';
    END IF;
    WHILE i <= cardinality(keys) AND i <= 1000 LOOP
        FOR e IN
            SELECT v.*, p.key AS wanted
              FROM dbsync.ilog_key_probe(tracked, keys[i]) p
              JOIN dbsync.ilog l ON l.tbl = tracked AND l.layout = p.layout AND l.key_hash = p.key_hash
              JOIN dbsync.ilog_entries v ON v.version = l.version
             WHERE bounds[i] IS NULL OR l.version < bounds[i]
        LOOP
            key_after := e.key;
            IF e.operation = 'UPDATE' THEN
                key_after := e.key || coalesce((SELECT jsonb_object_agg(a.k, a.v) FROM jsonb_each(e.after) a(k, v)
                                                 WHERE e.key ? a.k), '{}');
            END IF;
            CONTINUE WHEN key_after IS DISTINCT FROM e.wanted OR e.version = ANY (found);
            found := found || e.version;
            IF key_after <> e.key THEN
                -- the record had another key before this change: follow it back
                keys := keys || e.key;
                bounds := bounds || e.version;
            END IF;
        END LOOP;
        i := i + 1;
    END LOOP;
    RETURN QUERY SELECT * FROM dbsync.ilog_entries v WHERE v.version = ANY (found) ORDER BY v.version;
END
$$;

CREATE FUNCTION @extschema@.dbsync_record_history(tbl text, key jsonb)
RETURNS SETOF dbsync.ilog_entries
LANGUAGE sql
AS $$ SELECT * FROM dbsync.ilog_record_history(tbl, pg_catalog.to_regclass(tbl), key) $$;

-- Purge: per day partition, drop it when every table in it has passed its max days, else delete the
-- rows of the tables that have; rows in the default partitions are deleted. Never waits long for a lock.
CREATE FUNCTION @extschema@.dbsync_ilog_clear()
RETURNS TABLE (table_name text, entries_removed bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s'
AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    part record;
    expired oid[];
    keep oid[];
    still_kept boolean;
    removed jsonb := '{}';
    dropped jsonb;
    r record;
BEGIN
    FOR part IN
        SELECT c.relname, to_date(substr(c.relname, 7), 'YYYYMMDD') AS day
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'dbsync.ilog'::regclass AND c.relname ~ '^ilog_p[0-9]{8}$'
         ORDER BY 2
    LOOP
        SELECT array_agg(t.relid) FILTER (WHERE t.max_days IS NOT NULL AND part.day < today - t.max_days),
               coalesce(array_agg(t.relid) FILTER (WHERE t.max_days IS NULL OR part.day >= today - t.max_days), '{}')
          INTO expired, keep
          FROM dbsync.ilog_table t;
        CONTINUE WHEN expired IS NULL;
        EXECUTE format('SELECT EXISTS (SELECT FROM dbsync.%I WHERE tbl <> ALL ($1))', part.relname)
            INTO still_kept USING expired;
        IF NOT still_kept THEN
            dropped := '{}';
            BEGIN
                FOR r IN EXECUTE format('SELECT tbl, count(*) AS n FROM dbsync.%I GROUP BY tbl', part.relname) LOOP
                    dropped := dropped || jsonb_build_object(r.tbl::text, r.n);
                END LOOP;
                EXECUTE format('DROP TABLE dbsync.%I', part.relname);
                EXECUTE format('DROP TABLE IF EXISTS dbsync.%I', 'ilog_xact_p' || to_char(part.day, 'YYYYMMDD'));
            EXCEPTION WHEN lock_not_available THEN
                RAISE NOTICE 'dbsync: iLog partition % is in use; its rows are deleted instead', part.relname;
                dropped := NULL;
            END;
            IF dropped IS NOT NULL THEN
                -- counted only once the drop went through
                FOR r IN SELECT key AS tbl, value::bigint AS n FROM jsonb_each_text(dropped) LOOP
                    removed := jsonb_set(removed, ARRAY[r.tbl],
                                         to_jsonb(coalesce((removed->>r.tbl)::bigint, 0) + r.n));
                END LOOP;
                CONTINUE;
            END IF;
        END IF;
        FOR r IN EXECUTE format('WITH d AS (DELETE FROM dbsync.%I WHERE tbl = ANY ($1) RETURNING tbl) '
                                'SELECT tbl, count(*) AS n FROM d GROUP BY tbl', part.relname) USING expired LOOP
            removed := jsonb_set(removed, ARRAY[r.tbl::text],
                                 to_jsonb(coalesce((removed->>r.tbl::text)::bigint, 0) + r.n));
        END LOOP;
    END LOOP;

    FOR r IN
        WITH d AS (DELETE FROM dbsync.ilog_default l USING dbsync.ilog_table t
                    WHERE l.tbl = t.relid AND t.max_days IS NOT NULL AND l.day < today - t.max_days
                   RETURNING l.tbl)
        SELECT tbl, count(*) AS n FROM d GROUP BY tbl
    LOOP
        removed := jsonb_set(removed, ARRAY[r.tbl::text],
                             to_jsonb(coalesce((removed->>r.tbl::text)::bigint, 0) + r.n));
    END LOOP;
    DELETE FROM dbsync.ilog_xact_default x
     WHERE x.day < today - 1
       AND NOT EXISTS (SELECT FROM dbsync.ilog_default l WHERE l.day = x.day AND l.xid = x.xid);

    PERFORM dbsync.ilog_partitions_ensure();
    RETURN QUERY
        SELECT t.table_name, coalesce((removed->>t.relid::text)::bigint, 0)
          FROM dbsync.ilog_table t
         WHERE t.max_days IS NOT NULL OR removed ? t.relid::text
         ORDER BY 1;
END
$$;

-- Gives a role the right to read the log (it holds copies of table data), or takes it back.
CREATE FUNCTION @extschema@.dbsync_ilog_grant_read(reader regrole, revoke boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    verb text := CASE WHEN revoke THEN 'REVOKE' ELSE 'GRANT' END;
    dir text := CASE WHEN revoke THEN 'FROM' ELSE 'TO' END;
BEGIN
    IF NOT revoke THEN
        EXECUTE format('GRANT USAGE ON SCHEMA dbsync TO %s', reader);
    END IF;
    EXECUTE format('%s SELECT ON dbsync.ilog_entries, dbsync.ilog_tables %s %s', verb, dir, reader);
    EXECUTE format('%s EXECUTE ON FUNCTION dbsync.ilog_decode(integer, "char", bytea, bytea), '
                   '@extschema@.dbsync_ilog_read(bigint, integer), @extschema@.dbsync_record_history(text, jsonb), '
                   'dbsync.ilog_record_history(text, oid, jsonb) %s %s',
                   verb, dir, reader);
END
$$;

-- Internal: what the worker's hourly ilog_maintain job runs (pg_cron may run it too).
CREATE FUNCTION dbsync.ilog_maintain()
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    made integer := dbsync.ilog_partitions_ensure();
    removed jsonb;
BEGIN
    SELECT coalesce(jsonb_object_agg(c.table_name, c.entries_removed), '{}') INTO removed
      FROM @extschema@.dbsync_ilog_clear() c WHERE c.entries_removed > 0;
    RETURN jsonb_build_object('partitions_created', made, 'entries_removed', removed);
END
$$;

-- A dropped tracked table keeps its history (and its name) and is no longer tracked.
CREATE FUNCTION dbsync.ilog_on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE dbsync.ilog_table t
       SET dropped_at = now(), untracked_at = coalesce(t.untracked_at, now()),
           table_name = coalesce(o.object_identity, t.table_name)
      FROM pg_event_trigger_dropped_objects() o
     WHERE o.classid = 'pg_class'::regclass AND o.objid = t.relid AND o.objsubid = 0
       AND o.object_type IN ('table', 'partitioned table') AND t.dropped_at IS NULL;
END
$$;
CREATE EVENT TRIGGER dbsync_ilog_drop ON sql_drop EXECUTE FUNCTION dbsync.ilog_on_sql_drop();

-- A partition created in or attached to a tracked partitioned table gets the TRUNCATE trigger too.
CREATE FUNCTION dbsync.ilog_on_ddl()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent oid;
BEGIN
    FOR parent IN
        SELECT t.relid FROM dbsync.ilog_table t JOIN pg_class c ON c.oid = t.relid AND c.relkind = 'p'
         WHERE t.dropped_at IS NULL
           AND EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = t.relid AND g.tgname = 'dbsync_ilog')
           AND EXISTS (SELECT FROM pg_partition_tree(t.relid) p JOIN pg_class pc ON pc.oid = p.relid
                        WHERE p.isleaf AND pc.relkind = 'r'
                          AND NOT EXISTS (SELECT FROM pg_trigger g2
                                           WHERE g2.tgrelid = p.relid AND g2.tgname = 'dbsync_ilog_truncate'))
    LOOP
        PERFORM dbsync.ilog_truncate_triggers(parent, true);
    END LOOP;
END
$$;
CREATE EVENT TRIGGER dbsync_ilog_ddl ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION dbsync.ilog_on_ddl();

ALTER TABLE dbsync.job DROP CONSTRAINT job_kind_check;
ALTER TABLE dbsync.job ADD CONSTRAINT job_kind_check
    CHECK (kind IN ('changes_pull', 'upgrade_poll', 'export_poll', 'ilog_maintain'));

REVOKE ALL ON FUNCTION dbsync.ilog_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.ilog_caller() FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.ilog_decode(integer, "char", bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.ilog_key_probe(oid, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.ilog_partition_create(date) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.ilog_partitions_ensure(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.ilog_table_oid(text, oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.ilog_record_history(text, oid, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.ilog_maintain() FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.ilog_on_sql_drop() FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.ilog_on_ddl() FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.ilog_truncate_triggers(regclass, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_track(regclass, integer, name[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_untrack(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_ilog_read(bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_record_history(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_ilog_clear() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_ilog_grant_read(regrole, boolean) FROM PUBLIC;
