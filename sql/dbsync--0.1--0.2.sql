-- dbsync 0.2: continuous sync of the ABRA Flexi change log into staging,
-- by a job queue that the background worker runs.
\echo Use "ALTER EXTENSION dbsync UPDATE TO '0.2'" to load this file. \quit

-- What to sync: one subscription per Flexi server.
CREATE TABLE dbsync.subscription (
    id              serial PRIMARY KEY,
    server          text NOT NULL UNIQUE,
    evidences       text[],                 -- NULL: every evidence of the company
    enabled         boolean NOT NULL DEFAULT true,
    pull_interval   interval NOT NULL DEFAULT '1 minute' CHECK (pull_interval >= interval '1 second'),
    page_size       integer NOT NULL DEFAULT 1000 CHECK (page_size BETWEEN 1 AND 1000),
    owner           oid NOT NULL,           -- role whose user mapping and rights a round uses
    phase           text NOT NULL DEFAULT 'load' CHECK (phase IN ('load', 'sync')),
    cursor_version  bigint,                 -- the next version to read; set when the load starts
    load_evidences  text[],                 -- evidences the initial load still has to read
    load_after_id   bigint NOT NULL DEFAULT 0,  -- the load's position in load_evidences[1]
    remote_version  bigint,                 -- the last @globalVersion seen
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_run_at     timestamptz,
    last_success_at timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    failures        integer NOT NULL DEFAULT 0   -- consecutive failed rounds
);

-- Every change of the remote log, once, append-only. (No foreign key to the subscription: its check,
-- a query per staged row, was a third of the cost of staging; dbsync_unsubscribe deletes the rows.)
CREATE TABLE dbsync.change (
    subscription_id integer NOT NULL,
    version         bigint NOT NULL,
    evidence        text NOT NULL,
    operation       text NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
    changed_at      timestamp NOT NULL,
    record_id       bigint NOT NULL,
    external_ids    text[] NOT NULL,
    pulled_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, version)
);
CREATE INDEX change_record_idx ON dbsync.change (subscription_id, evidence, record_id);

-- The current remote state of every record seen.
CREATE TABLE dbsync.record (
    subscription_id integer NOT NULL,
    evidence        text NOT NULL,
    record_id       bigint NOT NULL,
    version         bigint NOT NULL,        -- the change (or the load's global version) it reflects
    deleted         boolean NOT NULL DEFAULT false,
    payload         jsonb,                  -- the record as the server sent it; the last known one once deleted
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, evidence, record_id)
);

-- The work of the background worker: one row per unit of work.
CREATE TABLE dbsync.job (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('changes_pull')),
    args            jsonb NOT NULL DEFAULT '{}',
    subscription_id integer REFERENCES dbsync.subscription ON DELETE CASCADE,
    owner           oid NOT NULL,           -- role the job runs as
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed')),
    run_at          timestamptz NOT NULL DEFAULT now(),
    repeat_every    interval,               -- a recurring job is pending again after each run
    attempts        integer NOT NULL DEFAULT 0,  -- consecutive failures
    max_attempts    integer NOT NULL DEFAULT 5,  -- for jobs that do not repeat
    runner_pid      integer,
    started_at      timestamptz,
    finished_at     timestamptz,
    last_error      text,
    result          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_due_idx ON dbsync.job (run_at) WHERE state = 'pending';
CREATE UNIQUE INDEX job_pull_idx ON dbsync.job (subscription_id) WHERE kind = 'changes_pull';

CREATE VIEW dbsync.subscription_status AS
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
  LEFT JOIN dbsync.job j ON j.subscription_id = s.id AND j.kind = 'changes_pull';

-- Internal: checks a server for the current role (exists, api, USAGE, user mapping); no network.
CREATE FUNCTION dbsync.check_server(server text, api text)
RETURNS void
AS 'MODULE_PATHNAME', 'dbsync_check_server'
LANGUAGE C STRICT;

-- Internal: tells the launcher that a database has new work; false when no worker serves it.
CREATE FUNCTION dbsync.wake_worker()
RETURNS boolean
AS 'MODULE_PATHNAME', 'dbsync_wake_worker'
LANGUAGE C STRICT;

