-- dbsync 0.5 -> 0.6: replication of the iLog to target PostgreSQL databases.
\echo Use "ALTER EXTENSION dbsync UPDATE TO '0.6'" to load this file. \quit

-- Keys of configs and of their targets (one sequence: a key names one thing).
CREATE SEQUENCE dbsync.replication_key_seq;

CREATE TABLE dbsync.replication_config (
    key                bigint PRIMARY KEY DEFAULT nextval('dbsync.replication_key_seq'),
    name               text NOT NULL UNIQUE CHECK (name <> ''),
    enabled            boolean NOT NULL DEFAULT true,
    positive_keys_only boolean NOT NULL DEFAULT false,
    sync_interval      interval CHECK (sync_interval > interval '0'),  -- NULL: synced on demand only
    owner              oid NOT NULL,                                    -- whose user mappings are used
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dbsync.replication_config_table (
    config_key bigint NOT NULL REFERENCES dbsync.replication_config ON DELETE CASCADE,
    relid      oid NOT NULL,
    table_name text NOT NULL,
    PRIMARY KEY (config_key, relid)
);

-- One row per config and target database. The target itself records what it has applied (in
-- dbsync_replica.applied, in the transaction that applies it); delivered_version is the copy
-- seen at the last sync, never ahead of the target's.
CREATE TABLE dbsync.replication_target (
    key               bigint PRIMARY KEY DEFAULT nextval('dbsync.replication_key_seq'),
    config_key        bigint NOT NULL REFERENCES dbsync.replication_config ON DELETE CASCADE,
    server            name NOT NULL,
    stream            uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    start_version     bigint NOT NULL,
    delivered_version bigint NOT NULL,
    last_sync_at      timestamptz,
    last_success      boolean,
    last_error        text,
    last_result       jsonb,
    UNIQUE (config_key, server)
);

CREATE VIEW dbsync.replication_status AS
SELECT c.key AS config_key, c.name AS config_name, c.enabled, t.key AS target_key, t.server,
       t.delivered_version, t.last_sync_at, t.last_success, t.last_error,
       (t.last_result->>'executionTime')::bigint AS last_execution_ms
  FROM dbsync.replication_config c JOIN dbsync.replication_target t ON t.config_key = c.key;

-- The newest version every reader may read up to (exclusive): what a new target starts after.
CREATE FUNCTION dbsync.ilog_horizon()
RETURNS bigint
AS 'MODULE_PATHNAME', 'dbsync_ilog_horizon' LANGUAGE C VOLATILE;

-- The sync itself: one result per target of the config (C, in the caller's transaction).
CREATE FUNCTION dbsync.replication_run(config_key bigint)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'dbsync_replication_run' LANGUAGE C VOLATILE;

-- Checks the tables of a config: tracked, with a key, readable by the caller.
CREATE FUNCTION dbsync.replication_check_tables(tables regclass[], positive_keys_only boolean)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
    nkeys integer;
    first_key int2;
    key_type oid;
BEGIN
    IF tables IS NULL OR cardinality(tables) = 0 THEN
        RAISE EXCEPTION 'dbsync: a replication config needs at least one table'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH t IN ARRAY tables LOOP
        IF t IS NULL THEN
            RAISE EXCEPTION 'dbsync: table names must not be null' USING ERRCODE = 'null_value_not_allowed';
        END IF;
        IF NOT has_table_privilege(dbsync.ilog_caller(), t, 'SELECT') THEN
            RAISE EXCEPTION 'dbsync: permission denied to replicate "%"', t USING ERRCODE = 'insufficient_privilege',
                DETAIL = 'Replicating a table sends its rows elsewhere: it needs the SELECT privilege on it.';
        END IF;
        IF NOT EXISTS (SELECT FROM dbsync.ilog_table it WHERE it.relid = t AND it.untracked_at IS NULL) THEN
            RAISE EXCEPTION 'dbsync: "%" is not tracked by the iLog', t USING ERRCODE = 'object_not_in_prerequisite_state',
                HINT = format('Replication sends what the iLog records: SELECT dbsync_track(%L);', t::text);
        END IF;
        SELECT i.indnkeyatts, i.indkey[0] INTO nkeys, first_key
          FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
         WHERE i.indrelid = t
           AND CASE c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END;
        IF nkeys IS NULL THEN
            RAISE EXCEPTION 'dbsync: "%" has no primary key or replica identity index', t
                USING ERRCODE = 'feature_not_supported',
                      DETAIL = 'Replication finds a row on the target by its key.';
        END IF;
        IF positive_keys_only THEN
            SELECT a.atttypid INTO key_type FROM pg_attribute a WHERE a.attrelid = t AND a.attnum = first_key;
            IF nkeys <> 1 OR key_type NOT IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype,
                                                              'numeric'::regtype) THEN
                RAISE EXCEPTION 'dbsync: positive_keys_only needs a key of one integer column, and "%" has another key', t
                    USING ERRCODE = 'feature_not_supported';
            END IF;
        END IF;
    END LOOP;
END
$$;

-- Checks the target servers of a config: dbsync servers of api 'postgres' the caller may use.
CREATE FUNCTION dbsync.replication_check_targets(targets text[])
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text;
    api text;
BEGIN
    IF targets IS NULL OR cardinality(targets) = 0 THEN
        RAISE EXCEPTION 'dbsync: a replication config needs at least one target'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH s IN ARRAY targets LOOP
        IF s IS NULL THEN
            RAISE EXCEPTION 'dbsync: target names must not be null' USING ERRCODE = 'null_value_not_allowed';
        END IF;
        SELECT split_part(o, '=', 2) INTO api
          FROM pg_foreign_server fs JOIN pg_foreign_data_wrapper w ON w.oid = fs.srvfdw AND w.fdwname = 'dbsync',
               unnest(fs.srvoptions) o
         WHERE fs.srvname = s AND o LIKE 'api=%';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'dbsync: server "%" does not exist', s USING ERRCODE = 'undefined_object',
                HINT = format('Create it with CREATE SERVER %I FOREIGN DATA WRAPPER dbsync OPTIONS (api ''postgres'', host ..., dbname ...).', s);
        END IF;
        IF api <> 'postgres' THEN
            RAISE EXCEPTION 'dbsync: server "%" is an api ''%'' server, not api ''postgres''', s, api
                USING ERRCODE = 'wrong_object_type';
        END IF;
        IF NOT has_server_privilege(dbsync.ilog_caller(), s, 'USAGE') THEN
            RAISE EXCEPTION 'permission denied for foreign server %', s USING ERRCODE = 'insufficient_privilege';
        END IF;
    END LOOP;
    IF (SELECT count(DISTINCT x) FROM unnest(targets) x) <> cardinality(targets) THEN
        RAISE EXCEPTION 'dbsync: a target is named twice' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- The config, if the caller may see it (its owner's role or a member of it); else it does not exist.
CREATE FUNCTION dbsync.replication_config_visible(config_key bigint)
RETURNS dbsync.replication_config
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c dbsync.replication_config;
BEGIN
    SELECT * INTO c FROM dbsync.replication_config r WHERE r.key = config_key;
    IF NOT FOUND OR NOT pg_has_role(dbsync.ilog_caller(), c.owner, 'USAGE') THEN
        RAISE EXCEPTION 'dbsync: replication config % does not exist', config_key USING ERRCODE = 'undefined_object';
    END IF;
    RETURN c;
END
$$;

-- The config the caller may manage (its owner's role or a member of it), locked.
CREATE FUNCTION dbsync.replication_config_for_update(config_key bigint)
RETURNS dbsync.replication_config
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c dbsync.replication_config;
BEGIN
    SELECT * INTO c FROM dbsync.replication_config r WHERE r.key = config_key FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dbsync: replication config % does not exist', config_key USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT pg_has_role(dbsync.ilog_caller(), c.owner, 'USAGE') THEN
        RAISE EXCEPTION 'dbsync: permission denied for replication config %', config_key
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('It belongs to role %s.', c.owner::regrole);
    END IF;
    RETURN c;
END
$$;

-- The worker's job for a config: present while it is enabled and has an interval.
CREATE FUNCTION dbsync.replication_schedule(config_key bigint)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c dbsync.replication_config;
BEGIN
    SELECT * INTO c FROM dbsync.replication_config r WHERE r.key = config_key;
    IF NOT FOUND OR NOT c.enabled OR c.sync_interval IS NULL THEN
        DELETE FROM dbsync.job j WHERE j.kind = 'replication_sync' AND (j.args->>'config')::bigint = config_key;
        RETURN;
    END IF;
    UPDATE dbsync.job j SET repeat_every = c.sync_interval, owner = c.owner,
           run_at = least(j.run_at, now() + c.sync_interval)
     WHERE j.kind = 'replication_sync' AND (j.args->>'config')::bigint = config_key;
    IF NOT FOUND THEN
        INSERT INTO dbsync.job (kind, args, owner, repeat_every, run_at)
        VALUES ('replication_sync', jsonb_build_object('config', config_key), c.owner, c.sync_interval, now());
    END IF;
END
$$;

-- Adds targets to a config: each starts after what is committed now (or at start_version).
CREATE FUNCTION dbsync.replication_add_targets(config_key bigint, targets text[], start_version bigint)
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO dbsync.replication_target (config_key, server, start_version, delivered_version)
    SELECT config_key, s, v, v
      FROM unnest(targets) s, coalesce(start_version, dbsync.ilog_horizon() - 1) v
    ON CONFLICT DO NOTHING;
$$;

CREATE FUNCTION dbsync.replication_set_tables(config_key bigint, tables regclass[])
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM dbsync.replication_config_table ct
     WHERE ct.config_key = replication_set_tables.config_key AND ct.relid <> ALL (tables::oid[]);
    INSERT INTO dbsync.replication_config_table (config_key, relid, table_name)
    SELECT replication_set_tables.config_key, t, it.table_name
      FROM unnest(tables) t JOIN dbsync.ilog_table it ON it.relid = t
    ON CONFLICT DO NOTHING;
$$;

-- A config as GET /api/devops/v1/replication/configs/<key> shows it, with dbsync's own settings.
CREATE FUNCTION dbsync.replication_config_json(c dbsync.replication_config)
RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET intervalstyle = 'iso_8601'
AS $$
    SELECT jsonb_build_object(
        'enabled', c.enabled,
        'databases', coalesce((SELECT jsonb_agg(jsonb_build_object('name', t.server, 'key', t.key) ORDER BY t.key)
                                 FROM dbsync.replication_target t WHERE t.config_key = c.key), '[]'),
        'name', c.name,
        'key', c.key,
        'tables', coalesce((SELECT jsonb_agg(ct.table_name ORDER BY ct.table_name)
                              FROM dbsync.replication_config_table ct WHERE ct.config_key = c.key), '[]'),
        'positiveKeysOnly', c.positive_keys_only,
        'syncInterval', c.sync_interval::text)
$$;

CREATE FUNCTION @extschema@.dbsync_replication_config_create(
    name text, targets text[], tables regclass[], positive_keys_only boolean DEFAULT false,
    sync_interval interval DEFAULT NULL, enabled boolean DEFAULT true, start_version bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_key bigint;
BEGIN
    IF name IS NULL OR btrim(name) = '' THEN
        RAISE EXCEPTION 'dbsync: a replication config needs a name' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM dbsync.replication_config c WHERE c.name = dbsync_replication_config_create.name) THEN
        RAISE EXCEPTION 'dbsync: replication config "%" already exists', name USING ERRCODE = 'duplicate_object';
    END IF;
    IF positive_keys_only IS NULL OR enabled IS NULL THEN
        RAISE EXCEPTION 'dbsync: positive_keys_only and enabled must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF sync_interval IS NOT NULL AND sync_interval <= interval '0' THEN
        RAISE EXCEPTION 'dbsync: sync_interval must be positive (or null: synced on demand only)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF start_version IS NOT NULL AND start_version < 0 THEN
        RAISE EXCEPTION 'dbsync: start_version must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM dbsync.replication_check_tables(tables, positive_keys_only);
    PERFORM dbsync.replication_check_targets(targets);

    INSERT INTO dbsync.replication_config (name, enabled, positive_keys_only, sync_interval, owner)
    VALUES (name, enabled, positive_keys_only, sync_interval, dbsync.ilog_caller()::text::regrole::oid)
    RETURNING key INTO new_key;
    PERFORM dbsync.replication_set_tables(new_key, tables);
    PERFORM dbsync.replication_add_targets(new_key, targets, start_version);
    PERFORM dbsync.replication_schedule(new_key);
    RETURN new_key;
END
$$;

CREATE FUNCTION @extschema@.dbsync_replication_config_alter(
    key bigint, name text DEFAULT NULL, targets text[] DEFAULT NULL, tables regclass[] DEFAULT NULL,
    positive_keys_only boolean DEFAULT NULL, sync_interval interval DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c dbsync.replication_config := dbsync.replication_config_for_update(key);
BEGIN
    IF name IS NOT NULL THEN
        IF btrim(name) = '' THEN
            RAISE EXCEPTION 'dbsync: a replication config needs a name' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF EXISTS (SELECT FROM dbsync.replication_config r WHERE r.name = dbsync_replication_config_alter.name
                                                             AND r.key <> c.key) THEN
            RAISE EXCEPTION 'dbsync: replication config "%" already exists', name USING ERRCODE = 'duplicate_object';
        END IF;
        c.name := name;
    END IF;
    IF sync_interval IS NOT NULL THEN
        IF sync_interval < interval '0' THEN
            RAISE EXCEPTION 'dbsync: sync_interval must be positive (or ''0'': synced on demand only)'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        c.sync_interval := nullif(sync_interval, interval '0');
    END IF;
    c.positive_keys_only := coalesce(positive_keys_only, c.positive_keys_only);
    IF tables IS NOT NULL OR positive_keys_only IS NOT NULL THEN
        PERFORM dbsync.replication_check_tables(
            coalesce(tables, (SELECT array_agg(ct.relid::regclass) FROM dbsync.replication_config_table ct
                               WHERE ct.config_key = c.key)), c.positive_keys_only);
    END IF;
    IF targets IS NOT NULL THEN
        PERFORM dbsync.replication_check_targets(targets);
        DELETE FROM dbsync.replication_target t WHERE t.config_key = c.key AND t.server <> ALL (targets);
        PERFORM dbsync.replication_add_targets(c.key, targets, NULL);
    END IF;
    IF tables IS NOT NULL THEN
        PERFORM dbsync.replication_set_tables(c.key, tables);
    END IF;
    UPDATE dbsync.replication_config r
       SET name = c.name, positive_keys_only = c.positive_keys_only, sync_interval = c.sync_interval
     WHERE r.key = c.key;
    PERFORM dbsync.replication_schedule(c.key);
    RETURN dbsync.replication_config_json(r) FROM dbsync.replication_config r WHERE r.key = c.key;
END
$$;

CREATE FUNCTION @extschema@.dbsync_replication_config_enable(key bigint, enabled boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c dbsync.replication_config := dbsync.replication_config_for_update(key);
BEGIN
    IF enabled IS NULL THEN
        RAISE EXCEPTION 'dbsync: enabled must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE dbsync.replication_config r SET enabled = dbsync_replication_config_enable.enabled WHERE r.key = c.key;
    PERFORM dbsync.replication_schedule(c.key);
    RETURN dbsync.replication_config_json(r) FROM dbsync.replication_config r WHERE r.key = c.key;
END
$$;

CREATE FUNCTION @extschema@.dbsync_replication_config_disable(key bigint)
RETURNS jsonb
LANGUAGE sql
AS $$ SELECT @extschema@.dbsync_replication_config_enable(key, false) $$;

-- Drops a config; the targets keep their data (and their dbsync_replica.applied row).
CREATE FUNCTION @extschema@.dbsync_replication_config_drop(key bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c dbsync.replication_config := dbsync.replication_config_for_update(key);
BEGIN
    DELETE FROM dbsync.replication_config r WHERE r.key = c.key;
    PERFORM dbsync.replication_schedule(c.key);
END
$$;

-- Like GET /api/devops/v1/replication/configs: the configs the caller may manage.
CREATE FUNCTION @extschema@.dbsync_replication_configs()
RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(dbsync.replication_config_json(c) ORDER BY c.key), '[]')
      FROM dbsync.replication_config c
     WHERE pg_has_role(dbsync.ilog_caller(), c.owner, 'USAGE')
$$;

-- Like GET /api/devops/v1/replication/configs/<key>.
CREATE FUNCTION @extschema@.dbsync_replication_config(key bigint)
RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dbsync.replication_config_json(dbsync.replication_config_visible(key)) $$;

-- Like POST .../configs/<key>/sync: sends what the iLog recorded since the last sync, one result per target.
CREATE FUNCTION @extschema@.dbsync_replication_sync(key bigint)
RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dbsync.replication_run((dbsync.replication_config_visible(key)).key) $$;

-- Like POST /api/devops/v1/replication/sync: every enabled config the caller may manage.
CREATE FUNCTION @extschema@.dbsync_replication_sync()
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c dbsync.replication_config;
    results jsonb := '[]';
BEGIN
    FOR c IN SELECT * FROM dbsync.replication_config r
              WHERE r.enabled AND pg_has_role(dbsync.ilog_caller(), r.owner, 'USAGE') ORDER BY r.key LOOP
        results := results || dbsync.replication_run(c.key);
    END LOOP;
    RETURN results;
END
$$;

-- Per tracked table, the last version every enabled config has delivered to all its targets.
CREATE FUNCTION dbsync.replication_guard()
RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(relid::text, delivered), '{}')
      FROM (SELECT ct.relid, min(t.delivered_version) AS delivered
              FROM dbsync.replication_config c
              JOIN dbsync.replication_config_table ct ON ct.config_key = c.key
              JOIN dbsync.replication_target t ON t.config_key = c.key
             WHERE c.enabled
             GROUP BY ct.relid) g
$$;

-- The purge keeps what an enabled replication config has not delivered yet, unless forced.
DROP FUNCTION @extschema@.dbsync_ilog_clear();
CREATE FUNCTION @extschema@.dbsync_ilog_clear(force boolean DEFAULT false)
RETURNS TABLE (table_name text, entries_removed bigint, entries_kept_undelivered bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s'
AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    guard jsonb := CASE WHEN force THEN '{}' ELSE dbsync.replication_guard() END;
    part record;
    expired oid[];
    still_kept boolean;
    removed jsonb := '{}';
    kept jsonb := '{}';
    dropped jsonb;
    r record;
    -- an entry of an expired table may go when no guard holds it
    deletable constant text := 'l.tbl = ANY ($1) AND l.version <= coalesce(($2->>l.tbl::text)::bigint, 9223372036854775807)';
BEGIN
    IF force IS NULL THEN
        RAISE EXCEPTION 'dbsync: force must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    FOR part IN
        SELECT c.relname, to_date(substr(c.relname, 7), 'YYYYMMDD') AS day
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'dbsync.ilog'::regclass AND c.relname ~ '^ilog_p[0-9]{8}$'
         ORDER BY 2
    LOOP
        SELECT array_agg(t.relid) FILTER (WHERE t.max_days IS NOT NULL AND part.day < today - t.max_days)
          INTO expired
          FROM dbsync.ilog_table t;
        CONTINUE WHEN expired IS NULL;
        EXECUTE format('SELECT EXISTS (SELECT FROM dbsync.%I l WHERE NOT (%s))', part.relname, deletable)
            INTO still_kept USING expired, guard;
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
        FOR r IN EXECUTE format('WITH d AS (DELETE FROM dbsync.%I l WHERE %s RETURNING l.tbl) '
                                'SELECT tbl, count(*) AS n FROM d GROUP BY tbl', part.relname, deletable)
                 USING expired, guard LOOP
            removed := jsonb_set(removed, ARRAY[r.tbl::text],
                                 to_jsonb(coalesce((removed->>r.tbl::text)::bigint, 0) + r.n));
        END LOOP;
        FOR r IN EXECUTE format('SELECT l.tbl, count(*) AS n FROM dbsync.%I l WHERE l.tbl = ANY ($1) '
                                'AND NOT (%s) GROUP BY l.tbl', part.relname, deletable)
                 USING expired, guard LOOP
            kept := jsonb_set(kept, ARRAY[r.tbl::text], to_jsonb(coalesce((kept->>r.tbl::text)::bigint, 0) + r.n));
        END LOOP;
    END LOOP;

    FOR r IN
        WITH d AS (DELETE FROM dbsync.ilog_default l USING dbsync.ilog_table t
                    WHERE l.tbl = t.relid AND t.max_days IS NOT NULL AND l.day < today - t.max_days
                      AND l.version <= coalesce((guard->>l.tbl::text)::bigint, 9223372036854775807)
                   RETURNING l.tbl)
        SELECT tbl, count(*) AS n FROM d GROUP BY tbl
    LOOP
        removed := jsonb_set(removed, ARRAY[r.tbl::text],
                             to_jsonb(coalesce((removed->>r.tbl::text)::bigint, 0) + r.n));
    END LOOP;
    FOR r IN
        SELECT l.tbl, count(*) AS n FROM dbsync.ilog_default l JOIN dbsync.ilog_table t ON l.tbl = t.relid
         WHERE t.max_days IS NOT NULL AND l.day < today - t.max_days
         GROUP BY l.tbl
    LOOP
        kept := jsonb_set(kept, ARRAY[r.tbl::text], to_jsonb(coalesce((kept->>r.tbl::text)::bigint, 0) + r.n));
    END LOOP;
    DELETE FROM dbsync.ilog_xact_default x
     WHERE x.day < today - 1
       AND NOT EXISTS (SELECT FROM dbsync.ilog_default l WHERE l.day = x.day AND l.xid = x.xid);

    PERFORM dbsync.ilog_partitions_ensure();
    RETURN QUERY
        SELECT t.table_name, coalesce((removed->>t.relid::text)::bigint, 0),
               coalesce((kept->>t.relid::text)::bigint, 0)
          FROM dbsync.ilog_table t
         WHERE t.max_days IS NOT NULL OR removed ? t.relid::text
         ORDER BY 1;
END
$$;

ALTER TABLE dbsync.job DROP CONSTRAINT job_kind_check;
ALTER TABLE dbsync.job ADD CONSTRAINT job_kind_check
    CHECK (kind IN ('changes_pull', 'upgrade_poll', 'export_poll', 'ilog_maintain', 'replication_sync'));
CREATE UNIQUE INDEX job_replication_idx ON dbsync.job (((args->>'config')::bigint)) WHERE kind = 'replication_sync';

REVOKE ALL ON dbsync.replication_config, dbsync.replication_config_table, dbsync.replication_target,
              dbsync.replication_status, dbsync.replication_key_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.ilog_horizon() FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.replication_run(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.replication_check_tables(regclass[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.replication_check_targets(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.replication_config_for_update(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.replication_config_visible(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.replication_schedule(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.replication_add_targets(bigint, text[], bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.replication_set_tables(bigint, regclass[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.replication_config_json(dbsync.replication_config) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.replication_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_ilog_clear(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_replication_config_create(text, text[], regclass[], boolean, interval, boolean, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_replication_config_alter(bigint, text, text[], regclass[], boolean, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_replication_config_enable(bigint, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_replication_config_disable(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_replication_config_drop(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_replication_configs() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_replication_config(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_replication_sync(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_replication_sync() FROM PUBLIC;
