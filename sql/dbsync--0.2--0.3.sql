-- dbsync 0.3: Odoo database upgrade requests (create, upload, process, status, download).
\echo Use "ALTER EXTENSION dbsync UPDATE TO '0.3'" to load this file. \quit

-- Every request and its last known status, as the service's status reply has it.
CREATE TABLE dbsync.upgrade_request (
    id                bigint PRIMARY KEY,        -- the service's request id
    server            text NOT NULL,
    owner             oid NOT NULL,              -- role that created it
    request_key       text NOT NULL,             -- secret: the service's key of this request
    email             text,
    target            text,
    aim               text,
    filename          text,
    timezone          text,
    state             text,
    issue_stage       text,
    issue             bigint,
    status_url        text,                      -- the URLs carry the key too
    notes_url         text,
    original_sql_url  text,
    original_dump_url text,
    upgraded_sql_url  text,
    upgraded_dump_url text,
    modules_url       text,
    filesize          text,
    database_uuid     text,
    created_at        timestamp,
    estimated_time    text,
    processed_at      timestamp,
    elapsed           text,
    filestore         boolean,
    customer_message  text,
    database_version  text,
    postgresql        text,
    compressions      text[],
    uploaded_bytes    bigint,
    uploaded_sha256   text,
    uploaded_at       timestamptz,
    downloaded_bytes  bigint,
    downloaded_sha256 text,
    downloaded_to     text,                      -- a server file, or 'large object <oid>'
    downloaded_at     timestamptz,
    download_when_done boolean NOT NULL DEFAULT false,  -- the worker downloads it into dbsync.upgrade_download_dir
    state_changed_at  timestamptz,
    last_polled_at    timestamptz,
    requested_at      timestamptz NOT NULL DEFAULT now()
);