-- Internal: clear errors for settings the tables' checks would also refuse.
CREATE FUNCTION dbsync.check_pull_settings(pull_interval interval, page_size integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pull_interval < interval '1 second' THEN
        RAISE EXCEPTION 'pull_interval must be at least 1 second, not %', pull_interval
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF page_size NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'page_size must be between 1 and 1000, not %', page_size
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'ABRA Flexi returns at most 1000 changes a page.';
    END IF;
END
$$;

CREATE FUNCTION @extschema@.dbsync_subscribe(
    server text,
    evidence text[] DEFAULT NULL,
    pull_interval interval DEFAULT '1 minute',
    page_size integer DEFAULT 1000,
    enabled boolean DEFAULT true,
    start_version bigint DEFAULT NULL)     -- replay the log from this version instead of an initial load
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub_id integer;
BEGIN
    IF server IS NULL THEN
        RAISE EXCEPTION 'server name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF evidence IS NOT NULL AND (cardinality(evidence) = 0 OR array_position(evidence, NULL) IS NOT NULL
                                 OR EXISTS (SELECT FROM unnest(evidence) e WHERE e !~ '^[a-z0-9-]+$')) THEN
        RAISE EXCEPTION 'invalid evidence list %', evidence
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give evidence names such as ''faktura-vydana'' or ''adresar'', or NULL for all of them.';
    END IF;
    IF start_version < 0 THEN
        RAISE EXCEPTION 'start_version must be 0 or more' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM dbsync.check_pull_settings(pull_interval, page_size);
    PERFORM dbsync.check_server(server, 'flexi');
    IF EXISTS (SELECT FROM dbsync.subscription s WHERE s.server = dbsync_subscribe.server) THEN
        RAISE EXCEPTION 'server "%" already has a subscription', server
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Change it with dbsync_subscription_alter, or remove it with dbsync_unsubscribe.';
    END IF;
    INSERT INTO dbsync.subscription (server, evidences, enabled, pull_interval, page_size, owner,
                                     phase, cursor_version)
    VALUES (server, (SELECT array_agg(DISTINCT e ORDER BY e) FROM unnest(evidence) e),
            enabled, pull_interval, page_size, current_user::regrole,
            CASE WHEN start_version IS NULL THEN 'load' ELSE 'sync' END, start_version)
    RETURNING id INTO sub_id;
    INSERT INTO dbsync.job (kind, args, subscription_id, owner, repeat_every)
    VALUES ('changes_pull', jsonb_build_object('subscription_id', sub_id), sub_id, current_user::regrole,
            pull_interval);
    IF NOT dbsync.wake_worker() AND enabled THEN
        RAISE NOTICE 'no background worker serves database "%"', current_database()
            USING HINT = 'Add it to dbsync.databases (with shared_preload_libraries = ''dbsync''), '
                         'or run dbsync_changes_pull from pg_cron.';
    END IF;
    RETURN sub_id;
END
$$;

CREATE FUNCTION @extschema@.dbsync_subscription_alter(
    server text,
    enabled boolean DEFAULT NULL,
    pull_interval interval DEFAULT NULL,
    page_size integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub dbsync.subscription;
BEGIN
    PERFORM dbsync.check_pull_settings(pull_interval, page_size);
    UPDATE dbsync.subscription s
       SET enabled = coalesce(dbsync_subscription_alter.enabled, s.enabled),
           pull_interval = coalesce(dbsync_subscription_alter.pull_interval, s.pull_interval),
           page_size = coalesce(dbsync_subscription_alter.page_size, s.page_size)
     WHERE s.server = dbsync_subscription_alter.server
    RETURNING * INTO sub;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'server "%" has no subscription', server USING ERRCODE = 'undefined_object';
    END IF;
    UPDATE dbsync.job j
       SET repeat_every = sub.pull_interval,
           run_at = CASE WHEN j.state = 'pending' THEN least(j.run_at, now() + sub.pull_interval) ELSE j.run_at END
     WHERE j.subscription_id = sub.id AND j.kind = 'changes_pull';
    PERFORM dbsync.wake_worker();
END
$$;

CREATE FUNCTION @extschema@.dbsync_unsubscribe(server text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub_id integer;
BEGIN
    DELETE FROM dbsync.subscription s WHERE s.server = dbsync_unsubscribe.server RETURNING id INTO sub_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'server "%" has no subscription', server USING ERRCODE = 'undefined_object';
    END IF;
    DELETE FROM dbsync.change WHERE subscription_id = sub_id;
    DELETE FROM dbsync.record WHERE subscription_id = sub_id;
END
$$;

-- One round now, in the caller's transaction: initial load if not done, then every page up to "none".
CREATE FUNCTION @extschema@.dbsync_changes_pull(server text, max_pages integer DEFAULT NULL)
RETURNS TABLE (
    outcome text,               -- 'done', 'more' (max_pages reached) or 'busy' (another runner has it)
    phase text,
    pages integer,
    changes bigint,
    records bigint,
    records_missing bigint,
    cursor_version bigint,
    remote_version bigint)
AS 'MODULE_PATHNAME', 'dbsync_changes_pull'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION dbsync.check_server(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.wake_worker() FROM PUBLIC;
REVOKE ALL ON FUNCTION dbsync.check_pull_settings(interval, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_subscribe(text, text[], interval, integer, boolean, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_subscription_alter(text, boolean, interval, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_unsubscribe(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_changes_pull(text, integer) FROM PUBLIC;
