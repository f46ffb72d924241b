-- The transaction log (iLog): what tracked tables log, how it reads back, purge, and who may do what.
-- Versions are printed relative to a mark taken before each step (:m), never as they are.
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dbsync;
RESET client_min_messages;
-- The entries after the mark, in order.
\set entries 'SELECT version - :m AS v, operation, key, before, after, changed_columns FROM dbsync.ilog_entries WHERE version > :m ORDER BY version'
\set mark 'SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS m FROM dbsync.ilog_version_seq'
:mark \gset
SELECT :m AS start \gset

-- A table with a primary key: INSERT logs the row, UPDATE the key and the changed columns, DELETE the row.
CREATE TABLE il_item (id int PRIMARY KEY, name text, qty int, price numeric(10,2));
SELECT dbsync_track('il_item');
SELECT table_name, tracking, max_days, excluded_columns, log_unchanged_updates,
       tracked_at IS NOT NULL AS tracked, untracked_at, dropped_at
  FROM dbsync.ilog_tables WHERE tbl = 'il_item'::regclass;
SELECT tgname, tgtype, tgenabled FROM pg_trigger WHERE tgrelid = 'il_item'::regclass ORDER BY tgname;
INSERT INTO il_item VALUES (1, 'bolt', 10, 0.25);
UPDATE il_item SET qty = 12 WHERE id = 1;
UPDATE il_item SET name = 'hex bolt', price = 0.30 WHERE id = 1;
DELETE FROM il_item WHERE id = 1;
:entries;
SELECT DISTINCT tbl, table_name, username = current_user AS by_me, application, txid IS NOT NULL AS has_txid,
       logged_at IS NOT NULL AS has_time
  FROM dbsync.ilog_entries WHERE version > :m;

-- Multi-row INSERT, COPY: one entry per row, in row order.
:mark \gset
INSERT INTO il_item VALUES (2, 'nut', 100, 0.05), (3, 'washer', 200, 0.02), (4, NULL, NULL, NULL);
COPY il_item FROM STDIN;
5	screw	50	0.10
6	\N	0	0.00
\.
:entries;

-- INSERT ... ON CONFLICT: DO UPDATE logs the update (or nothing when nothing changes), DO NOTHING logs nothing.
:mark \gset
INSERT INTO il_item VALUES (2, 'nut', 150, 0.05), (7, 'pin', 5, 0.01)
    ON CONFLICT (id) DO UPDATE SET qty = EXCLUDED.qty;
INSERT INTO il_item VALUES (3, 'other', 1, 1), (8, 'rivet', 9, 0.03) ON CONFLICT DO NOTHING;
INSERT INTO il_item VALUES (3, 'washer', 200, 0.02) ON CONFLICT (id) DO UPDATE SET qty = EXCLUDED.qty;
:entries;

-- UPDATE of the key: the key before the change, the old and new key values.
:mark \gset
UPDATE il_item SET id = 20 WHERE id = 2;
UPDATE il_item SET id = id + 100, qty = 0 WHERE id = 3;
UPDATE il_item SET id = id + 100, qty = 0 WHERE id = 5;
:entries;

-- An UPDATE that changes nothing logs nothing ...
:mark \gset
UPDATE il_item SET qty = qty, name = name;
UPDATE il_item SET price = 0.10 WHERE id = 105;
:entries;
-- ... unless log_unchanged_updates (re-tracking changes the options).
SELECT dbsync_track('il_item', log_unchanged_updates => true);
SELECT tracking, log_unchanged_updates FROM dbsync.ilog_tables WHERE tbl = 'il_item'::regclass;
UPDATE il_item SET qty = qty WHERE id = 6;
UPDATE il_item SET qty = qty WHERE id = 20;
UPDATE il_item SET qty = 1 WHERE id = 6;
:entries;
SELECT dbsync_track('il_item');
UPDATE il_item SET qty = qty WHERE id = 6;
SELECT count(*) AS new_entries FROM dbsync.ilog_entries WHERE version > :m AND tbl = 'il_item'::regclass;

