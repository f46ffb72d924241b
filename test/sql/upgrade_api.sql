-- Odoo database upgrade requests: create, upload, process, status, download, against the simulator.
\getenv sim_port DBSYNC_SIM_PORT
\set sim_url 'http://127.0.0.1:' :sim_port
SET datestyle = ISO;
CREATE SERVER upgrade FOREIGN DATA WRAPPER dbsync OPTIONS (api 'odoo_upgrade', url :'sim_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER upgrade OPTIONS (contract 'M123456-abcdef', email 'dba@example.com');
SELECT '/tmp/dbsync_regress_' || pg_backend_pid() AS work \gset
COPY (SELECT 'PGDMP pretend dump ' || g FROM generate_series(1, 5000) g) TO :'work';

-- Surely wrong inputs are refused before any request.
SELECT * FROM dbsync_upgrade_create('upgrade', target => '16.0', aim => 'staging', filename => 'prod.dump');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_upgrade_create('upgrade', target => '16.0', aim => 'test', filename => ' ');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_upgrade_create('upgrade', target => '', aim => 'test', filename => 'prod.dump');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_upgrade_create('upgrade', target => '16.0', aim => 'test', filename => 'prod.dump', email => 'dba');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_upgrade_create(NULL, target => '16.0', aim => 'test', filename => 'prod.dump');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_upgrade_create('flexi', target => '16.0', aim => 'test', filename => 'prod.dump');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER upgrade_bare FOREIGN DATA WRAPPER dbsync OPTIONS (api 'odoo_upgrade', url :'sim_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER upgrade_bare;
SELECT * FROM dbsync_upgrade_create('upgrade_bare', target => '16.0', aim => 'test', filename => 'prod.dump');
\echo :LAST_ERROR_SQLSTATE
-- The service's failures, in words, all of them, with the expected values.
SELECT * FROM dbsync_upgrade_create('upgrade', target => '5.0', aim => 'test', filename => 'prod.dump',
                                    contract => 'M999-nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS requests FROM dbsync.upgrade_request;

-- A request, step by step.
SELECT * FROM dbsync_upgrade_create('upgrade', target => '16.0', aim => 'test', filename => 'prod.dump')
\gset req_
SELECT :req_id AS id, :'req_state' AS state;
SELECT server, email, target, aim, filename, state, issue_stage, length(request_key) > 10 AS has_key,
       upgraded_dump_url LIKE '%/' || id || '/%/upgraded/archive' AS has_urls
  FROM dbsync.upgrade_request;
SELECT dbsync_upgrade_process(:req_id);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_upgrade_upload(:req_id, 'relative/dump');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_upgrade_upload(:req_id, '/nonexistent/dump');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_upgrade_upload(:req_id, NULL::text);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_upgrade_upload(:req_id, NULL::oid);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_upgrade_upload(:req_id, :'work');
SELECT uploaded_bytes, uploaded_sha256, filesize, compressions FROM dbsync.upgrade_request WHERE id = :req_id;
SELECT dbsync_upgrade_process(:req_id);
SELECT * FROM dbsync_upgrade_upload(:req_id, :'work');
\echo :LAST_ERROR_SQLSTATE
-- Asking for the dump too early refreshes the status first, then says so.
SELECT * FROM dbsync_upgrade_download(:req_id, :'work' || '.upgraded');
\echo :LAST_ERROR_SQLSTATE
SELECT state, elapsed, customer_message, database_version IS NOT NULL AS has_version
  FROM dbsync_upgrade_status(:req_id);
SELECT * FROM dbsync_upgrade_download(:req_id, NULL::text);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_upgrade_download(:req_id, :'work' || '.upgraded');
SELECT length(pg_read_binary_file(:'work' || '.upgraded')) AS file_bytes;
SELECT dump AS dl_dump, bytes AS dl_bytes, sha256 AS dl_sha256 FROM dbsync_upgrade_download(:req_id) \gset
SELECT :dl_bytes AS bytes, :'dl_sha256' AS sha256, length(lo_get(:dl_dump)) AS object_bytes;
SELECT lo_unlink(:dl_dump);
SELECT state FROM dbsync.upgrade_state WHERE request_id = :req_id ORDER BY entered_at;
SELECT kind, state, args = jsonb_build_object('request_id', :req_id) AS for_request FROM dbsync.job
 WHERE kind = 'upgrade_poll';
-- The status shown leaves the key (and the URLs, which carry it) out.
SELECT count(*) AS key_columns FROM information_schema.columns
 WHERE table_schema = 'dbsync' AND table_name = 'upgrade_status' AND column_name ~ 'key|url';

-- A dump from a large object (for roles without server file access).
SELECT * FROM dbsync_upgrade_create('upgrade', target => '17.0', aim => 'production', filename => 'lo.dump')
\gset lo_
SELECT * FROM dbsync_upgrade_upload(:lo_id, lo_from_bytea(0, convert_to('PGDMP from a large object', 'UTF8')));
SELECT * FROM dbsync_upgrade_upload(:lo_id, 4294967000::oid);
\echo :LAST_ERROR_SQLSTATE

-- A failed upgrade: its message, and no dump.
SELECT * FROM dbsync_upgrade_create('upgrade', target => '16.0', aim => 'test', filename => 'will-fail.dump')
\gset bad_
SELECT bytes FROM dbsync_upgrade_upload(:bad_id, :'work');
SELECT dbsync_upgrade_process(:bad_id);
SELECT state FROM dbsync_upgrade_status(:bad_id);
SELECT state, customer_message IS NOT NULL AS has_message FROM dbsync_upgrade_status(:bad_id);
SELECT * FROM dbsync_upgrade_download(:bad_id, :'work' || '.failed');
\echo :LAST_ERROR_SQLSTATE

-- Unknown requests, and a wrong key: the key appears in no error text.
SELECT * FROM dbsync_upgrade_status(999999);
\echo :LAST_ERROR_SQLSTATE
UPDATE dbsync.upgrade_request SET request_key = request_key || 'X' WHERE id = :bad_id;
DO $$
DECLARE
  k text := (SELECT request_key FROM dbsync.upgrade_request WHERE id = (SELECT max(id) FROM dbsync.upgrade_request));
  msg text; det text; hin text; st text;
BEGIN
  PERFORM * FROM dbsync_upgrade_status((SELECT max(id) FROM dbsync.upgrade_request));
  RAISE EXCEPTION 'a wrong key was accepted';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT, st = RETURNED_SQLSTATE;
  RAISE NOTICE 'wrong key: SQLSTATE %, key in error text: %', st,
    strpos(concat_ws(' ', msg, det, hin), k) > 0 OR strpos(concat_ws(' ', msg, det, hin), rtrim(k, 'X')) > 0;
END $$;

-- The service's own state checks, and a cancelled request.
SELECT * FROM dbsync_upgrade_create('upgrade', target => '16.0', aim => 'test', filename => 'c.dump') \gset can_
\setenv CAN_ID :can_id
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/odoo/state?request=$CAN_ID&state=cancelled"
SELECT * FROM dbsync_upgrade_upload(:can_id, :'work');
\echo :LAST_ERROR_SQLSTATE
SELECT state FROM dbsync_upgrade_status(:can_id);
SELECT * FROM dbsync_upgrade_download(:can_id, :'work' || '.cancelled');
\echo :LAST_ERROR_SQLSTATE
SELECT state FROM dbsync.upgrade_state WHERE request_id = :can_id ORDER BY entered_at;

-- Files for roles without pg_read_server_files / pg_write_server_files.
CREATE ROLE regress_dbsync_dba;
GRANT EXECUTE ON FUNCTION dbsync_upgrade_upload(bigint, text), dbsync_upgrade_download(bigint, text)
  TO regress_dbsync_dba;
GRANT USAGE ON SCHEMA dbsync TO regress_dbsync_dba;
GRANT SELECT ON dbsync.upgrade_request TO regress_dbsync_dba;
GRANT USAGE ON FOREIGN SERVER upgrade TO regress_dbsync_dba;
CREATE USER MAPPING FOR regress_dbsync_dba SERVER upgrade;
GRANT EXECUTE ON FUNCTION dbsync.upgrade_upload(bigint, text, oid), dbsync.upgrade_download(bigint, text),
  dbsync.upgrade_get(bigint), dbsync.odoo_upload(text, bigint, text, text, oid) TO regress_dbsync_dba;
SET ROLE regress_dbsync_dba;
SELECT * FROM dbsync_upgrade_upload(:lo_id, :'work');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE ALL ON FUNCTION dbsync_upgrade_upload(bigint, text), dbsync_upgrade_download(bigint, text),
  dbsync.upgrade_upload(bigint, text, oid), dbsync.upgrade_download(bigint, text), dbsync.upgrade_get(bigint),
  dbsync.odoo_upload(text, bigint, text, text, oid) FROM regress_dbsync_dba;
REVOKE ALL ON dbsync.upgrade_request FROM regress_dbsync_dba;
DROP USER MAPPING FOR regress_dbsync_dba SERVER upgrade;
REVOKE USAGE ON FOREIGN SERVER upgrade FROM regress_dbsync_dba;
REVOKE ALL ON SCHEMA dbsync FROM regress_dbsync_dba;
DROP ROLE regress_dbsync_dba;
\! rm -f /tmp/dbsync_regress_*
