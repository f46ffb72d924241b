-- The connector layer: mappings of staged records into the DBA's tables, bindings, checkpoints,
-- listeners, and the job queue's SQL side. Records are staged by hand here (as a pull round would:
-- record, change and cursor in one transaction); test/t/012_connector.pl runs it all with the worker.
\getenv sim_port DBSYNC_SIM_PORT
\set sim_url 'http://127.0.0.1:' :sim_port
SET datestyle = ISO;
CREATE SERVER cx FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://127.0.0.1:1', company 'x');
CREATE USER MAPPING FOR CURRENT_USER SERVER cx OPTIONS (user 'a', password 'b');
SELECT dbsync_subscribe('cx', start_version => 1, enabled => false) AS sub \gset
CREATE SERVER cx_some FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://127.0.0.1:1', company 'y');
CREATE USER MAPPING FOR CURRENT_USER SERVER cx_some OPTIONS (user 'a', password 'b');
SELECT dbsync_subscribe('cx_some', evidence => '{adresar}', start_version => 1, enabled => false) AS sub_some \gset

-- Stages a record's change the way a pull round does; the cursor moves past it.
CREATE FUNCTION stage(ev text, rid bigint, ver bigint, body jsonb, gone boolean DEFAULT false) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO dbsync.change (subscription_id, version, evidence, operation, changed_at, record_id, external_ids)
    VALUES ((SELECT id FROM dbsync.subscription WHERE server = 'cx'), ver, ev, CASE WHEN gone THEN 'delete' ELSE 'update' END, '2026-01-01', rid,
            ARRAY['code:' || coalesce(body->>'kod', 'none'), 'ext:test:' || rid]);
    INSERT INTO dbsync.record AS r (subscription_id, evidence, record_id, version, deleted, payload)
    VALUES ((SELECT id FROM dbsync.subscription WHERE server = 'cx'), ev, rid, ver, gone, body)
    ON CONFLICT (subscription_id, evidence, record_id) DO UPDATE
       SET version = excluded.version, deleted = excluded.deleted, payload = excluded.payload;
    UPDATE dbsync.subscription SET cursor_version = greatest(cursor_version, ver + 1) WHERE server = 'cx';
$$;

CREATE TABLE partner(id bigserial PRIMARY KEY, code text UNIQUE, name text NOT NULL, email text);
CREATE TABLE invoice(id bigserial PRIMARY KEY, code text UNIQUE, total numeric(12,2),
                     partner_id bigint REFERENCES partner, note text, removed boolean NOT NULL DEFAULT false);
