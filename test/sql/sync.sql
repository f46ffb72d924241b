-- Continuous sync driven from SQL (dbsync_changes_pull); the background worker is tested in test/t/.
\getenv sim_port DBSYNC_SIM_PORT
\set sim_url 'http://127.0.0.1:' :sim_port
SET datestyle = ISO;
CREATE SERVER live FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'live30');
CREATE USER MAPPING FOR CURRENT_USER SERVER live OPTIONS (user 'api', password 'S3cr3t-pw');

-- Subscriptions are checked before anything is stored.
SELECT dbsync_subscribe(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_subscribe('nosuch');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_subscribe('odoo');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_subscribe('tuned');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_subscribe('live', evidence => '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_subscribe('live', evidence => '{"Faktura Vydana"}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_subscribe('live', pull_interval => '0 seconds');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_subscribe('live', page_size => 1001);
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_subscribe('live', start_version => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_pull('live');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_pull('live', max_pages => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS subscriptions FROM dbsync.subscription;

-- A subscription (disabled: this cluster runs no worker anyway) with small pages.
SELECT dbsync_subscribe('live', pull_interval => '1 hour', page_size => 10, enabled => false);
SELECT dbsync_subscribe('live');
\echo :LAST_ERROR_SQLSTATE
SELECT server, evidences, enabled, phase, cursor_version, lag_versions, running, next_run_at
  FROM dbsync.subscription_status;
SELECT kind, state, repeat_every, attempts FROM dbsync.job;

-- The first round is the initial load: the global version, then every record of every evidence.
SELECT * FROM dbsync_changes_pull('live');
SELECT phase, cursor_version, remote_version, lag_versions, failures, last_error IS NULL AS no_error
  FROM dbsync.subscription_status;
SELECT evidence, count(*) AS records, count(*) FILTER (WHERE deleted) AS deleted, min(version), max(version)
  FROM dbsync.record GROUP BY 1 ORDER BY 1;
SELECT count(*) AS changes FROM dbsync.change;
-- Nothing new: a round reads one empty page.
SELECT * FROM dbsync_changes_pull('live');

-- New changes on the server: staged exactly once, in order, with the records they touch.
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/append?company=live30&count=25"
SELECT * FROM dbsync_changes_pull('live', max_pages => 2);
SELECT * FROM dbsync_changes_pull('live');
SELECT version, evidence, operation, record_id, external_ids FROM dbsync.change ORDER BY version;
SELECT phase, cursor_version, remote_version, lag_versions FROM dbsync.subscription_status;
-- Each record changed is at the version of its last change, with the server's content of that version.
SELECT r.evidence, r.record_id, r.version, r.deleted, r.payload->>'popis' AS popis
  FROM dbsync.record r
 WHERE EXISTS (SELECT FROM dbsync.change c WHERE c.evidence = r.evidence AND c.record_id = r.record_id)
 ORDER BY 1, 2;
SELECT count(*) AS stale_records FROM dbsync.record r
 WHERE NOT r.deleted
   AND EXISTS (SELECT FROM dbsync.change c WHERE c.evidence = r.evidence AND c.record_id = r.record_id)
   AND r.payload->>'popis' <> format('Simulated record, last change in version %s', r.version);
-- A record keeps the external ids of its last change (what its binding shows); loaded ones have none.
SELECT count(*) FILTER (WHERE c.version IS NOT NULL) AS changed, count(*) FILTER (WHERE c.version IS NULL) AS loaded,
       count(*) FILTER (WHERE r.external_ids IS DISTINCT FROM coalesce(c.external_ids, '{}')) AS wrong_external_ids
  FROM dbsync.record r
  LEFT JOIN dbsync.change c ON c.subscription_id = r.subscription_id AND c.version = r.version AND c.record_id = r.record_id;
SELECT r.evidence, r.record_id, r.external_ids FROM dbsync.record r
 WHERE cardinality(r.external_ids) > 0 ORDER BY r.version DESC LIMIT 2;

-- A failed page leaves nothing behind: not its changes, not its records, not the cursor.
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/append?company=live30&count=5"
CREATE TEMP TABLE before AS
SELECT (SELECT count(*) FROM dbsync.change) AS changes,
       (SELECT sum(version) FROM dbsync.record) AS record_versions,
       (SELECT cursor_version FROM dbsync.subscription) AS cursor_version;
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/fault?company=live30&mode=lowversion&count=1"
SELECT * FROM dbsync_changes_pull('live');
\echo :LAST_ERROR_SQLSTATE
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/fault?company=live30&mode=status&status=500&count=1"
SELECT * FROM dbsync_changes_pull('live');
\echo :LAST_ERROR_SQLSTATE
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/fault?company=live30&mode=malformed&count=1"
SELECT * FROM dbsync_changes_pull('live');
\echo :LAST_ERROR_SQLSTATE
\! curl -s -o /dev/null -X POST "http://127.0.0.1:$DBSYNC_SIM_PORT/_sim/fault?company=live30&mode=truncated&count=1"
SELECT * FROM dbsync_changes_pull('live');
\echo :LAST_ERROR_SQLSTATE
SELECT (SELECT count(*) FROM dbsync.change) = b.changes AS same_changes,
       (SELECT sum(version) FROM dbsync.record) = b.record_versions AS same_records,
       (SELECT cursor_version FROM dbsync.subscription) = b.cursor_version AS same_cursor
  FROM before b;
-- The next round takes the pages up again.
SELECT * FROM dbsync_changes_pull('live');
SELECT count(*) AS changes, count(DISTINCT version) AS versions FROM dbsync.change;

-- A subscription of some evidences replaying the log from a version, without an initial load.
CREATE SERVER gen_some FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'gen60');
CREATE USER MAPPING FOR CURRENT_USER SERVER gen_some OPTIONS (user 'api', password 'S3cr3t-pw');
SELECT dbsync_subscribe('gen_some', evidence => '{cenik,adresar,adresar}', start_version => 0, enabled => false) > 0
       AS subscribed;
SELECT evidences, phase, cursor_version FROM dbsync.subscription WHERE server = 'gen_some';
SELECT * FROM dbsync_changes_pull('gen_some');
SELECT c.evidence, count(*) AS changes, (SELECT count(*) FROM dbsync.record r
                                          WHERE r.subscription_id = c.subscription_id AND r.evidence = c.evidence) AS records
  FROM dbsync.change c JOIN dbsync.subscription s ON s.id = c.subscription_id AND s.server = 'gen_some'
 GROUP BY c.subscription_id, c.evidence ORDER BY 1;
-- Records deleted on the server are marked deleted and keep their last payload.
SELECT r.evidence, r.record_id, r.version, r.payload IS NOT NULL AS has_payload
  FROM dbsync.record r JOIN dbsync.subscription s ON s.id = r.subscription_id AND s.server = 'gen_some'
 WHERE r.deleted ORDER BY 1, 2;

-- Changing and removing subscriptions.
SELECT dbsync_subscription_alter('live', enabled => true, pull_interval => '5 minutes');
SELECT enabled, next_run_at IS NOT NULL AS scheduled FROM dbsync.subscription_status WHERE server = 'live';
SELECT repeat_every FROM dbsync.job j JOIN dbsync.subscription s ON s.id = j.subscription_id WHERE s.server = 'live';
SELECT dbsync_subscription_alter('live', page_size => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_subscription_alter('nosuch', enabled => true);
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_unsubscribe('gen_some');
SELECT dbsync_unsubscribe('gen_some');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_unsubscribe('live');
SELECT (SELECT count(*) FROM dbsync.subscription) AS subscriptions, (SELECT count(*) FROM dbsync.change) AS changes,
       (SELECT count(*) FROM dbsync.record) AS records, (SELECT count(*) FROM dbsync.job) AS jobs;
