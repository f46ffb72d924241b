-- dbsync demo (test/demo): read the ABRA Flexi change feed of the local simulator.
SHOW shared_preload_libraries;
CREATE EXTENSION dbsync;

-- The remote system is a foreign server; the credentials are a user mapping.
CREATE SERVER flexi FOREIGN DATA WRAPPER dbsync
  OPTIONS (api 'flexi', url :'sim_url', company 'demo');
CREATE USER MAPPING FOR CURRENT_USER SERVER flexi OPTIONS (user 'api', password 'secret');

SELECT dbsync_changes_enable('flexi');           -- PUT /c/demo/changes/enable.xml
SELECT dbsync_changes_status('flexi');           -- GET /c/demo/changes/status.xml
SELECT dbsync_changes_global_version('flexi');   -- the company's current version

-- One page of issued invoices' changes, as the server sent them.
SELECT * FROM dbsync_changes_fetch('flexi', start => 1, "limit" => 1000, evidence => '{faktura-vydana}')
 LIMIT 12;

-- The whole log, page by page, following next_version.
CREATE TEMP TABLE feed AS SELECT * FROM dbsync_changes_fetch('flexi', "limit" => 1) WHERE false;
DO $$
DECLARE
  next_start bigint := 0;
BEGIN
  WHILE next_start IS NOT NULL LOOP
    INSERT INTO feed SELECT * FROM dbsync_changes_fetch('flexi', start => next_start, "limit" => 100);
    -- Every row of a page carries the page's next_version: NULL on the last page.
    SELECT max(next_version) INTO next_start FROM feed WHERE version >= next_start;
  END LOOP;
END $$;
SELECT count(*) AS changes, min(version) AS first_version, max(version) AS last_version,
       min(changed_at) AS first_change, max(changed_at) AS last_change
  FROM feed;
SELECT evidence, count(*) FILTER (WHERE operation = 'create') AS created,
       count(*) FILTER (WHERE operation = 'update') AS updated,
       count(*) FILTER (WHERE operation = 'delete') AS deleted
  FROM feed GROUP BY evidence ORDER BY count(*) DESC LIMIT 10;

-- Continuous sync into staging: a subscription replaying the log from its start
-- (a new one would first load every record at the current global version).
SELECT dbsync_subscribe('flexi', start_version => 0, pull_interval => '10 seconds');
SELECT * FROM dbsync_changes_pull('flexi');      -- one round now; the background worker runs the next ones
SELECT server, phase, cursor_version, remote_version, lag_versions, last_success_at IS NOT NULL AS synced
  FROM dbsync.subscription_status;
SELECT evidence, count(*) AS changes FROM dbsync.change GROUP BY evidence ORDER BY count(*) DESC LIMIT 5;
SELECT evidence, record_id, version, deleted, payload->>'kod' AS kod, payload->>'nazev' AS nazev
  FROM dbsync.record ORDER BY version DESC LIMIT 5;
SELECT pid, backend_type FROM pg_stat_activity WHERE backend_type LIKE 'dbsync%';