CREATE TABLE invoice_line(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                          invoice_id bigint NOT NULL REFERENCES invoice ON DELETE CASCADE, name text);
CREATE TABLE city(code text PRIMARY KEY, name text, gone_at timestamptz);
CREATE FUNCTION public.invoice_from_flexi(p jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
    AS $$ SELECT jsonb_build_object('note', 'invoice ' || (p->>'kod')) $$;
CREATE FUNCTION public.wrong_transform(p text) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;

-- Bad mappings are refused with what is wrong, and nothing is stored.
SELECT dbsync_map(NULL, 'adresar', 'partner');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('nosuch', 'adresar', 'partner');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'Adresář', 'partner', fields => '{"kod": "code"}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx_some', 'faktura-vydana', 'invoice', fields => '{"kod": "code"}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'adresar', 'pg_catalog.pg_tables', fields => '{"kod": "code"}');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE no_key(code text);
SELECT dbsync_map('cx', 'adresar', 'no_key', fields => '{"kod": "code"}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'adresar', 'partner', fields => '["kod"]');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'adresar', 'partner', fields => '{"kod": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'adresar', 'partner', fields => '{"kod": "kode"}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'adresar', 'partner', fields => '{"kod": "code", "nazev": "code"}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'adresar', 'partner');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'adresar', 'partner', fields => '{"kod": "code"}', transform => 'public.wrong_transform');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'adresar', 'partner', fields => '{"kod": "code"}', transform => 'public.nosuch');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'adresar', 'city', fields => '{"nazev": "name"}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'adresar', 'partner', fields => '{"kod": "code"}', on_delete => 'nosuch');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'adresar', 'partner', fields => '{"kod": "code"}', on_delete => 'email');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'faktura-vydana', 'invoice', fields => '{"kod": "code"}', refs => '{"firma": {"evidence": "adresar"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_map('cx', 'faktura-vydana', 'invoice', fields => '{"kod": "code"}', refs => '{"firma": {"column": "partner_id", "evidence": "Bad One"}}');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE gen(id bigserial PRIMARY KEY, code text, up text GENERATED ALWAYS AS (upper(code)) STORED);
SELECT dbsync_map('cx', 'adresar', 'gen', fields => '{"kod": "up"}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS mappings FROM dbsync.mapping;

-- The three mappings of the issue, children first (the order they apply in follows the references).
SELECT dbsync_map('cx', 'faktura-vydana-polozka', 'invoice_line', fields => '{"nazev": "name"}',
                  refs => '{"doklFak": "invoice_id"}');
SELECT dbsync_map('cx', 'faktura-vydana', 'public.invoice', fields => '{"kod": "code", "sumCelkem": "total"}',
                  transform => 'public.invoice_from_flexi', refs => '{"firma": "partner_id"}', on_delete => 'removed');
SELECT dbsync_map('cx', 'adresar', 'partner', fields => '{"kod": "code", "nazev": "name", "email": "email"}',
                  on_delete => 'delete');
SELECT dbsync_map('cx', 'adresar', 'partner', fields => '{"kod": "code"}');
\echo :LAST_ERROR_SQLSTATE
SELECT m.evidence, m.target, m.key_column, m.on_delete, m.mark_column, m.applied_version, dbsync.map_refs(m) AS refs
  FROM dbsync.mapping m ORDER BY m.id;
SELECT evidence FROM dbsync.map_order(:sub);
-- Creating a mapping queues the worker's apply (backfill of what is staged).
SELECT kind, state, priority, args FROM dbsync.job WHERE kind = 'map_apply';

-- A first batch: a partner, invoices referring to it by code, by link and by number, a bad amount,
-- a line item before its invoice exists.
SELECT stage('adresar', 1, 10, '{"id": "1", "kod": "A1", "nazev": "Alpha", "email": "a@example.com"}');
SELECT stage('faktura-vydana', 20, 11, '{"id": "20", "kod": "F20", "sumCelkem": "12.50", "firma": "code:A1"}');
SELECT stage('faktura-vydana', 21, 12, '{"id": "21", "kod": "F21", "sumCelkem": "bad", "firma": "code:A1"}');
SELECT stage('faktura-vydana', 22, 13, '{"id": "22", "kod": "F22", "sumCelkem": "7", "firma": "code:B2", "firma@ref": "/c/x/adresar/2.json"}');
SELECT stage('faktura-vydana-polozka', 300, 14, '{"id": "300", "nazev": "first line", "doklFak": "20", "doklFak@ref": "/c/x/faktura-vydana/20.json"}');
SELECT stage('faktura-vydana-polozka', 301, 15, '{"id": "301", "nazev": "waits for F22", "doklFak": "22"}');
SELECT stage('faktura-vydana-polozka', 302, 16, '{"id": "302", "nazev": "no invoice", "doklFak": ""}');
SELECT * FROM dbsync_map_apply('cx');
SELECT code, name, email FROM partner ORDER BY code;
SELECT i.code, i.total, p.code AS partner, i.note, i.removed FROM invoice i LEFT JOIN partner p ON p.id = i.partner_id ORDER BY i.code;
SELECT l.name, i.code AS invoice FROM invoice_line l JOIN invoice i ON i.id = l.invoice_id ORDER BY l.name;
SELECT m.evidence, b.remote_id, b.code, b.external_ids, b.version, b.deleted, b.local_key IS NOT NULL AS has_key
  FROM dbsync.binding b JOIN dbsync.mapping m ON m.id = b.mapping_id ORDER BY m.evidence, b.remote_id;
-- A record nobody can apply (bad cast: SQLSTATE kept) and two that wait for references.
SELECT c.evidence, c.remote_id, c.version, c.reason, c.sqlstate, c.error, c.waiting_evidence, c.waiting_id,
       c.waiting_code, c.attempts, c.reviewed
  FROM dbsync.checkpoint c ORDER BY c.evidence, c.remote_id;
-- The line item without an invoice went in as an error (NOT NULL), not silently.
SELECT count(*) AS empty_reference_lines FROM invoice_line WHERE name = 'no invoice';
-- The subscription's mappings reached the cursor.
SELECT evidence, applied_version FROM dbsync.mapping ORDER BY id;
SELECT cursor_version FROM dbsync.subscription WHERE id = :sub;

-- The awaited partner arrives: its invoice and then the line item waiting on that invoice apply by themselves.
SELECT stage('adresar', 2, 17, '{"id": "2", "kod": "B2", "nazev": "Beta"}');
SELECT * FROM dbsync_map_apply('cx');
SELECT i.code, p.code AS partner FROM invoice i JOIN partner p ON p.id = i.partner_id ORDER BY i.code;
SELECT l.name, i.code AS invoice FROM invoice_line l JOIN invoice i ON i.id = l.invoice_id ORDER BY l.name;
SELECT c.evidence, c.remote_id, c.reason, c.reviewed, c.resolution FROM dbsync.checkpoint c ORDER BY c.id;

-- Nothing new: nothing happens, and no row changes.
SELECT * FROM dbsync_map_apply('cx');

-- Updates change the bound rows; a stale copy never overwrites a newer one.
SELECT stage('adresar', 1, 18, '{"id": "1", "kod": "A1", "nazev": "Alpha Ltd", "email": null}');
SELECT * FROM dbsync_map_apply('cx');
SELECT code, name, email FROM partner ORDER BY code;
UPDATE dbsync.record SET payload = payload || '{"nazev": "stale"}', version = 5 WHERE evidence = 'adresar' AND record_id = 1;
SELECT * FROM dbsync_map_apply('cx');
SELECT name FROM partner WHERE code = 'A1';
UPDATE dbsync.record SET payload = payload - 'nazev' || '{"nazev": "Alpha Ltd"}', version = 18 WHERE evidence = 'adresar' AND record_id = 1;

-- A local row deleted by someone is written again by the next change of its record.
DELETE FROM invoice_line WHERE name = 'first line';
SELECT stage('faktura-vydana-polozka', 300, 19, '{"id": "300", "nazev": "first line again", "doklFak": "20"}');
SELECT * FROM dbsync_map_apply('cx');
SELECT l.name, i.code AS invoice FROM invoice_line l JOIN invoice i ON i.id = l.invoice_id ORDER BY l.name;

-- Deletes follow on_delete: lines are deleted, invoices marked, and a partner still referenced fails alone.
SELECT stage('faktura-vydana-polozka', 300, 20, NULL, true);
SELECT stage('faktura-vydana', 22, 21, NULL, true);
SELECT stage('adresar', 1, 22, NULL, true);
SELECT * FROM dbsync_map_apply('cx');
SELECT l.name FROM invoice_line l ORDER BY l.name;
SELECT code, removed FROM invoice ORDER BY code;
SELECT code FROM partner ORDER BY code;
SELECT m.evidence, b.remote_id, b.deleted, b.local_key IS NOT NULL AS has_key, b.version
  FROM dbsync.binding b JOIN dbsync.mapping m ON m.id = b.mapping_id WHERE b.deleted ORDER BY 1, 2;
SELECT c.id AS cp_partner, c.reason, c.sqlstate, c.error FROM dbsync.checkpoint c
 WHERE c.evidence = 'adresar' AND NOT c.reviewed \gset
\echo :cp_partner :reason :sqlstate
-- A record deleted remotely before it was ever applied is superseded.
SELECT id AS cp_bad FROM dbsync.checkpoint WHERE remote_id = 21 \gset
SELECT stage('faktura-vydana', 21, 23, NULL, true);
SELECT dbsync_checkpoint_retry(:cp_bad);
-- The DBA removes the invoice that holds the partner, then retries the partner's checkpoint by hand.
DELETE FROM invoice WHERE code = 'F20';
SELECT dbsync_checkpoint_retry(:cp_partner);
SELECT code FROM partner ORDER BY code;
SELECT dbsync_checkpoint_retry(:cp_partner);
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_checkpoint_retry(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_checkpoint_resolve(:cp_partner);
\echo :LAST_ERROR_SQLSTATE
-- The line item with an empty reference: resolved by hand.
SELECT id AS cp_line FROM dbsync.checkpoint WHERE remote_id = 302 AND NOT reviewed \gset
SELECT dbsync_checkpoint_resolve(:cp_line);
SELECT remote_id, reason, reviewed, resolution, resolved_by = current_user AS by_me FROM dbsync.checkpoint ORDER BY id;

-- Listeners: called after each applied record, in the same transaction, with what was applied.
CREATE TABLE heard(ev jsonb);
CREATE FUNCTION public.on_invoice(e jsonb) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.heard VALUES (e - 'payload' || jsonb_build_object('kod', e->'payload'->'kod')) $$;
CREATE FUNCTION public.refuse_f99(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e->'payload'->>'kod' = 'F99' THEN RAISE EXCEPTION 'F99 is not welcome' USING ERRCODE = 'check_violation'; END IF;
END $$;
SELECT dbsync_listen('cx', 'faktura-vydana', 'public.on_invoice') > 0 AS listening;
SELECT dbsync_listen('cx', 'faktura-vydana', 'public.on_invoice');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_listen('cx', 'faktura-vydana', 'public.wrong_transform');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_listen('cx', 'faktura-vydana', 'public.refuse_f99') > 0 AS listening;
SELECT stage('faktura-vydana', 23, 24, '{"id": "23", "kod": "F23", "sumCelkem": "1.5", "firma": "code:B2"}');
SELECT stage('faktura-vydana', 99, 25, '{"id": "99", "kod": "F99", "sumCelkem": "9", "firma": "code:B2"}');
SELECT stage('faktura-vydana', 23, 26, '{"id": "23", "kod": "F23", "sumCelkem": "2.5", "firma": "code:B2"}');
SELECT * FROM dbsync_map_apply('cx');
SELECT ev->>'operation' AS operation, ev->>'remote_id' AS remote_id, ev->>'version' AS version, ev->>'kod' AS kod,
       ev->>'server' AS server, ev->>'evidence' AS evidence, ev->>'table' AS tbl, ev->>'key' = (SELECT id::text FROM invoice WHERE code = 'F23') AS key_ok
  FROM heard;
SELECT code, total FROM invoice WHERE code IN ('F23', 'F99') ORDER BY code;
SELECT remote_id, reason, sqlstate, error FROM dbsync.checkpoint WHERE remote_id = 99;
SELECT dbsync_unlisten('cx', 'faktura-vydana', 'public.refuse_f99');
SELECT dbsync_unlisten('cx', 'faktura-vydana', 'public.refuse_f99');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_checkpoint_retry(id) FROM dbsync.checkpoint WHERE remote_id = 99 AND NOT reviewed;
SELECT count(*) AS f99 FROM invoice WHERE code = 'F99';

-- A mapping added after the data is staged backfills it; its key is a mapped text code, and a
-- timestamp column marks deletes.
SELECT stage('adresar', 5, 27, '{"id": "5", "kod": "C5", "nazev": "Praha"}');
SELECT stage('adresar', 6, 28, '{"id": "6", "kod": "C6", "nazev": "Brno"}');
SELECT stage('adresar', 6, 29, NULL, true);
SELECT dbsync_map('cx', 'adresar', 'city', fields => '{"kod": "code", "nazev": "name"}', on_delete => 'gone_at');
SELECT * FROM dbsync_map_apply('cx');
SELECT code, name, gone_at IS NOT NULL AS gone FROM city ORDER BY code;
-- (Brno was deleted before it was ever applied: nothing to mark.)
SELECT code, name FROM partner ORDER BY code;

-- Initial load: its records (stamped one below the load's global version, the cursor) wait until the
-- load is over.
UPDATE dbsync.subscription SET phase = 'load', cursor_version = cursor_version + 5 WHERE id = :sub;
INSERT INTO dbsync.record (subscription_id, evidence, record_id, version, payload)
VALUES (:sub, 'adresar', 7, (SELECT cursor_version - 1 FROM dbsync.subscription WHERE id = :sub), '{"id": "7", "kod": "L7", "nazev": "Loaded"}');
SELECT * FROM dbsync_map_apply('cx');
UPDATE dbsync.subscription SET phase = 'sync' WHERE id = :sub;
SELECT * FROM dbsync_map_apply('cx');
SELECT code FROM partner WHERE code = 'L7';

-- Unmapping removes the mapping, its bindings and checkpoints; the rows stay.
SELECT dbsync_unmap('cx', 'adresar', 'city');
SELECT dbsync_unmap('cx', 'adresar', 'city');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS cities, (SELECT count(*) FROM dbsync.mapping WHERE target = 'city'::regclass) AS mappings FROM city;

-- A role that is not a member of the subscription's owner may not map or apply.
CREATE ROLE regress_conn_user;
GRANT USAGE ON SCHEMA dbsync TO regress_conn_user;
GRANT SELECT ON dbsync.subscription TO regress_conn_user;
GRANT EXECUTE ON FUNCTION dbsync_map(text, text, regclass, jsonb, regproc, jsonb, text, boolean),
                          dbsync_map_apply(text), dbsync_job_enqueue(text, jsonb, timestamptz, integer, integer)
   TO regress_conn_user;
SET ROLE regress_conn_user;
SELECT dbsync_map('cx', 'adresar', 'partner', fields => '{"kod": "code"}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_map_apply('cx');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_job_enqueue('map_apply', '{"server": "cx"}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- The subscription's owner needs the rights on the target table.
CREATE ROLE regress_conn_owner;
CREATE TABLE locked(id bigserial PRIMARY KEY, code text);
ALTER TABLE locked OWNER TO regress_conn_user;
UPDATE dbsync.subscription SET owner = 'regress_conn_owner'::regrole WHERE id = :sub_some;
SELECT dbsync_map('cx_some', 'adresar', 'locked', fields => '{"kod": "code"}');
\echo :LAST_ERROR_SQLSTATE

-- The job queue from SQL: kinds, arguments, priorities; one pending apply per subscription.
SELECT dbsync_job_enqueue(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_job_enqueue('rm -rf');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_job_enqueue('noop', '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_job_enqueue('noop', max_attempts => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_job_enqueue('changes_pull', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_job_enqueue('changes_pull', '{"server": "nosuch"}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_job_enqueue('call', '{"function": "public.nosuch"}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_job_enqueue('call', '{"function": "public.wrong_transform"}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_job_enqueue('replication_sync', '{"config": "x"}');
\echo :LAST_ERROR_SQLSTATE
DELETE FROM dbsync.job WHERE kind = 'map_apply';
SELECT dbsync_job_enqueue('map_apply', '{"server": "cx"}', run_at => now() + interval '1 hour') AS a1 \gset
SELECT dbsync_job_enqueue('map_apply', '{"server": "cx"}', priority => 1) = :a1 AS same_job;
SELECT dbsync_job_enqueue('changes_pull', '{"server": "cx"}', run_at => now() + interval '1 minute', priority => 3) > 0 AS pull;
SELECT dbsync_job_enqueue('call', '{"function": "public.invoice_from_flexi", "x": 1}', priority => 20) > 0 AS call;
SELECT dbsync_job_enqueue('noop') > 0 AS noop;
SELECT kind, args, state, priority, max_attempts, run_at <= now() AS due, subscription_id IS NOT NULL AS has_sub,
       repeat_every
  FROM dbsync.job WHERE kind <> 'job_purge' ORDER BY kind, priority;
-- Pulls enqueued by hand sit beside the subscription's recurring pull; its status shows the recurring one.
SELECT server, next_run_at IS NULL AS disabled_so_no_next_run FROM dbsync.subscription_status ORDER BY server;

-- A committed cursor queues an apply for the subscription's mappings (the pull round's trigger).
DELETE FROM dbsync.job WHERE kind = 'map_apply';
SELECT stage('adresar', 8, 40, '{"id": "8", "kod": "D8", "nazev": "Delta"}');
SELECT kind, state, priority, args FROM dbsync.job WHERE kind = 'map_apply';
-- Finished one-off jobs older than the history go; recurring ones stay.
UPDATE dbsync.job SET state = 'done', finished_at = now() - interval '8 days' WHERE kind = 'noop';
SELECT dbsync.job_purge(interval '7 days') AS purged;
SELECT count(*) FILTER (WHERE kind = 'noop') AS noop, count(*) FILTER (WHERE kind = 'changes_pull' AND repeat_every IS NOT NULL) AS recurring
  FROM dbsync.job;

-- A document changed after its line was staged is applied first all the same: the line does not wait
-- for it (its last version is later than the line's).
SELECT stage('faktura-vydana', 30, 41, '{"id": "30", "kod": "F30", "sumCelkem": "1"}');
SELECT stage('faktura-vydana-polozka', 310, 42, '{"id": "310", "nazev": "line of F30", "doklFak": "30"}');
SELECT stage('faktura-vydana', 30, 43, '{"id": "30", "kod": "F30", "sumCelkem": "2"}');
SELECT waiting, failed FROM dbsync_map_apply('cx');
SELECT i.code, i.total, l.name FROM invoice_line l JOIN invoice i ON i.id = l.invoice_id WHERE l.name = 'line of F30';
SELECT count(*) AS checkpoints_of_the_line FROM dbsync.checkpoint WHERE remote_id = 310;

-- Unsubscribing removes the mappings and their bindings and checkpoints; the user's rows stay.
SELECT dbsync_unsubscribe('cx');
SELECT (SELECT count(*) FROM dbsync.mapping) AS mappings, (SELECT count(*) FROM dbsync.binding) AS bindings,
       (SELECT count(*) FROM dbsync.checkpoint) AS checkpoints, (SELECT count(*) FROM dbsync.listener) AS listeners,
       (SELECT count(*) FROM partner) AS partners;

-- With the simulator: a real initial load of a company, mapped after the fact.
CREATE SERVER live FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'live7');
CREATE USER MAPPING FOR CURRENT_USER SERVER live OPTIONS (user 'api', password 'S3cr3t-pw');
SELECT dbsync_subscribe('live', pull_interval => '1 hour', enabled => false) > 0 AS subscribed;
SELECT outcome, phase FROM dbsync_changes_pull('live');
CREATE TABLE lpartner(id bigserial PRIMARY KEY, code text UNIQUE, name text NOT NULL);
CREATE TABLE linvoice(id bigserial PRIMARY KEY, code text UNIQUE, total numeric(12,2), partner_id bigint REFERENCES lpartner);
SELECT dbsync_map('live', 'adresar', 'lpartner', fields => '{"kod": "code", "nazev": "name"}') > 0 AS mapped;
SELECT dbsync_map('live', 'faktura-vydana', 'linvoice', fields => '{"kod": "code", "sumCelkem": "total"}',
                  refs => '{"firma": "partner_id"}') > 0 AS mapped;
SELECT inserted > 0 AS inserted, updated, deleted, failed FROM dbsync_map_apply('live');
-- Every live record is in its table; an invoice has its partner when the firm's record exists, else it waits.
SELECT (SELECT count(*) FROM dbsync.record r JOIN dbsync.subscription s ON s.id = r.subscription_id
         WHERE s.server = 'live' AND r.evidence = 'adresar' AND NOT r.deleted) = (SELECT count(*) FROM lpartner) AS partners_all,
       (SELECT count(*) FROM dbsync.record r JOIN dbsync.subscription s ON s.id = r.subscription_id
         WHERE s.server = 'live' AND r.evidence = 'faktura-vydana' AND NOT r.deleted)
       = (SELECT count(*) FROM linvoice) + (SELECT count(*) FROM dbsync.checkpoint WHERE NOT reviewed AND reason = 'reference')
       AS invoices_all;
SELECT count(*) AS wrong_totals FROM linvoice i JOIN dbsync.binding b ON b.local_key = i.id::text
  JOIN dbsync.mapping m ON m.id = b.mapping_id AND m.target = 'linvoice'::regclass
  JOIN dbsync.record r ON r.subscription_id = m.subscription_id AND r.evidence = m.evidence AND r.record_id = b.remote_id
 WHERE i.total IS DISTINCT FROM (r.payload->>'sumCelkem')::numeric OR i.code IS DISTINCT FROM r.payload->>'kod';
SELECT count(*) AS wrong_partners FROM linvoice i JOIN dbsync.binding b ON b.local_key = i.id::text
  JOIN dbsync.mapping m ON m.id = b.mapping_id AND m.target = 'linvoice'::regclass
  JOIN dbsync.record r ON r.subscription_id = m.subscription_id AND r.evidence = m.evidence AND r.record_id = b.remote_id
  JOIN dbsync.binding pb ON pb.local_key = i.partner_id::text
  JOIN dbsync.mapping pm ON pm.id = pb.mapping_id AND pm.target = 'lpartner'::regclass
 WHERE pb.remote_id <> substring(r.payload->>'firma@ref' FROM '/([0-9]+)\.json$')::bigint;
SELECT dbsync_unsubscribe('live');
