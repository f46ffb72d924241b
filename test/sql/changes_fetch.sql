-- Reading the ABRA Flexi change log (the simulator replays 332 real changes as company 'demo').
\getenv sim_port DBSYNC_SIM_PORT
\set sim_url 'http://127.0.0.1:' :sim_port
SET datestyle = ISO;
CREATE SERVER gen25 FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'gen25');
CREATE USER MAPPING FOR CURRENT_USER SERVER gen25 OPTIONS (user 'api', password 'S3cr3t-pw');

-- The first page, exactly as the server sent it.
SELECT * FROM dbsync_changes_fetch('flexi', "limit" => 6);
-- The default limit is 100; next_version continues where the page stopped.
SELECT count(*), min(version), max(version), min(next_version), max(next_version), min(global_version)
  FROM dbsync_changes_fetch('flexi');
-- start is inclusive.
SELECT version, evidence, record_id FROM dbsync_changes_fetch('flexi', start => 3656480, "limit" => 2);
-- The last page says there is no next (next = "none").
SELECT version, next_version IS NULL AS last_page FROM dbsync_changes_fetch('flexi', start => 3656990, "limit" => 1000);
-- Past the end: no rows.
SELECT count(*) FROM dbsync_changes_fetch('flexi', start => 99999999);

-- Following next_version reads every change once, in rising versions.
CREATE TEMP TABLE walked AS SELECT * FROM dbsync_changes_fetch('flexi', start => 0, "limit" => 1) WHERE false;
DO $$
DECLARE
  cursor_version bigint := 0;
  pages int := 0;
  nxt bigint;
BEGIN
  LOOP
    INSERT INTO walked SELECT * FROM dbsync_changes_fetch('flexi', start => cursor_version, "limit" => 50);
    pages := pages + 1;
    SELECT next_version INTO nxt FROM walked ORDER BY version DESC LIMIT 1;
    EXIT WHEN nxt IS NULL;
    cursor_version := nxt;
  END LOOP;
  RAISE NOTICE 'pages read: %', pages;
END $$;
SELECT count(*) AS changes, count(DISTINCT version) AS versions, min(version), max(version) FROM walked;
SELECT operation, count(*) FROM walked GROUP BY 1 ORDER BY 1;
SELECT evidence, count(*) FROM walked GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5;
-- Timestamps keep all their fraction digits (4, 5 and 6 in the real data).
SELECT version, changed_at FROM walked WHERE version IN (3656477, 3656500, 3656700, 3656999) ORDER BY version;
SELECT length(substring(changed_at::text from '\.(\d+)$')) AS fraction_digits, count(*)
  FROM walked GROUP BY 1 ORDER BY 1;
-- External ids: code: and ext: ids as the server listed them.
SELECT version, external_ids FROM walked WHERE cardinality(external_ids) > 1 ORDER BY version LIMIT 3;
SELECT count(*) FILTER (WHERE cardinality(external_ids) = 0) AS without_ids FROM walked;

-- Evidence filter, repeated; the filter applies before the limit.
SELECT evidence, count(*) FROM dbsync_changes_fetch('flexi', "limit" => 1000, evidence => '{smlouva,adresar}')
  GROUP BY 1 ORDER BY 1;
SELECT count(*) FROM dbsync_changes_fetch('flexi', "limit" => 3, evidence => '{banka}');
SELECT count(*) FROM dbsync_changes_fetch('flexi', evidence => '{}');

-- A generated log: version gaps, 1 to 6 fraction digits, a global version past the last change.
SELECT * FROM dbsync_changes_fetch('gen25', "limit" => 1000);

-- A server that compresses its replies (gzip) gives the same changes.
CREATE SERVER flexi_gzip FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'gzip');
CREATE USER MAPPING FOR CURRENT_USER SERVER flexi_gzip OPTIONS (user 'api', password 'S3cr3t-pw');
SELECT (SELECT array_agg(g ORDER BY g.version)::text FROM dbsync_changes_fetch('flexi_gzip', "limit" => 1000) g)
     = (SELECT array_agg(d ORDER BY d.version)::text FROM dbsync_changes_fetch('flexi', "limit" => 1000) d)
       AS same_changes;

-- The current global version.
SELECT dbsync_changes_global_version('flexi');
SELECT dbsync_changes_global_version('gen25');

-- Bad arguments are refused before any request.
SELECT * FROM dbsync_changes_fetch('flexi', "limit" => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('flexi', "limit" => 1001);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('flexi', "limit" => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM dbsync_changes_fetch('flexi', "limit" => NULL);
SELECT * FROM dbsync_changes_fetch('flexi', start => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('flexi', evidence => '{""}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('flexi', evidence => '{NULL}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('flexi', evidence => '{"Faktura Vydana"}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('flexi', evidence => '{faktura-vydana&limit=5}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('flexi', evidence => '{{a},{b}}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('nosuch');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('odoo');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('tuned');
\echo :LAST_ERROR_SQLSTATE