-- Excluded columns never appear: not in INSERT, UPDATE (an update of only them logs nothing) or DELETE.
:mark \gset
CREATE TABLE il_account (id int PRIMARY KEY, login text, password text, photo bytea, note text);
SELECT dbsync_track('il_account', excluded_columns => '{password, photo}');
SELECT excluded_columns FROM dbsync.ilog_tables WHERE tbl = 'il_account'::regclass;
INSERT INTO il_account VALUES (1, 'ann', 'S3cr3t', '\x0102', 'new');
UPDATE il_account SET password = 'other', photo = '\x03' WHERE id = 1;
UPDATE il_account SET password = 'third', note = 'changed' WHERE id = 1;
ALTER TABLE il_account RENAME COLUMN password TO pw;
SELECT excluded_columns FROM dbsync.ilog_tables WHERE tbl = 'il_account'::regclass;
UPDATE il_account SET pw = 'fourth' WHERE id = 1;
DELETE FROM il_account;
:entries;
SELECT count(*) AS mentions FROM dbsync.ilog_entries
 WHERE version > :m AND (key::text || coalesce(before::text, '') || coalesce(after::text, '') ||
                         coalesce(changed_columns::text, '')) ~ 'password|pw|photo|S3cr3t|other|third|fourth';

-- The key follows REPLICA IDENTITY: a unique index ...
:mark \gset
CREATE TABLE il_ri_index (id int PRIMARY KEY, code text NOT NULL, branch int NOT NULL, v text);
CREATE UNIQUE INDEX il_ri_index_code ON il_ri_index (branch, code);
ALTER TABLE il_ri_index REPLICA IDENTITY USING INDEX il_ri_index_code;
SELECT dbsync_track('il_ri_index');
INSERT INTO il_ri_index VALUES (1, 'A', 7, 'x');
UPDATE il_ri_index SET v = 'y';
UPDATE il_ri_index SET code = 'B', id = 2;
DELETE FROM il_ri_index;
:entries;
-- ... FULL: the whole old row ...
:mark \gset
CREATE TABLE il_ri_full (id int PRIMARY KEY, a text, b int);
ALTER TABLE il_ri_full REPLICA IDENTITY FULL;
SELECT dbsync_track('il_ri_full');
INSERT INTO il_ri_full VALUES (1, 'a', NULL);
UPDATE il_ri_full SET b = 2;
DELETE FROM il_ri_full;
:entries;
-- ... and a table without any key (like pgbench_history): updates and deletes keyed by the whole old row.
:mark \gset
CREATE TABLE il_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(4));
SELECT dbsync_track('il_history');
INSERT INTO il_history VALUES (1, 1, 1, 100, '2024-05-06 07:08:09', NULL), (1, 1, 1, 100, '2024-05-06 07:08:09', NULL),
                              (2, 1, 3, -5, '2024-05-06 07:08:10', 'ab');
UPDATE il_history SET delta = 99 WHERE tid = 2;
DELETE FROM il_history WHERE ctid = (SELECT min(ctid) FROM il_history WHERE tid = 1);
-- (timestamps are checked as values; their text is checked below)
SELECT v, operation, key - 'mtime' AS key, (key->>'mtime')::timestamp AS key_mtime, before - 'mtime' AS before,
       after - 'mtime' AS after, changed_columns
  FROM (:entries) e;

-- TRUNCATE: one event, no rows.
:mark \gset
TRUNCATE il_history;
SELECT version - :m AS v, tbl, operation, key, before, after, changed_columns, username = current_user AS by_me
  FROM dbsync.ilog_entries WHERE version > :m;

-- A rolled-back transaction and a rolled-back savepoint leave nothing.
:mark \gset
BEGIN;
INSERT INTO il_item VALUES (30, 'gone', 1, 1);
UPDATE il_item SET qty = 99 WHERE id = 6;
ROLLBACK;
BEGIN;
INSERT INTO il_item VALUES (31, 'kept', 1, 1);
SAVEPOINT s1;
INSERT INTO il_item VALUES (32, 'gone', 1, 1);
UPDATE il_item SET name = 'gone' WHERE id = 31;
ROLLBACK TO SAVEPOINT s1;
INSERT INTO il_item VALUES (33, 'kept', 1, 1);
COMMIT;
-- The transaction's first write rolled back with its savepoint: its who/when row is still written, once.
BEGIN;
SAVEPOINT s2;
INSERT INTO il_item VALUES (34, 'gone', 1, 1);
ROLLBACK TO SAVEPOINT s2;
INSERT INTO il_item VALUES (35, 'kept', 1, 1);
RELEASE SAVEPOINT s2;
COMMIT;
SELECT version - :m AS v, operation, key, username = current_user AS by_me
  FROM dbsync.ilog_entries WHERE version > :m ORDER BY version;
