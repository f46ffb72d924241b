-- octoplant export orders: token, order, status, wait, cancel, download, against the simulator.
\getenv sim_port DBSYNC_SIM_PORT
\set sim_url 'http://127.0.0.1:' :sim_port
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/reset"
CREATE SERVER octo FOREIGN DATA WRAPPER dbsync OPTIONS (api 'octoplant', url :'sim_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER octo OPTIONS (user 'versiondog', password 'S3cr3t-pw');
SELECT '/tmp/dbsync_regress_export_' || pg_backend_pid() AS work \gset

-- Contents are checked before anything is sent.
SELECT * FROM dbsync_export_order('octo', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_export_order('octo', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_export_order('octo', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_export_order('octo', '{"projectTree": {}, "everything": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_export_order('octo', '{"projectTree": true}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_export_order('octo', '{"exportContents": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_export_order(NULL, '{"projectTree": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_export_order('octo', '{"projectTree": {}}', download => true);
\echo :LAST_ERROR_SQLSTATE
\! curl -s "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/stats"; echo
SELECT count(*) AS orders FROM dbsync.export_order;

-- Wrong credentials: the service's words, no secret in them.
CREATE SERVER plant_badclient FOREIGN DATA WRAPPER dbsync
  OPTIONS (api 'octoplant', url :'sim_url', client_secret 'not-the-secret');
CREATE USER MAPPING FOR CURRENT_USER SERVER plant_badclient OPTIONS (user 'versiondog', password 'S3cr3t-pw');
SELECT * FROM dbsync_export_order('plant_badclient', '{"projectTree": {}}');
\echo :LAST_ERROR_SQLSTATE
-- The user mapping's client secret wins over the server's.
ALTER USER MAPPING FOR CURRENT_USER SERVER plant_badclient
  OPTIONS (ADD client_secret 'ff99971a-f8c3-4d21-5345-f7cb021b4b54');
SELECT state FROM dbsync_export_order('plant_badclient', '{"adminLog": {}}');
CREATE SERVER plant_badpw FOREIGN DATA WRAPPER dbsync OPTIONS (api 'octoplant', url :'sim_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER plant_badpw OPTIONS (user 'versiondog', password 'wrong-pw');
SELECT * FROM dbsync_export_order('plant_badpw', '{"projectTree": {}}');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER plant_nouser FOREIGN DATA WRAPPER dbsync OPTIONS (api 'octoplant', url :'sim_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER plant_nouser;
SELECT * FROM dbsync_export_order('plant_nouser', '{"projectTree": {}}');
\echo :LAST_ERROR_SQLSTATE

-- A token reply cut short: an error that quotes nothing of it (it carries the token).
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/fault?path=/v1/oauth2/token&mode=truncated-json&count=1"
SELECT * FROM dbsync_export_order('octo', '{"projectTree": {}}');
\echo :LAST_ERROR_SQLSTATE

-- An order, step by step: PENDING, PENDING, RUNNING, SUCCEEDED (the simulator's defaults).
SELECT name AS order_name, state, done FROM dbsync_export_order('octo', '{"projectTree": {}, "jobList": {}}') \gset
SELECT :'order_name' ~ '^[0-9a-f-]{36}$' AS named, :'state' AS state, :'done' AS done;
SELECT server, contents, state, done, finished_sub_processes, open_sub_processes, license_serial_number,
       error_code, ordered_at IS NOT NULL AS ordered
  FROM dbsync.export_order WHERE name = :'order_name';
SELECT kind, args->>'name' = :'order_name' AS this_order, state, repeat_every FROM dbsync.job WHERE kind = 'export_poll';
-- Too early for its ZIP: refreshed first, then refused.
SELECT * FROM dbsync_export_download(:'order_name', :'work' || '.zip');
\echo :LAST_ERROR_SQLSTATE
SELECT state, done, current_sub_process, finished_sub_processes, open_sub_processes FROM dbsync_export_status(:'order_name');
SELECT state, done, current_sub_process, finished_sub_processes, open_sub_processes,
       finished_at IS NOT NULL AS finished FROM dbsync_export_status(:'order_name');
SELECT state FROM dbsync.export_state WHERE order_name = :'order_name' ORDER BY entered_at;
SELECT dbsync_export_cancel(:'order_name');
\echo :LAST_ERROR_SQLSTATE
-- The ZIP, into a server file and into a large object: the same bytes, checked to be a ZIP.
SELECT bytes > 500 AS has_bytes, sha256 = encode(sha256(pg_read_binary_file(:'work' || '.zip')), 'hex') AS sha_ok,
       substr(pg_read_binary_file(:'work' || '.zip'), 1, 4) = '\x504b0304'::bytea AS is_zip
  FROM dbsync_export_download(:'order_name', :'work' || '.zip');
SELECT pg_stat_file(:'work' || '.zip.partial', true) IS NULL AS no_partial;
SELECT zip AS zip_oid, sha256 AS lo_sha FROM dbsync_export_download(:'order_name') \gset
SELECT :'lo_sha' = encode(sha256(lo_get(:zip_oid)), 'hex') AS lo_sha_ok,
       lo_get(:zip_oid) = pg_read_binary_file(:'work' || '.zip') AS same_bytes;
SELECT lo_unlink(:zip_oid);
SELECT downloaded_bytes > 500 AS has_bytes, downloaded_to LIKE 'large object %' AS to_lo FROM dbsync.export_order
 WHERE name = :'order_name';
SELECT * FROM dbsync_export_download(:'order_name', NULL::text);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_export_download(:'order_name', 'relative.zip');
\echo :LAST_ERROR_SQLSTATE

-- Unknown orders: here, and at the service (STATE_UNSPECIFIED is an error, not a wait).
SELECT * FROM dbsync_export_status('3f2a0000-0000-4000-8000-000000000000');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_export_status('3f2a0000-0000-4000-8000-000000000000', server => 'octo');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_export_wait('3f2a0000-0000-4000-8000-000000000000');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_export_cancel(NULL);
\echo :LAST_ERROR_SQLSTATE

-- A failing order: its gRPC error, by name.
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/fail?count=1&code=13&message=disk%20full"
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/config?pending=0&running=0"
SELECT name AS failing FROM dbsync_export_order('octo', '{"eventLog": {"maxLines": 10}}') \gset
SELECT state, done, error_code, error_name, error_message FROM dbsync_export_status(:'failing');
SELECT * FROM dbsync_export_download(:'failing', :'work' || '.failed.zip');
\echo :LAST_ERROR_SQLSTATE

-- Cancel of a running order.
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/config?pending=1&running=5"
SELECT name AS running FROM dbsync_export_order('octo', '{"componentLog": {}}') \gset
SELECT state FROM dbsync_export_status(:'running');
SELECT state FROM dbsync_export_status(:'running');
SELECT dbsync_export_cancel(:'running');
SELECT state, done, error_code, error_name, error_message, cancel_requested_at IS NOT NULL AS cancel_asked
  FROM dbsync.export_order WHERE name = :'running';
SELECT dbsync_export_cancel(:'running');
\echo :LAST_ERROR_SQLSTATE

-- Waiting: to the end, and past the timeout (a WARNING and the last state).
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/config?pending=1&running=2"
SELECT name AS waited FROM dbsync_export_order('octo', '{"assetState": {}}') \gset
SELECT state, done FROM dbsync_export_wait(:'waited', timeout => '30 s', poll_interval => '100 ms');
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/config?pending=1&running=1000"
SELECT name AS slow FROM dbsync_export_order('octo', '{"assetState": {}}') \gset
SELECT state, done FROM dbsync_export_wait(:'slow', timeout => '300 ms', poll_interval => '100 ms');
SELECT * FROM dbsync_export_wait(:'slow', timeout => '-1 s');
\echo :LAST_ERROR_SQLSTATE
-- statement_timeout (or a cancel) ends a wait.
SET statement_timeout = '500ms';
SELECT state FROM dbsync_export_wait(:'slow', timeout => '1 min', poll_interval => '100 ms');
\echo :LAST_ERROR_SQLSTATE
RESET statement_timeout;

-- A token that expires in the middle of a poll loop: one new grant, one retry, no error.
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/config?pending=1&running=3"
SELECT name AS expiring FROM dbsync_export_order('octo', '{"userManagement": {}}') \gset
\! curl -s "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("grants", s["grants"], "unauthenticated", s["unauthenticated"])'
SELECT state FROM dbsync_export_status(:'expiring');
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/expire_tokens"
SELECT state, done FROM dbsync_export_wait(:'expiring', timeout => '30 s', poll_interval => '100 ms');
\! curl -s "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("grants", s["grants"], "unauthenticated", s["unauthenticated"])'
-- A token that keeps being refused: one retry only, then the error.
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/fault?path=/v1/order/*&mode=status&status=401&count=2"
SELECT state FROM dbsync_export_status(:'expiring');
\echo :LAST_ERROR_SQLSTATE
\! curl -s "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("grants", s["grants"], "unauthenticated", s["unauthenticated"])'

-- A token is renewed a tenth of its life before it runs out, without waiting to be refused.
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/config?token_ttl=2"
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/expire_tokens"
SELECT state FROM dbsync_export_status(:'expiring');
SELECT pg_sleep(2);
SELECT state FROM dbsync_export_status(:'expiring');
\! curl -s "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("grants", s["grants"], "unauthenticated", s["unauthenticated"])'
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/config?token_ttl=3600"

-- HTTP errors in the gateway's shape, broken replies, and a download that is not a ZIP.
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/fault?path=/v1/order/*&mode=status&status=503&count=1"
SELECT state FROM dbsync_export_status(:'expiring');
\echo :LAST_ERROR_SQLSTATE
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/fault?path=/v1/order/*&mode=malformed&count=1"
SELECT state FROM dbsync_export_status(:'expiring');
\echo :LAST_ERROR_SQLSTATE
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/fault?path=/v1/order/*&mode=truncated&count=1"
SELECT * FROM dbsync_export_download(:'order_name', :'work' || '.truncated.zip');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_stat_file(:'work' || '.truncated.zip', true) IS NULL AS no_file,
       pg_stat_file(:'work' || '.truncated.zip.partial', true) IS NULL AS no_partial;
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/fault?path=/v1/order/*&mode=malformed&count=1"
SELECT * FROM dbsync_export_download(:'order_name', :'work' || '.malformed.zip');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_stat_file(:'work' || '.malformed.zip', true) IS NULL AS no_file;
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/fault?path=/v1/order/*&mode=status&status=404&count=1"
SELECT * FROM dbsync_export_download(:'order_name', :'work' || '.missing.zip');
\echo :LAST_ERROR_SQLSTATE
-- A whole reply of a ZIP without its end record: refused, nothing kept.
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/config?cut_tail=22"
SELECT * FROM dbsync_export_download(:'order_name', :'work' || '.cut.zip');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_export_download(:'order_name');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_stat_file(:'work' || '.cut.zip', true) IS NULL AS no_file,
       pg_stat_file(:'work' || '.cut.zip.partial', true) IS NULL AS no_partial;
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/octoplant/config?cut_tail=0"
SELECT count(*) AS downloads_recorded FROM dbsync.export_order WHERE downloaded_at IS NOT NULL;

-- Every state change was logged, each order on its own.
SELECT o.contents, array_agg(s.state ORDER BY s.entered_at) AS states
  FROM dbsync.export_order o JOIN dbsync.export_state s ON s.order_name = o.name
 GROUP BY o.name, o.contents, o.ordered_at ORDER BY o.ordered_at, o.contents::text;

-- Who may: nothing of this is for PUBLIC.
CREATE ROLE export_nobody;
SET ROLE export_nobody;
SELECT * FROM dbsync_export_order('octo', '{"projectTree": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_export_status(:'order_name');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM dbsync.export_order;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE export_nobody;

\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/reset"
\! rm -f /tmp/dbsync_regress_export_*
DELETE FROM dbsync.job WHERE kind = 'export_poll';
DROP SERVER octo, plant_badclient, plant_badpw, plant_nouser CASCADE;
SELECT * FROM dbsync_export_wait('x', poll_interval => '1 ms');
\echo :LAST_ERROR_SQLSTATE
