-- Who may do what: network functions are not for PUBLIC, credentials stay private.
CREATE ROLE regress_dbsync_user LOGIN;
CREATE ROLE regress_dbsync_other LOGIN;

-- Every dbsync_* function is revoked from PUBLIC.
SELECT p.oid::regprocedure AS function, has_function_privilege('regress_dbsync_user', p.oid, 'EXECUTE') AS can_execute
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'dbsync') AND d.deptype = 'e'
 ORDER BY p.oid::regprocedure::text;
-- The dbsync schema is not PUBLIC's either.
SELECT has_schema_privilege('regress_dbsync_user', 'dbsync', 'USAGE') AS schema_usage;
-- Staging and job tables (payloads, owners) are not PUBLIC's.
SELECT c.oid::regclass AS relation, has_table_privilege('regress_dbsync_user', c.oid, 'SELECT') AS can_select
  FROM pg_class c WHERE c.relnamespace = 'dbsync'::regnamespace AND c.relkind IN ('r', 'v')
 ORDER BY c.oid::regclass::text;
-- Only superusers may use the wrapper unless granted.
SELECT has_foreign_data_wrapper_privilege('regress_dbsync_user', 'dbsync', 'USAGE') AS fdw_usage;

SET ROLE regress_dbsync_user;
SELECT * FROM dbsync_changes_fetch('flexi');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION dbsync_changes_fetch(text, bigint, integer, text[]) TO regress_dbsync_user;
SET ROLE regress_dbsync_user;
-- Allowed to call, but not to use the server.
SELECT * FROM dbsync_changes_fetch('flexi');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT USAGE ON FOREIGN SERVER flexi TO regress_dbsync_user;
SET ROLE regress_dbsync_user;
-- May use the server, but has no credentials for it.
SELECT * FROM dbsync_changes_fetch('flexi');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
CREATE USER MAPPING FOR regress_dbsync_user SERVER flexi OPTIONS (user 'api', password 'S3cr3t-pw');
SET ROLE regress_dbsync_user;
SELECT count(*) FROM dbsync_changes_fetch('flexi', "limit" => 3);
-- Its own mapping's options are visible to it; other roles' are not.
SELECT usename, umoptions FROM pg_user_mappings WHERE srvname = 'flexi' ORDER BY usename;
RESET ROLE;
SET ROLE regress_dbsync_other;
SELECT usename, umoptions FROM pg_user_mappings WHERE srvname = 'flexi' ORDER BY usename;
SELECT count(*) FROM pg_user_mapping;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

DROP USER MAPPING FOR regress_dbsync_user SERVER flexi;
REVOKE USAGE ON FOREIGN SERVER flexi FROM regress_dbsync_user;
REVOKE EXECUTE ON FUNCTION dbsync_changes_fetch(text, bigint, integer, text[]) FROM regress_dbsync_user;
DROP ROLE regress_dbsync_user;
DROP ROLE regress_dbsync_other;