SELECT id, name FROM il_item WHERE id BETWEEN 30 AND 35 ORDER BY id;
-- Who, when and from where: one row per transaction.
SELECT count(DISTINCT l.xid) AS transactions, count(x.*) AS xact_rows
  FROM (SELECT DISTINCT xid, day FROM dbsync.ilog WHERE version > :m) l
  JOIN dbsync.ilog_xact x ON x.xid = l.xid AND x.day = l.day;

-- A table's first write rolled back, and changes of its shape rolled back or made in the writing transaction.
:mark \gset
CREATE TABLE il_shape (id int PRIMARY KEY, v text);
SELECT dbsync_track('il_shape');
BEGIN;
INSERT INTO il_shape VALUES (1, 'gone');
ROLLBACK;
INSERT INTO il_shape VALUES (2, 'kept');
BEGIN;
ALTER TABLE il_shape ADD COLUMN e int;
INSERT INTO il_shape VALUES (3, 'gone', 1);
ROLLBACK;
INSERT INTO il_shape VALUES (4, 'kept');
BEGIN;
SAVEPOINT s3;
ALTER TABLE il_shape ADD COLUMN f int;
INSERT INTO il_shape VALUES (5, 'gone', 1);
ROLLBACK TO SAVEPOINT s3;
INSERT INTO il_shape VALUES (6, 'kept');
COMMIT;
BEGIN;
ALTER TABLE il_shape ADD COLUMN g int DEFAULT 7;
INSERT INTO il_shape VALUES (7, 'new');
ALTER TABLE il_shape DROP COLUMN v;
UPDATE il_shape SET g = 8 WHERE id = 7;
COMMIT;
:entries;

