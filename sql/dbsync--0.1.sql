-- dbsync 0.1: servers, credentials and the ABRA Flexi change feed.
\echo Use "CREATE EXTENSION dbsync" to load this file. \quit

-- Internal objects live in schema dbsync; the dbsync_* API lives in the
-- schema the extension is created in (public by default).
CREATE SCHEMA dbsync;
REVOKE ALL ON SCHEMA dbsync FROM PUBLIC;

-- Remote systems are foreign servers of this wrapper; credentials are user mappings.
CREATE FUNCTION dbsync.fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'dbsync_fdw_validator'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER dbsync VALIDATOR dbsync.fdw_validator;

-- One page of the ABRA Flexi change log.
CREATE FUNCTION @extschema@.dbsync_changes_fetch(
    server text,
    start bigint DEFAULT NULL,
    "limit" integer DEFAULT 100,
    evidence text[] DEFAULT NULL)
RETURNS TABLE (
    evidence text,
    version bigint,
    operation text,
    changed_at timestamp,
    record_id bigint,
    external_ids text[],
    next_version bigint,
    global_version bigint)
AS 'MODULE_PATHNAME', 'dbsync_changes_fetch'
LANGUAGE C VOLATILE ROWS 100;

CREATE FUNCTION @extschema@.dbsync_changes_enable(server text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dbsync_changes_enable'
LANGUAGE C VOLATILE;

CREATE FUNCTION @extschema@.dbsync_changes_disable(server text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dbsync_changes_disable'
LANGUAGE C VOLATILE;

CREATE FUNCTION @extschema@.dbsync_changes_status(server text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dbsync_changes_status'
LANGUAGE C VOLATILE;

CREATE FUNCTION @extschema@.dbsync_changes_global_version(server text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'dbsync_changes_global_version'
LANGUAGE C VOLATILE;

-- Everything that reaches the network is for the roles a DBA grants it to.
REVOKE ALL ON FUNCTION dbsync.fdw_validator(text[], oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_changes_fetch(text, bigint, integer, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_changes_enable(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_changes_disable(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_changes_status(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dbsync_changes_global_version(text) FROM PUBLIC;
