-- dbsync 0.4: octoplant export orders (order, status, wait, cancel, download).
\echo Use "ALTER EXTENSION dbsync UPDATE TO '0.4'" to load this file. \quit

-- Every export order and its last known state, as the service's Operation has it. No secret here: the
-- service's token lives only in the memory of the process that asked for it.
CREATE TABLE dbsync.export_order (
    name                   text PRIMARY KEY,     -- the service's order name (an id)
    server                 text NOT NULL,
    owner                  oid NOT NULL,         -- role that ordered it
    contents               jsonb,                -- what was ordered (exportContents)
    state                  text NOT NULL,        -- STATE_PENDING, STATE_RUNNING, STATE_SUCCEEDED, STATE_FAILED
    done                   boolean NOT NULL DEFAULT false,
    current_sub_process    text,
    finished_sub_processes bigint,
    open_sub_processes     bigint,
    system_id              text,
    license_serial_number  text,
    error_code             integer,              -- a failed order's google.rpc.Status
    error_name             text,                 -- its gRPC name: CANCELLED, UNKNOWN, INVALID_ARGUMENT, ...
    error_message          text,
    error_details          jsonb,
    cancel_requested_at    timestamptz,
    download_when_done     boolean NOT NULL DEFAULT false,  -- the worker downloads it into dbsync.export_download_dir
    downloaded_bytes       bigint,
    downloaded_sha256      text,
    downloaded_to          text,                 -- a server file, or 'large object <oid>'
    downloaded_at          timestamptz,
    ordered_at             timestamptz NOT NULL DEFAULT now(),
    state_changed_at       timestamptz,
    finished_at            timestamptz,          -- when it was first seen done
    last_polled_at         timestamptz
);