-- When each request entered each state.
CREATE TABLE dbsync.upgrade_state (
    request_id bigint NOT NULL REFERENCES dbsync.upgrade_request ON DELETE CASCADE,
    state      text NOT NULL,
    entered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX upgrade_state_request_idx ON dbsync.upgrade_state (request_id, entered_at);

-- What dbsync_upgrade_status shows: the request without its key (nor the URLs, which carry it).
CREATE VIEW dbsync.upgrade_status AS
SELECT id, server, email, target, aim, filename, timezone, state, issue_stage, issue, filesize, database_uuid,
       created_at, estimated_time, processed_at, elapsed, filestore, customer_message, database_version,
       postgresql, compressions, uploaded_bytes, uploaded_sha256, uploaded_at, downloaded_bytes,
       downloaded_sha256, downloaded_to, downloaded_at, download_when_done, state_changed_at, last_polled_at,
       requested_at
  FROM dbsync.upgrade_request;

-- The worker follows processed requests: a recurring upgrade_poll job per request until it ends.
ALTER TABLE dbsync.job DROP CONSTRAINT job_kind_check;
ALTER TABLE dbsync.job ADD CONSTRAINT job_kind_check CHECK (kind IN ('changes_pull', 'upgrade_poll'));

-- Internal: the network half (upgrade_sql.c).
CREATE FUNCTION dbsync.odoo_create(server text, target text, aim text, filename text,
                                   contract text, email text, timezone text)
RETURNS jsonb AS 'MODULE_PATHNAME', 'dbsync_odoo_create' LANGUAGE C;
CREATE FUNCTION dbsync.odoo_request(server text, method text, request_id bigint, key text)
RETURNS jsonb AS 'MODULE_PATHNAME', 'dbsync_odoo_request' LANGUAGE C STRICT;
CREATE FUNCTION dbsync.odoo_upload(server text, request_id bigint, key text, path text, dump oid,
                                   OUT bytes bigint, OUT sha256 text)
AS 'MODULE_PATHNAME', 'dbsync_odoo_upload' LANGUAGE C;
CREATE FUNCTION dbsync.odoo_download(server text, url text, shown text, path text,
                                     OUT bytes bigint, OUT sha256 text, OUT dump oid)
AS 'MODULE_PATHNAME', 'dbsync_odoo_download' LANGUAGE C;

-- Internal: records a request as the service described it; a new state is logged and notified.
CREATE FUNCTION dbsync.upgrade_record(server text, req jsonb)
RETURNS dbsync.upgrade_request
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_state text;
    rec dbsync.upgrade_request;
BEGIN
    SELECT u.state INTO old_state FROM dbsync.upgrade_request u WHERE u.id = (req->>'id')::bigint FOR UPDATE;
    INSERT INTO dbsync.upgrade_request AS u (
        id, server, owner, request_key, email, target, aim, filename, timezone, state, issue_stage, issue,
        status_url, notes_url, original_sql_url, original_dump_url, upgraded_sql_url, upgraded_dump_url,
        modules_url, filesize, database_uuid, created_at, estimated_time, processed_at, elapsed, filestore,
        customer_message, database_version, postgresql, compressions, state_changed_at, last_polled_at)
    VALUES ((req->>'id')::bigint, server, current_user::regrole, req->>'key', req->>'email', req->>'target',
        req->>'aim', req->>'filename', req->>'timezone', req->>'state', req->>'issue_stage',
        (req->>'issue')::bigint, req->>'status_url', req->>'notes_url', req->>'original_sql_url',
        req->>'original_dump_url', req->>'upgraded_sql_url', req->>'upgraded_dump_url', req->>'modules_url',
        req->>'filesize', req->>'database_uuid', (req->>'created_at')::timestamp, req->>'estimated_time',
        (req->>'processed_at')::timestamp, req->>'elapsed', (req->>'filestore')::boolean,
        req->>'customer_message', req->>'database_version', req->>'postgresql',
        ARRAY(SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(req->'compressions') = 'array'
                                                    THEN req->'compressions' ELSE '[]' END)),
        now(), now())
    ON CONFLICT (id) DO UPDATE SET
        email = excluded.email, target = excluded.target, aim = excluded.aim, filename = excluded.filename,
        timezone = excluded.timezone, state = excluded.state, issue_stage = excluded.issue_stage,
        issue = excluded.issue, status_url = excluded.status_url, notes_url = excluded.notes_url,
        original_sql_url = excluded.original_sql_url, original_dump_url = excluded.original_dump_url,
        upgraded_sql_url = excluded.upgraded_sql_url, upgraded_dump_url = excluded.upgraded_dump_url,
        modules_url = excluded.modules_url, filesize = excluded.filesize,
        database_uuid = excluded.database_uuid, created_at = excluded.created_at,
        estimated_time = excluded.estimated_time, processed_at = excluded.processed_at,
        elapsed = excluded.elapsed, filestore = excluded.filestore,
        customer_message = excluded.customer_message, database_version = excluded.database_version,
        postgresql = excluded.postgresql, compressions = excluded.compressions,
        state_changed_at = CASE WHEN u.state IS DISTINCT FROM excluded.state THEN now() ELSE u.state_changed_at END,
        last_polled_at = now()
    RETURNING * INTO rec;
    IF old_state IS DISTINCT FROM rec.state THEN
        INSERT INTO dbsync.upgrade_state (request_id, state) VALUES (rec.id, rec.state);
        PERFORM pg_notify('dbsync_upgrade', json_build_object('id', rec.id, 'state', rec.state)::text);
    END IF;
    RETURN rec;
END
$$;

-- Internal: a request known here, for the current role.
CREATE FUNCTION dbsync.upgrade_get(request_id bigint)
RETURNS dbsync.upgrade_request
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec dbsync.upgrade_request;
BEGIN
    IF request_id IS NULL THEN
        RAISE EXCEPTION 'request id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO rec FROM dbsync.upgrade_request u WHERE u.id = request_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'upgrade request % is not known here', request_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'Requests are known from dbsync_upgrade_create; see dbsync.upgrade_request.';
    END IF;
    RETURN rec;
END
$$;