-- A partitioned table is tracked as a whole: its entries name it, whatever partition the row is in.
:mark \gset
CREATE TABLE il_part (id int, region text, v text, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE il_part_eu PARTITION OF il_part FOR VALUES IN ('eu');
CREATE TABLE il_part_us (dropme int, v text, region text NOT NULL, id int NOT NULL);
ALTER TABLE il_part_us DROP COLUMN dropme;
ALTER TABLE il_part ATTACH PARTITION il_part_us FOR VALUES IN ('us');
SELECT dbsync_track('il_part');
-- a partition made after tracking is covered too
CREATE TABLE il_part_asia PARTITION OF il_part FOR VALUES IN ('asia');
INSERT INTO il_part VALUES (1, 'eu', 'a'), (2, 'us', 'b'), (3, 'asia', 'c');
UPDATE il_part SET v = 'bb' WHERE id = 2;
-- a row moving between partitions
UPDATE il_part SET region = 'us' WHERE id = 1;
DELETE FROM il_part_asia;
SELECT v, l.tbl, l.table_name, e.operation, e.key, e.before, e.after, e.changed_columns
  FROM (:entries) e JOIN dbsync.ilog_entries l ON l.version = e.v + :m ORDER BY v;
SELECT version - :m AS v, operation, key FROM dbsync_record_history('il_part', '{"region": "us", "id": 2}');
-- a partition of a tracked table is not tracked on its own
SELECT dbsync_track('il_part_eu');
\echo :LAST_ERROR_SQLSTATE
-- TRUNCATE of the whole table is an event of it; so is TRUNCATE of one partition (its rows are the table's)
:mark \gset
TRUNCATE il_part_us;
SELECT count(*) > 0 AS logged FROM dbsync.ilog_entries WHERE version > :m AND tbl = 'il_part'::regclass;
:mark \gset
TRUNCATE il_part;
SELECT version - :m AS v, tbl, operation, key, before, after FROM dbsync.ilog_entries WHERE version > :m;

-- Generated stored columns are logged with their values.
:mark \gset
CREATE TABLE il_gen (id int PRIMARY KEY, qty int, price numeric, total numeric GENERATED ALWAYS AS (qty * price) STORED);
SELECT dbsync_track('il_gen');
INSERT INTO il_gen (id, qty, price) VALUES (1, 2, 1.5);
UPDATE il_gen SET qty = 4;
:entries;

-- Values of many types, NULLs, and values too big to stay in the row.
:mark \gset
CREATE TABLE il_types (id int PRIMARY KEY, t text, n numeric, f float8, i8 bigint, b boolean, j jsonb, js json,
                       arr int[], tarr text[], ts timestamptz, tsl timestamp, d date, u uuid, by bytea,
                       big_ext text, big_zip text);
ALTER TABLE il_types ALTER COLUMN big_ext SET STORAGE EXTERNAL;
SELECT dbsync_track('il_types');
INSERT INTO il_types VALUES
  (1, E'it''s "quoted" \\ back\nnew line, ünï ☃ 😀', 12345678901234567890.0100, 1.5, -9007199254740993, true,
   '{"a": [1, null, "x"], "b": {"c": false}}', '{"k": 1}', '{1,NULL,3}', '{"a b",NULL,"c\"d"}',
   '2024-01-02 03:04:05.678+00', '2024-01-02 03:04:05', '2024-02-29', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\xdeadbeef',
   NULL, NULL),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, '', 'NaN', '-Infinity', 0, false, 'null', '[]', '{}', '{}', 'infinity', '-infinity', 'epoch', NULL, '\x', NULL, NULL);
SELECT v, operation, key, after - '{d,ts,tsl}'::text[] AS after FROM (:entries) e;
SELECT v, (after->>'d')::date AS d, (after->>'ts')::timestamptz AS ts, (after->>'tsl')::timestamp AS tsl
  FROM (:entries) e;
-- big values: an external one and a compressed one, logged whole
CREATE TEMP TABLE il_big AS SELECT string_agg(md5(i::text), '') AS ext FROM generate_series(1, 3125) i;
INSERT INTO il_types (id, big_ext, big_zip) SELECT 4, ext, repeat('x', 100000) FROM il_big;
UPDATE il_types SET t = 'small change' WHERE id = 4;
UPDATE il_types SET big_ext = big_ext || 'y', big_zip = 'short' WHERE id = 4;
DELETE FROM il_types WHERE id = 4;
VACUUM il_types;
SELECT v, operation, key, changed_columns,
       length(before->>'big_ext') AS before_ext, length(after->>'big_ext') AS after_ext,
       length(before->>'big_zip') AS before_zip, length(after->>'big_zip') AS after_zip,
       left(coalesce(before->>'big_ext', after->>'big_ext'), 100000) = b.ext AS ext_same,
       coalesce(before->>'big_zip', after->>'big_zip') IN (repeat('x', 100000), 'short') AS zip_same
  FROM (:entries) e, il_big b WHERE v > 3;
-- Entries read the same whatever the reader's DateStyle (as to_jsonb writes dates and times): no value differs.
CREATE TEMP TABLE il_seen AS SELECT version, key, before, after FROM dbsync.ilog_entries WHERE version > :start;
SET DateStyle = 'SQL, DMY';
SELECT DISTINCT e.table_name, x.part, x.k AS column
  FROM il_seen s JOIN dbsync.ilog_entries e USING (version),
       LATERAL (SELECT 'key' AS part, k FROM jsonb_object_keys(s.key) k WHERE s.key->k IS DISTINCT FROM e.key->k
                UNION ALL
                SELECT 'before', k FROM jsonb_object_keys(s.before) k WHERE s.before->k IS DISTINCT FROM e.before->k
                UNION ALL
                SELECT 'after', k FROM jsonb_object_keys(s.after) k WHERE s.after->k IS DISTINCT FROM e.after->k) x
 ORDER BY 1, 2, 3;
RESET DateStyle;

-- Schema changes: old entries keep the columns and values they had.
:mark \gset
CREATE TABLE il_schema (id int PRIMARY KEY, a int, b text, c text);
SELECT dbsync_track('il_schema');
INSERT INTO il_schema VALUES (1, 10, 'b1', 'c1');
ALTER TABLE il_schema ADD COLUMN d int DEFAULT 5;
INSERT INTO il_schema VALUES (2, 20, 'b2', 'c2');
UPDATE il_schema SET d = 6 WHERE id = 1;
ALTER TABLE il_schema DROP COLUMN c;
INSERT INTO il_schema VALUES (3, 30, 'b3');
UPDATE il_schema SET b = 'b1x' WHERE id = 1;
ALTER TABLE il_schema RENAME COLUMN b TO label;
UPDATE il_schema SET label = 'b1y' WHERE id = 1;
ALTER TABLE il_schema ALTER COLUMN a TYPE bigint;
UPDATE il_schema SET a = 10000000000 WHERE id = 1;
ALTER TABLE il_schema ALTER COLUMN a TYPE text;
UPDATE il_schema SET a = 'ten' WHERE id = 1;
ALTER TABLE il_schema RENAME TO il_schema2;
DELETE FROM il_schema2 WHERE id = 2;
SELECT v, l.tbl, e.operation, e.key, e.before, e.after, e.changed_columns
  FROM (:entries) e JOIN dbsync.ilog_entries l ON l.version = e.v + :m ORDER BY v;
SELECT table_name, tracking FROM dbsync.ilog_tables WHERE tbl = 'il_schema2'::regclass;
SELECT DISTINCT table_name FROM dbsync.ilog_entries WHERE tbl = 'il_schema2'::regclass;
-- the history by the table's new name, qualified or not
SELECT version - :m AS v, operation FROM dbsync_record_history('public.il_schema2', '{"id": 1}');
SELECT version - :m AS v, operation FROM dbsync_record_history('il_schema2', '{"id": 1}');
-- DROP TABLE keeps the history and stops tracking.
DROP TABLE il_schema2;
SELECT table_name, tracking, untracked_at IS NOT NULL AS untracked, dropped_at IS NOT NULL AS dropped
  FROM dbsync.ilog_tables WHERE table_name LIKE 'public.il\_%' ORDER BY table_name COLLATE "C";
SELECT version - :m AS v, operation, key, before, after FROM dbsync_record_history('public.il_schema2', '{"id": 1}');
SELECT version - :m AS v, operation FROM dbsync_record_history('il_schema2', '{"id": 2}');
SELECT count(*) AS kept, count(DISTINCT table_name) AS names, min(table_name) AS table_name
  FROM dbsync.ilog_entries WHERE version > :m;

-- Record history, in order, across changes of the key.
:mark \gset
INSERT INTO il_item VALUES (40, 'cog', 1, 2);
UPDATE il_item SET qty = 2 WHERE id = 40;
UPDATE il_item SET id = 41 WHERE id = 40;
INSERT INTO il_item VALUES (40, 'another cog', 1, 2);
UPDATE il_item SET id = 42, qty = 3 WHERE id = 41;
UPDATE il_item SET name = 'gear' WHERE id = 42;
DELETE FROM il_item WHERE id = 42;
SELECT version - :m AS v, operation, key, before, after FROM dbsync_record_history('il_item', '{"id": 42}');
SELECT version - :m AS v, operation, key, before, after FROM dbsync_record_history('public.il_item', '{"id": 40}') WHERE version > :m;
-- keys given in any JSON form the type reads; a table without a key is found by its whole row
SELECT version - :m AS v, operation FROM dbsync_record_history('il_item', '{"id": "41"}') WHERE version > :m;
SELECT operation, key - 'mtime' AS key, before, after - 'mtime' AS after FROM dbsync_record_history('il_history',
  '{"tid": 2, "bid": 1, "aid": 3, "delta": 99, "mtime": "2024-05-06 07:08:10", "filler": "ab  "}');
SELECT operation, key FROM dbsync_record_history('il_ri_index', '{"branch": 7, "code": "B"}');

-- Incremental reading: pages of 2, each after the last version returned, give every entry once, in order.
CREATE TEMP TABLE il_read (call int, version bigint);
CREATE TEMP TABLE il_start AS SELECT :start::bigint AS version;
DO $$
DECLARE
    last bigint := (SELECT version FROM il_start);
    calls int := 0;
    n int;
BEGIN
    LOOP
        calls := calls + 1;
        INSERT INTO il_read SELECT calls, r.version FROM dbsync_ilog_read(last, 2) r;
        GET DIAGNOSTICS n = ROW_COUNT;
        EXIT WHEN n = 0 OR calls > 1000;
        SELECT max(version) INTO last FROM il_read;
    END LOOP;
END
$$;
SELECT count(*) > 40 AS many, count(*) = (SELECT count(*) FROM dbsync.ilog WHERE version > :start) AS all_returned,
       count(DISTINCT version) = count(*) AS each_once, max(call) = (count(*) + 1) / 2 AS pages_of_2
  FROM il_read;
SELECT (SELECT array_agg(version ORDER BY version) FROM dbsync.ilog WHERE version > :start)
     = (SELECT array_agg(version ORDER BY call, version) FROM il_read) AS all_once_in_order;
SELECT count(*) AS after_last FROM dbsync_ilog_read((SELECT max(version) FROM il_read));
SELECT version - :start AS v, operation, key FROM dbsync_ilog_read(:start, 3);
-- the whole entry, as the view has it
SELECT (SELECT array_agg(r ORDER BY r.version) FROM dbsync_ilog_read(:start) r)
     = (SELECT array_agg(e ORDER BY e.version) FROM dbsync.ilog_entries e WHERE e.version > :start) AS same_as_view;

-- Purge by max days: whole old day partitions dropped, rows deleted elsewhere; tables without max days keep all.
CREATE TABLE il_purged (id int PRIMARY KEY, v text);
CREATE TABLE il_kept (id int PRIMARY KEY, v text);
SELECT dbsync_track('il_purged', max_days => 30);
SELECT dbsync_track('il_kept');
:mark \gset
INSERT INTO il_purged SELECT i, 'v' || i FROM generate_series(1, 6) i;
INSERT INTO il_kept SELECT i, 'v' || i FROM generate_series(1, 3) i;
SELECT dbsync.ilog_partition_create(current_date - 400) AS made_400, dbsync.ilog_partition_create(current_date - 401) AS made_401;
SELECT 'dbsync.ilog_p' || to_char(current_date - 400, 'YYYYMMDD') AS p400,
       'dbsync.ilog_xact_p' || to_char(current_date - 400, 'YYYYMMDD') AS px400,
       'dbsync.ilog_p' || to_char(current_date - 401, 'YYYYMMDD') AS p401,
       'dbsync.ilog_xact_p' || to_char(current_date - 401, 'YYYYMMDD') AS px401 \gset
-- day -400: only entries of il_purged; day -401: both tables; day -300 (no partition): both tables
UPDATE dbsync.ilog SET day = current_date - 400
 WHERE version IN (SELECT version FROM dbsync.ilog_entries WHERE tbl = 'il_purged'::regclass AND key->>'id' IN ('1', '2'));
UPDATE dbsync.ilog SET day = current_date - 401
 WHERE version IN (SELECT version FROM dbsync.ilog_entries WHERE (tbl = 'il_purged'::regclass AND key->>'id' = '3')
                                                               OR (tbl = 'il_kept'::regclass AND key->>'id' = '1'));
UPDATE dbsync.ilog SET day = current_date - 300
 WHERE version IN (SELECT version FROM dbsync.ilog_entries WHERE (tbl = 'il_purged'::regclass AND key->>'id' = '4')
                                                               OR (tbl = 'il_kept'::regclass AND key->>'id' = '2'));
SELECT tableoid::regclass = :'p400'::regclass AS in_400, tableoid::regclass = :'p401'::regclass AS in_401,
       tableoid = 'dbsync.ilog_default'::regclass AS in_default, count(*)
  FROM dbsync.ilog WHERE version > :m GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT * FROM dbsync_ilog_clear();
SELECT to_regclass(:'p400') IS NULL AS p400_dropped, to_regclass(:'px400') IS NULL AS xact_p400_dropped,
       to_regclass(:'p401') IS NOT NULL AS p401_kept;
SELECT table_name, array_agg((key->>'id')::int ORDER BY (key->>'id')::int) AS ids
  FROM dbsync.ilog_entries WHERE version > :m GROUP BY 1 ORDER BY 1;
SELECT * FROM dbsync_ilog_clear();
DROP TABLE :p401, :px401;

-- Untrack: nothing more is logged, the history stays; tracking again resumes.
:mark \gset
SELECT dbsync_untrack('il_kept');
SELECT tracking, untracked_at IS NOT NULL AS untracked FROM dbsync.ilog_tables WHERE tbl = 'il_kept'::regclass;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'il_kept'::regclass;
INSERT INTO il_kept VALUES (10, 'not logged');
TRUNCATE il_kept;
SELECT count(*) AS new_entries FROM dbsync.ilog WHERE version > :m;
SELECT count(*) AS history FROM dbsync_record_history('il_kept', '{"id": 3}');
SELECT dbsync_untrack('il_kept');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_track('il_kept');
SELECT tracking, untracked_at FROM dbsync.ilog_tables WHERE tbl = 'il_kept'::regclass;
INSERT INTO il_kept VALUES (11, 'logged');
:entries;

-- A transaction that wrote the log cannot be prepared (its version would hold readers back); others can.
SELECT current_setting('max_prepared_transactions')::int > 0 AS can_prepare;
:mark \gset
BEGIN;
INSERT INTO il_kept VALUES (12, 'prepared?');
PREPARE TRANSACTION 'il_prepared';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS rows FROM il_kept WHERE id = 12;
SELECT count(*) AS entries FROM dbsync.ilog WHERE version > :m;
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'il_prepared';
CREATE TABLE il_untracked (id int);
BEGIN;
INSERT INTO il_untracked VALUES (1);
PREPARE TRANSACTION 'il_prepared_ok';
COMMIT PREPARED 'il_prepared_ok';
SELECT count(*) AS rows FROM il_untracked;

-- Bad inputs.
CREATE VIEW il_view AS SELECT * FROM il_item;
SELECT dbsync_track('il_view');
\echo :LAST_ERROR_SQLSTATE
CREATE TEMP TABLE il_temp (id int PRIMARY KEY);
SELECT dbsync_track('il_temp');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_track('dbsync.job');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_track('dbsync.ilog');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_track('il_missing');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_track('il_item', excluded_columns => '{nosuch}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_track('il_item', excluded_columns => '{id}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_track('il_item', max_days => 0);
\echo :LAST_ERROR_SQLSTATE
-- a max_days whose cut-off date would not exist (the purge would fail for every table)
SELECT dbsync_track('il_item', max_days => 2147483647);
\echo :LAST_ERROR_SQLSTATE
-- a table tracked but never written has an empty history, whatever the key
CREATE TABLE il_quiet (id int PRIMARY KEY);
SELECT dbsync_track('il_quiet');
SELECT count(*) AS entries FROM dbsync_record_history('il_quiet', '{"id": 1}');
SELECT dbsync_untrack('il_quiet');
DROP TABLE il_quiet;
SELECT dbsync_track(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_untrack('il_untracked');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE il_part2 (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE il_part2_low PARTITION OF il_part2 FOR VALUES FROM (0) TO (100);
SELECT dbsync_track('il_part2_low');
SELECT dbsync_track('il_part2');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_untrack('il_part2_low');
-- the failed calls changed nothing
SELECT table_name, tracking, max_days, excluded_columns FROM dbsync.ilog_tables WHERE tbl = 'il_item'::regclass;
SELECT count(*) AS tables FROM dbsync.ilog_tables
 WHERE tbl IN ('il_view'::regclass, 'il_untracked'::regclass, 'il_temp'::regclass, 'il_part2'::regclass);
SELECT * FROM dbsync_record_history('il_item', '[42]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_record_history('il_item', '42');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_record_history('il_item', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_record_history('il_item', '{"name": "gear"}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_record_history('il_item', '{"id": 42, "name": "gear"}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_record_history('il_item', '{"id": "forty-two"}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_record_history('il_nosuch', '{"id": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_record_history('il_untracked', '{"id": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_ilog_read(0, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_ilog_read(0, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_ilog_read(0, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS none_after_the_end FROM dbsync_ilog_read(9223372036854775807);
SELECT dbsync_ilog_grant_read('regress_ilog_nosuch');
\echo :LAST_ERROR_SQLSTATE

-- Security: the log holds copies of table data.
CREATE ROLE regress_ilog_writer;
CREATE ROLE regress_ilog_reader;
CREATE SCHEMA il_own AUTHORIZATION regress_ilog_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON il_account TO regress_ilog_writer;
GRANT USAGE ON SCHEMA il_own TO regress_ilog_reader;
-- No iLog function is PUBLIC's.
SELECT p.oid::regprocedure AS function, has_function_privilege('regress_ilog_writer', p.oid, 'EXECUTE') AS can_execute
  FROM pg_proc p
 WHERE p.proname ~ '^(dbsync_track|dbsync_untrack|dbsync_record_history)$|ilog'
   AND p.pronamespace IN ('dbsync'::regnamespace, 'public'::regnamespace)
 ORDER BY p.oid::regprocedure::text;
SELECT has_schema_privilege('regress_ilog_writer', 'dbsync', 'USAGE') AS dbsync_usage,
       has_table_privilege('regress_ilog_writer', 'il_account', 'TRIGGER') AS can_trigger;
-- A writer of a tracked table needs no rights on the log; its changes are logged under its name.
:mark \gset
SET ROLE regress_ilog_writer;
INSERT INTO il_account VALUES (2, 'bob', 'pw', NULL, 'by writer');
UPDATE il_account SET note = 'edited' WHERE id = 2;
DELETE FROM il_account WHERE id = 2;
-- It cannot read the log, nor forge or erase entries, nor stop the logging.
SELECT count(*) FROM dbsync.ilog;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM dbsync.ilog_entries;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM dbsync_ilog_read();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM dbsync_record_history('il_account', '{"id": 2}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO dbsync.ilog (version, xid, day, tbl, layout, key_hash, op) VALUES (1, 1, current_date, 1, 0, 0, 'T');
\echo :LAST_ERROR_SQLSTATE
DELETE FROM dbsync.ilog;
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_ilog_clear();
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_untrack('il_account');
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE il_account DISABLE TRIGGER dbsync_ilog;
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER dbsync_ilog ON il_account;
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_ilog_grant_read('regress_ilog_writer');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE il_own.t (id int);
CREATE TRIGGER forge AFTER INSERT ON il_own.t FOR EACH ROW EXECUTE FUNCTION dbsync.ilog_trigger('1');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_track('il_own.t');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT version - :m AS v, table_name, operation, key, before, after, changed_columns, username
  FROM dbsync.ilog_entries WHERE version > :m ORDER BY version;
-- A role granted the right to read: the entries, the reading functions; still no writing.
SELECT dbsync_ilog_grant_read('regress_ilog_reader');
SET ROLE regress_ilog_reader;
SELECT count(*) AS entries, min(username) AS username FROM dbsync.ilog_entries WHERE version > :m;
SELECT version - :m AS v, operation FROM dbsync_ilog_read(:m, 2);
SELECT version - :m AS v, operation FROM dbsync_record_history('il_account', '{"id": 2}') WHERE version > :m;
SELECT table_name, tracking FROM dbsync.ilog_tables WHERE tbl = 'il_account'::regclass;
SELECT count(*) FROM dbsync.ilog;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM dbsync.ilog;
\echo :LAST_ERROR_SQLSTATE
UPDATE dbsync.ilog SET op = 'T';
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_ilog_clear();
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_track('il_account');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync.ilog_partition_create(current_date + 1000);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE il_own.r (id int);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT CREATE ON SCHEMA il_own TO regress_ilog_reader;
SET ROLE regress_ilog_reader;
CREATE TABLE il_own.r (id int);
CREATE TRIGGER forge AFTER INSERT ON il_own.r FOR EACH ROW EXECUTE FUNCTION dbsync.ilog_trigger('1');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Taken back.
SELECT dbsync_ilog_grant_read('regress_ilog_reader', revoke => true);
SET ROLE regress_ilog_reader;
SELECT count(*) FROM dbsync.ilog_entries;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM dbsync_ilog_read();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Tracking scheduled the worker's hourly maintenance (new partitions, purge), once.
SELECT kind, state, repeat_every = interval '1 hour' AS hourly, count(*) FROM dbsync.job WHERE kind = 'ilog_maintain' GROUP BY 1, 2, 3;
DELETE FROM dbsync.job WHERE kind = 'ilog_maintain';

DROP SCHEMA il_own CASCADE;
REVOKE ALL ON il_account FROM regress_ilog_writer;
-- (the revoke leaves USAGE on schema dbsync)
REVOKE USAGE ON SCHEMA dbsync FROM regress_ilog_reader;
DROP ROLE regress_ilog_writer;
DROP ROLE regress_ilog_reader;
DROP VIEW il_view;
DROP TABLE il_item, il_shape, il_account, il_ri_index, il_ri_full, il_history, il_part, il_gen, il_types,
           il_purged, il_kept, il_untracked, il_part2;
SELECT count(*) AS tracking FROM dbsync.ilog_tables WHERE tracking;
