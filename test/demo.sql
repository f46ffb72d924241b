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