CREATE FUNCTION @extschema@.dbsync_upgrade_create(
    server text, target text, aim text, filename text,
    contract text DEFAULT NULL, email text DEFAULT NULL, timezone text DEFAULT NULL)
RETURNS TABLE (id bigint, state text, created_at timestamp)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec dbsync.upgrade_request;
BEGIN
    -- What is surely wrong is refused before any request.
    IF server IS NULL THEN
        RAISE EXCEPTION 'server name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF coalesce(btrim(target), '') = '' THEN
        RAISE EXCEPTION 'target must name the Odoo version to upgrade to, such as ''16.0'''
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF aim IS NULL OR aim NOT IN ('test', 'production') THEN
        RAISE EXCEPTION 'aim must be ''test'' or ''production'', not %', coalesce(quote_literal(aim), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(btrim(filename), '') = '' THEN
        RAISE EXCEPTION 'filename must not be empty' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'It only names the dump for you, such as ''prod.dump''.';
    END IF;
    IF email IS NOT NULL AND email !~ '^[^@[:space:],;<>]+@[^@[:space:],;<>]+\.[^@[:space:],;<>]+$' THEN
        RAISE EXCEPTION 'invalid e-mail address %', quote_literal(email) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF contract IS NOT NULL AND btrim(contract) = '' THEN
        RAISE EXCEPTION 'contract must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    rec := dbsync.upgrade_record(server, dbsync.odoo_create(server, target, aim, filename, contract, email, timezone));
    RETURN QUERY SELECT rec.id, rec.state, rec.created_at;
END
$$;

-- Internal: a NULL file path or large object is an error, not "the other kind" (a pure check: PUBLIC may run it).
CREATE FUNCTION dbsync.required(value anyelement, what text)
RETURNS anyelement
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be null', what USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN value;
END
$$;

CREATE FUNCTION dbsync.upgrade_upload(request_id bigint, path text, dump oid)
RETURNS TABLE (bytes bigint, sha256 text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec dbsync.upgrade_request := dbsync.upgrade_get(request_id);
    sent record;
BEGIN
    IF rec.state IS DISTINCT FROM 'draft' THEN
        RAISE EXCEPTION 'upgrade request % is in state %, not draft: its dump can no longer be uploaded', rec.id, rec.state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT * INTO sent FROM dbsync.odoo_upload(rec.server, rec.id, rec.request_key, path, dump);
    UPDATE dbsync.upgrade_request u SET uploaded_bytes = sent.bytes, uploaded_sha256 = sent.sha256,
                                        uploaded_at = now() WHERE u.id = rec.id;
    -- What the service made of it (size, format, PostgreSQL version).
    PERFORM dbsync.upgrade_record(rec.server, dbsync.odoo_request(rec.server, 'status', rec.id, rec.request_key));
    RETURN QUERY SELECT sent.bytes, sent.sha256;
END
$$;

CREATE FUNCTION @extschema@.dbsync_upgrade_upload(request_id bigint, path text)
RETURNS TABLE (bytes bigint, sha256 text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM dbsync.upgrade_upload(request_id, dbsync.required(path, 'the dump''s path'), NULL) $$;

CREATE FUNCTION @extschema@.dbsync_upgrade_upload(request_id bigint, dump oid)
RETURNS TABLE (bytes bigint, sha256 text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM dbsync.upgrade_upload(request_id, NULL, dbsync.required(dump, 'the dump''s large object')) $$;

CREATE FUNCTION @extschema@.dbsync_upgrade_process(request_id bigint, download boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec dbsync.upgrade_request := dbsync.upgrade_get(request_id);
BEGIN
    IF rec.uploaded_bytes IS NULL THEN
        RAISE EXCEPTION 'upgrade request % has no dump uploaded yet', rec.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Upload it first with dbsync_upgrade_upload.';
    END IF;
    IF download AND current_setting('dbsync.upgrade_download_dir') = '' THEN
        RAISE EXCEPTION 'the worker has no directory to download into'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Set dbsync.upgrade_download_dir (a directory the server can write), or download with dbsync_upgrade_download.';
    END IF;
    UPDATE dbsync.upgrade_request u SET download_when_done = download WHERE u.id = rec.id;
    PERFORM dbsync.odoo_request(rec.server, 'process', rec.id, rec.request_key);
    rec := dbsync.upgrade_record(rec.server, dbsync.odoo_request(rec.server, 'status', rec.id, rec.request_key));
    -- From now on the worker polls it (where a worker serves this database).
    IF NOT EXISTS (SELECT FROM dbsync.job j WHERE j.kind = 'upgrade_poll' AND j.args->>'request_id' = rec.id::text) THEN
        INSERT INTO dbsync.job (kind, args, owner, repeat_every, run_at)
        VALUES ('upgrade_poll', jsonb_build_object('request_id', rec.id), current_user::regrole,
                current_setting('dbsync.upgrade_poll_interval')::interval,
                now() + current_setting('dbsync.upgrade_poll_interval')::interval);
        PERFORM dbsync.wake_worker();
    END IF;
    RETURN rec.state;
END
$$;

CREATE FUNCTION @extschema@.dbsync_upgrade_status(request_id bigint)
RETURNS SETOF dbsync.upgrade_status
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec dbsync.upgrade_request := dbsync.upgrade_get(request_id);
BEGIN
    PERFORM dbsync.upgrade_record(rec.server, dbsync.odoo_request(rec.server, 'status', rec.id, rec.request_key));
    RETURN QUERY SELECT * FROM dbsync.upgrade_status s WHERE s.id = rec.id;
END
$$;

CREATE FUNCTION dbsync.upgrade_download(request_id bigint, path text)
RETURNS TABLE (bytes bigint, sha256 text, dump oid)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec dbsync.upgrade_request := dbsync.upgrade_get(request_id);
    got record;
BEGIN
    IF rec.state IS DISTINCT FROM 'done' THEN
        rec := dbsync.upgrade_record(rec.server, dbsync.odoo_request(rec.server, 'status', rec.id, rec.request_key));
    END IF;
    IF rec.state IS DISTINCT FROM 'done' THEN
        RAISE EXCEPTION 'upgrade request % is in state %: the upgraded dump exists only once it is done', rec.id, rec.state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = CASE WHEN rec.state = 'failed' THEN 'The service says: ' || coalesce(rec.customer_message, '(nothing)')
                              ELSE 'Follow it with dbsync_upgrade_status.' END;
    END IF;
    SELECT * INTO got FROM dbsync.odoo_download(rec.server, rec.upgraded_dump_url,
                                                format('the upgraded dump of request %s', rec.id), path);
    UPDATE dbsync.upgrade_request u SET downloaded_bytes = got.bytes, downloaded_sha256 = got.sha256,
           downloaded_to = coalesce(path, 'large object ' || got.dump), downloaded_at = now()
     WHERE u.id = rec.id;
    RETURN QUERY SELECT got.bytes, got.sha256, got.dump;
END
$$;

CREATE FUNCTION @extschema@.dbsync_upgrade_download(request_id bigint, path text)
RETURNS TABLE (bytes bigint, sha256 text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT d.bytes, d.sha256 FROM dbsync.upgrade_download(request_id, dbsync.required(path, 'the file path')) d $$;

CREATE FUNCTION @extschema@.dbsync_upgrade_download(request_id bigint)
RETURNS TABLE (dump oid, bytes bigint, sha256 text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT d.dump, d.bytes, d.sha256 FROM dbsync.upgrade_download(request_id, NULL) d $$;

REVOKE ALL ON FUNCTION dbsync.odoo_create(text, text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.odoo_request(text, text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.odoo_upload(text, bigint, text, text, oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.odoo_download(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.upgrade_record(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.upgrade_get(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.upgrade_upload(bigint, text, oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.upgrade_download(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_upgrade_create(text, text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_upgrade_upload(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_upgrade_upload(bigint, oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_upgrade_process(bigint, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_upgrade_status(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_upgrade_download(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_upgrade_download(bigint) FROM PUBLIC;