-- When each order entered each state.
CREATE TABLE dbsync.export_state (
    order_name text NOT NULL REFERENCES dbsync.export_order ON DELETE CASCADE,
    state      text NOT NULL,
    entered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX export_state_order_idx ON dbsync.export_state (order_name, entered_at);

-- The worker follows each order: a recurring export_poll job until it is done.
ALTER TABLE dbsync.job DROP CONSTRAINT job_kind_check;
ALTER TABLE dbsync.job ADD CONSTRAINT job_kind_check CHECK (kind IN ('changes_pull', 'upgrade_poll', 'export_poll'));

-- Internal: the network half (export_sql.c). Each takes the server and its credentials as the current role.
CREATE FUNCTION dbsync.octoplant_order(server text, contents jsonb)
RETURNS jsonb AS 'MODULE_PATHNAME', 'dbsync_octoplant_order' LANGUAGE C STRICT;
CREATE FUNCTION dbsync.octoplant_get(server text, name text)
RETURNS jsonb AS 'MODULE_PATHNAME', 'dbsync_octoplant_get' LANGUAGE C STRICT;
CREATE FUNCTION dbsync.octoplant_cancel(server text, name text)
RETURNS void AS 'MODULE_PATHNAME', 'dbsync_octoplant_cancel' LANGUAGE C STRICT;
CREATE FUNCTION dbsync.octoplant_download(server text, name text, path text, OUT bytes bigint, OUT sha256 text, OUT zip oid)
AS 'MODULE_PATHNAME', 'dbsync_octoplant_download' LANGUAGE C;

-- The export kinds the API knows: the contents of an order, checked before it is sent (a pure check: PUBLIC may
-- run it). {"exportContents": {...}}, the request body itself, is taken too.
CREATE FUNCTION dbsync.export_contents_check(contents jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    known constant text[] := ARRAY['projectTree', 'jobList', 'jobResults', 'unequalJobResults', 'userManagement',
        'componentTypes', 'componentLog', 'eventLog', 'adminLog', 'standardLibraryManagement',
        'componentsWithStdLibAssignments', 'assetState', 'usageInformation'];
    hint constant text := 'An export names one or more of: ' || array_to_string(known, ', ')
        || ', each with an object of its settings, such as {"projectTree": {}}.';
    kind text;
BEGIN
    IF contents IS NULL THEN
        RAISE EXCEPTION 'export contents must not be null' USING ERRCODE = 'null_value_not_allowed', HINT = hint;
    END IF;
    IF jsonb_typeof(contents) = 'object' AND (SELECT array_agg(k) FROM jsonb_object_keys(contents) k) = ARRAY['exportContents'] THEN
        contents := contents->'exportContents';
    END IF;
    IF jsonb_typeof(contents) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'export contents must be a JSON object, not %', coalesce(jsonb_typeof(contents), 'null')
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;
    IF contents = '{}' THEN
        RAISE EXCEPTION 'export contents are empty: nothing to export' USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;
    FOR kind IN SELECT k FROM jsonb_object_keys(contents) k ORDER BY k LOOP
        IF kind <> ALL (known) THEN
            RAISE EXCEPTION 'unknown export kind "%"', kind USING ERRCODE = 'invalid_parameter_value', HINT = hint;
        END IF;
        IF jsonb_typeof(contents->kind) <> 'object' THEN
            RAISE EXCEPTION 'export kind "%" needs an object of settings (such as {}), not %', kind, jsonb_typeof(contents->kind)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    RETURN contents;
END
$$;

-- Internal: records an Operation of the service; a new state is logged and notified. An order the
-- service does not know (STATE_UNSPECIFIED) is recorded only when it was known here before.
CREATE FUNCTION dbsync.export_record(server text, asked_name text, op jsonb, contents jsonb DEFAULT NULL)
RETURNS dbsync.export_order
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    order_name text := coalesce(asked_name, op->>'name');
    meta jsonb := CASE WHEN jsonb_typeof(op->'metadata') = 'object' THEN op->'metadata' ELSE '{}' END;
    err jsonb := CASE WHEN jsonb_typeof(op->'error') = 'object' THEN op->'error' END;
    new_state text := coalesce(meta->>'state', 'STATE_UNSPECIFIED');
    old_state text;
    rec dbsync.export_order;
BEGIN
    IF coalesce(order_name, '') = '' THEN
        RAISE EXCEPTION 'octoplant server "%" sent an order without a name', server
            USING ERRCODE = 'data_exception', DETAIL = left(op::text, 1000);
    END IF;
    SELECT o.state INTO old_state FROM dbsync.export_order o WHERE o.name = order_name FOR UPDATE;
    IF new_state = 'STATE_UNSPECIFIED' THEN
        UPDATE dbsync.export_order o SET state = new_state, last_polled_at = now(),
               state_changed_at = CASE WHEN o.state IS DISTINCT FROM new_state THEN now() ELSE o.state_changed_at END
         WHERE o.name = order_name RETURNING * INTO rec;
    ELSE
        INSERT INTO dbsync.export_order AS o (
            name, server, owner, contents, state, done, current_sub_process, finished_sub_processes,
            open_sub_processes, system_id, license_serial_number, error_code, error_name, error_message,
            error_details, state_changed_at, finished_at, last_polled_at)
        VALUES (order_name, server, current_user::regrole, contents, new_state,
            coalesce((op->>'done')::boolean, false), meta->>'currentSubProcess',
            (meta->>'finishedSubProcesses')::bigint, (meta->>'openSubProcesses')::bigint, meta->>'systemId',
            meta->>'licenseSerialNumber', (err->>'code')::integer, dbsync.grpc_code_name((err->>'code')::integer),
            err->>'message', err->'details', now(),
            CASE WHEN coalesce((op->>'done')::boolean, false) THEN now() END, now())
        ON CONFLICT (name) DO UPDATE SET
            state = excluded.state, done = excluded.done, current_sub_process = excluded.current_sub_process,
            finished_sub_processes = excluded.finished_sub_processes,
            open_sub_processes = excluded.open_sub_processes, system_id = excluded.system_id,
            license_serial_number = excluded.license_serial_number, error_code = excluded.error_code,
            error_name = excluded.error_name, error_message = excluded.error_message,
            error_details = excluded.error_details,
            state_changed_at = CASE WHEN o.state IS DISTINCT FROM excluded.state THEN now() ELSE o.state_changed_at END,
            finished_at = CASE WHEN excluded.done THEN coalesce(o.finished_at, now()) END,
            last_polled_at = now()
        RETURNING * INTO rec;
    END IF;
    IF rec.name IS NOT NULL AND old_state IS DISTINCT FROM rec.state THEN
        INSERT INTO dbsync.export_state (order_name, state) VALUES (rec.name, rec.state);
        PERFORM pg_notify('dbsync_export', json_build_object('name', rec.name, 'state', rec.state, 'done', rec.done)::text);
    END IF;
    RETURN rec;
END
$$;

-- The gRPC status code names, as the octoplant documentation lists them.
CREATE FUNCTION dbsync.grpc_code_name(code integer)
RETURNS text AS 'MODULE_PATHNAME', 'dbsync_grpc_code_name' LANGUAGE C IMMUTABLE STRICT;

-- Internal: an order known here (for the current role: its server's user mapping decides the rest).
CREATE FUNCTION dbsync.export_get(order_name text)
RETURNS dbsync.export_order
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec dbsync.export_order;
BEGIN
    IF order_name IS NULL THEN
        RAISE EXCEPTION 'order name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO rec FROM dbsync.export_order o WHERE o.name = order_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'export order "%" is not known here', order_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'Orders are known from dbsync_export_order; to follow one ordered elsewhere, name its server: dbsync_export_status(name, server => ...).';
    END IF;
    RETURN rec;
END
$$;

-- Internal: asks the service about an order and records the answer; an order it does not know is an error.
CREATE FUNCTION dbsync.export_refresh(server text, order_name text)
RETURNS dbsync.export_order
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec dbsync.export_order := dbsync.export_record(server, order_name, dbsync.octoplant_get(server, order_name));
BEGIN
    IF rec.state IS NULL OR rec.state = 'STATE_UNSPECIFIED' THEN
        RAISE EXCEPTION 'octoplant server "%" does not know export order "%"', server, order_name
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'It answers STATE_UNSPECIFIED, what it says of an invalid order name.';
    END IF;
    RETURN rec;
END
$$;

CREATE FUNCTION @extschema@.dbsync_export_order(server text, contents jsonb, download boolean DEFAULT false)
RETURNS TABLE (name text, state text, done boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    checked jsonb := dbsync.export_contents_check(contents);
    rec dbsync.export_order;
BEGIN
    IF server IS NULL THEN
        RAISE EXCEPTION 'server name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF download AND current_setting('dbsync.export_download_dir') = '' THEN
        RAISE EXCEPTION 'the worker has no directory to download into'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Set dbsync.export_download_dir (a directory the server can write), or download with dbsync_export_download.';
    END IF;
    rec := dbsync.export_record(server, NULL, dbsync.octoplant_order(server, checked), checked);
    UPDATE dbsync.export_order o SET download_when_done = download WHERE o.name = rec.name;
    -- From now on the worker follows it (where a worker serves this database).
    INSERT INTO dbsync.job (kind, args, owner, repeat_every, run_at)
    VALUES ('export_poll', jsonb_build_object('name', rec.name), current_user::regrole,
            current_setting('dbsync.export_poll_interval')::interval,
            now() + current_setting('dbsync.export_poll_interval')::interval);
    PERFORM dbsync.wake_worker();
    RETURN QUERY SELECT rec.name, rec.state, rec.done;
END
$$;

CREATE FUNCTION @extschema@.dbsync_export_status(name text, server text DEFAULT NULL)
RETURNS SETOF dbsync.export_order
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    known dbsync.export_order;
BEGIN
    IF server IS NULL THEN
        known := dbsync.export_get(name);
        server := known.server;
    ELSIF name IS NULL THEN
        RAISE EXCEPTION 'order name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM dbsync.export_refresh(server, name);
    RETURN QUERY SELECT * FROM dbsync.export_order o WHERE o.name = dbsync_export_status.name;
END
$$;

CREATE FUNCTION @extschema@.dbsync_export_wait(name text, timeout interval DEFAULT '5 min',
                                               poll_interval interval DEFAULT NULL)
RETURNS SETOF dbsync.export_order
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec dbsync.export_order;
    deadline timestamptz := clock_timestamp() + timeout;
    pause interval := coalesce(poll_interval, current_setting('dbsync.export_poll_interval')::interval);
BEGIN
    IF timeout IS NULL OR timeout < interval '0' THEN
        RAISE EXCEPTION 'timeout must be a positive interval, not %', coalesce(timeout::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pause < interval '10 ms' THEN
        RAISE EXCEPTION 'poll_interval must be at least 10 ms, not %', pause USING ERRCODE = 'invalid_parameter_value';
    END IF;
    rec := dbsync.export_get(name);
    LOOP
        rec := dbsync.export_refresh(rec.server, rec.name);
        EXIT WHEN rec.done OR clock_timestamp() >= deadline;
        -- pg_sleep serves cancels and statement_timeout at once.
        PERFORM pg_sleep(extract(epoch FROM least(pause, deadline - clock_timestamp())));
    END LOOP;
    IF NOT rec.done THEN
        RAISE WARNING 'export order "%" is still % after %', rec.name, rec.state, timeout;
    END IF;
    RETURN QUERY SELECT * FROM dbsync.export_order o WHERE o.name = rec.name;
END
$$;

CREATE FUNCTION @extschema@.dbsync_export_cancel(name text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec dbsync.export_order := dbsync.export_get(name);
BEGIN
    IF rec.done THEN
        RAISE EXCEPTION 'export order "%" is already done (%): there is nothing to cancel', rec.name, rec.state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM dbsync.octoplant_cancel(rec.server, rec.name);
    UPDATE dbsync.export_order o SET cancel_requested_at = now() WHERE o.name = rec.name;
    rec := dbsync.export_refresh(rec.server, rec.name);
    RETURN rec.state;
END
$$;

CREATE FUNCTION dbsync.export_download(order_name text, path text)
RETURNS TABLE (bytes bigint, sha256 text, zip oid)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec dbsync.export_order := dbsync.export_get(order_name);
    got record;
BEGIN
    IF rec.state IS DISTINCT FROM 'STATE_SUCCEEDED' THEN
        rec := dbsync.export_refresh(rec.server, rec.name);
    END IF;
    IF rec.state IS DISTINCT FROM 'STATE_SUCCEEDED' THEN
        RAISE EXCEPTION 'export order "%" is %: its ZIP exists only once it has succeeded', rec.name, rec.state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = CASE WHEN rec.state = 'STATE_FAILED'
                              THEN format('It failed with %s: %s', coalesce(rec.error_name, '?'), coalesce(rec.error_message, '(no message)'))
                              ELSE 'Follow it with dbsync_export_status or dbsync_export_wait.' END;
    END IF;
    SELECT * INTO got FROM dbsync.octoplant_download(rec.server, rec.name, path);
    UPDATE dbsync.export_order o SET downloaded_bytes = got.bytes, downloaded_sha256 = got.sha256,
           downloaded_to = coalesce(path, 'large object ' || got.zip), downloaded_at = now()
     WHERE o.name = rec.name;
    RETURN QUERY SELECT got.bytes, got.sha256, got.zip;
END
$$;

CREATE FUNCTION @extschema@.dbsync_export_download(name text, path text)
RETURNS TABLE (bytes bigint, sha256 text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT d.bytes, d.sha256 FROM dbsync.export_download(name, dbsync.required(path, 'the file path')) d $$;

CREATE FUNCTION @extschema@.dbsync_export_download(name text)
RETURNS TABLE (zip oid, bytes bigint, sha256 text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT d.zip, d.bytes, d.sha256 FROM dbsync.export_download(name, NULL) d $$;

REVOKE ALL ON FUNCTION dbsync.octoplant_order(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.octoplant_get(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.octoplant_cancel(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.octoplant_download(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.export_record(text, text, jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.export_get(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.export_refresh(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.export_download(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_export_order(text, jsonb, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_export_status(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_export_wait(text, interval, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_export_cancel(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_export_download(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_export_download(text) FROM PUBLIC;
