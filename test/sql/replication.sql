-- Replication: configs, syncs to a target database of this cluster, their results, failures, purge protection.
-- Versions are printed relative to a mark (:m); the target is another database reached through libpq.
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dbsync;
RESET client_min_messages;
\set src :DBNAME
\set mark 'SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS m FROM dbsync.ilog_version_seq'
SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS k0 FROM dbsync.replication_key_seq \gset

-- One line per target result: every field, versions relative to the mark, error messages without socket paths.
CREATE FUNCTION rt_show(results jsonb, mark bigint)
RETURNS TABLE (target text, success boolean, start_v bigint, end_v bigint, update_v jsonb, ins int, upd int,
               del int, xacts int, rows_written int, error text)
LANGUAGE sql AS $$
    SELECT r->>'targetDatabase', (r->>'success')::boolean,
           (r->>'startVersion')::bigint - mark, (r->>'endVersion')::bigint - mark,
           (SELECT coalesce(jsonb_agg(v::bigint - mark), '[]') FROM jsonb_array_elements_text(r->'updateVersions') v),
           (r->'stats'->>'numInserts')::int, (r->'stats'->>'numUpdates')::int, (r->'stats'->>'numDeletes')::int,
           (r->'stats'->>'numTransactionLogs')::int, (r->'stats'->>'numTargetEntries')::int,
           regexp_replace(r->>'errorMessage', '(socket|server at) "[^"]*"(, port [0-9]+)?', '\1 "..."', 'g')
      FROM jsonb_array_elements(results) r
$$;

-- The target: another database of this cluster, with the same tables.
CREATE DATABASE regress_repl_target;
\c regress_repl_target
CREATE TABLE rt_customer (id int PRIMARY KEY, name text NOT NULL, code text UNIQUE);
CREATE TABLE rt_invoice (id bigint PRIMARY KEY, customer_id int REFERENCES rt_customer, total numeric(12,2),
                         note text);
CREATE TABLE rt_types (id int PRIMARY KEY, ts timestamptz, d date, iv interval, b bytea, f float8, j jsonb,
                       arr text[], t text, n numeric, flag boolean);
CREATE TABLE rt_pos (id bigint PRIMARY KEY, v text);
CREATE TABLE rt_check (id int PRIMARY KEY, qty int CHECK (qty >= 0));
CREATE TABLE rt_wide (id int PRIMARY KEY, a text);          -- lacks column b of the source
\c :src
SET client_min_messages = warning;
CREATE TABLE rt_customer (id int PRIMARY KEY, name text NOT NULL, code text UNIQUE);
CREATE TABLE rt_invoice (id bigint PRIMARY KEY, customer_id int REFERENCES rt_customer, total numeric(12,2),
                         note text);
CREATE TABLE rt_types (id int PRIMARY KEY, ts timestamptz, d date, iv interval, b bytea, f float8, j jsonb,
                       arr text[], t text, n numeric, flag boolean);
CREATE TABLE rt_pos (id bigint PRIMARY KEY, v text);
CREATE TABLE rt_check (id int PRIMARY KEY, qty int);
CREATE TABLE rt_wide (id int PRIMARY KEY, a text, b text);
CREATE TABLE rt_missing (id int PRIMARY KEY);                -- no such table on the target
CREATE TABLE rt_nokey (a int, b text);
CREATE TABLE rt_textkey (code text PRIMARY KEY);
SELECT dbsync_track(t) FROM unnest('{rt_customer,rt_invoice,rt_types,rt_pos,rt_check,rt_wide,rt_missing,rt_nokey,rt_textkey}'::regclass[]) t;
RESET client_min_messages;
-- Servers for databases of this cluster (its socket directory changes from run to run).
CREATE PROCEDURE rt_server(name text, dbname text, timeout text) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE SERVER %I FOREIGN DATA WRAPPER dbsync OPTIONS (api %L, host %L, port %L, dbname %L, '
                   'sslmode %L, timeout %L)', name, 'postgres',
                   split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port'),
                   dbname, 'disable', timeout);
END $$;
CALL rt_server('rt_target', 'regress_repl_target', '20s');
CALL rt_server('rt_nodb', 'regress_repl_no_such_db', '20s');
CREATE USER MAPPING FOR CURRENT_USER SERVER rt_target OPTIONS (user :'USER');
CREATE USER MAPPING FOR CURRENT_USER SERVER rt_nodb OPTIONS (user :'USER');
CREATE SERVER rt_flexi FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://127.0.0.1:1', company 'x');

-- Server options of a postgres target.
CREATE SERVER rt_bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'postgres', dbname 'x', sslmode 'sometimes');
CREATE SERVER rt_bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'postgres', dbname 'x', sslrootcert 'root.crt');
CREATE SERVER rt_bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'postgres', dbname 'x', timeout 'soon');

-- Bad configs: each refused with its SQLSTATE, nothing created.
SELECT dbsync_replication_config_create(NULL, '{rt_target}', '{rt_customer}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_create('c', '{rt_target}', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_create('c', '{}', '{rt_customer}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_create('c', '{rt_target,rt_target}', '{rt_customer}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_create('c', '{rt_nowhere}', '{rt_customer}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_create('c', '{rt_flexi}', '{rt_customer}');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE rt_untracked (id int PRIMARY KEY);
SELECT dbsync_replication_config_create('c', '{rt_target}', '{rt_untracked}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_create('c', '{rt_target}', '{rt_nokey}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_create('c', '{rt_target}', '{rt_textkey}', positive_keys_only => true);
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_create('c', '{rt_target}', '{rt_customer}', sync_interval => '-1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_create('c', '{rt_target}', '{rt_customer}', start_version => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_create('c', '{rt_target}', '{rt_no_such_table}');
SELECT count(*) AS configs FROM dbsync.replication_config;

-- A config; what GET configs shows of it.
SELECT dbsync_replication_config_create('Ambiente de homologação', targets => '{rt_target}',
       tables => '{public.rt_invoice,public.rt_customer,public.rt_types}') AS k1 \gset
SELECT jsonb_pretty(dbsync_replication_config(:k1) - 'key' - 'databases') AS config;
SELECT d->>'name' AS target, (d->>'key')::bigint - :k0 AS key_offset
  FROM jsonb_array_elements(dbsync_replication_configs()->0->'databases') d;
SELECT jsonb_array_length(dbsync_replication_configs()) AS configs,
       (dbsync_replication_configs()->0->>'key')::bigint = :k1 AS same_key;
SELECT dbsync_replication_config_create('Ambiente de homologação', '{rt_target}', '{rt_customer}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config(:k1 + 1000);
\echo :LAST_ERROR_SQLSTATE

-- Nothing written yet: a sync reports success and moves nothing.
:mark \gset
SELECT * FROM rt_show(dbsync_replication_sync(:k1), :m);
-- Every field of a result, with its JSON type.
SELECT key, jsonb_typeof(value) FROM jsonb_each(dbsync_replication_sync(:k1)->0) ORDER BY key;
SELECT key, jsonb_typeof(value) FROM jsonb_each(dbsync_replication_sync(:k1)->0->'stats') ORDER BY key;
SELECT r->>'configName' AS config, r->>'sourceDatabase' = current_database() AS source_is_here,
       (r->>'executionTime')::int >= 0 AS time_ok
  FROM jsonb_array_elements(dbsync_replication_sync(:k1)) r;

-- Inserts, updates, deletes; a row inserted, updated and deleted within the range never reaches the target.
:mark \gset
INSERT INTO rt_customer VALUES (1, 'Ana', 'A'), (2, 'Bruno', 'B'), (3, 'Carla', 'C');
INSERT INTO rt_invoice VALUES (10, 1, 100.50, E'tab\there, newline\nthere, back\\slash'), (11, 2, 7, NULL);
UPDATE rt_customer SET name = 'Ana Maria' WHERE id = 1;
UPDATE rt_invoice SET customer_id = 3, total = 8 WHERE id = 11;
INSERT INTO rt_customer VALUES (4, 'Temp', 'T');
UPDATE rt_customer SET name = 'Temp 2' WHERE id = 4;
DELETE FROM rt_customer WHERE id = 4;
BEGIN; INSERT INTO rt_customer VALUES (5, 'Rolled back', 'R'); ROLLBACK;
SELECT * FROM rt_show(dbsync_replication_sync(:k1), :m);
SELECT * FROM rt_show(dbsync_replication_sync(:k1), :m);
\c regress_repl_target
SELECT * FROM rt_customer ORDER BY id;
SELECT id, customer_id, total, note FROM rt_invoice ORDER BY id;
SELECT config, version > 0 AS has_version FROM dbsync_replica.applied;
\c :src
SELECT server, delivered_version - :m AS delivered, last_success, last_error FROM dbsync.replication_status;

-- Key changes, deletes of rows the target has, and moves of a unique value between rows.
:mark \gset
UPDATE rt_customer SET id = 20 WHERE id = 2;        -- referenced by no invoice any more
UPDATE rt_customer SET code = 'C2' WHERE id = 3;
DELETE FROM rt_invoice WHERE id = 10;
DELETE FROM rt_customer WHERE id = 1;
SELECT * FROM rt_show(dbsync_replication_sync(:k1), :m);
\c regress_repl_target
SELECT * FROM rt_customer ORDER BY id;
SELECT id, customer_id, total FROM rt_invoice ORDER BY id;
\c :src
-- A code moved from one row to another in separate statements: folded, the target would see a duplicate;
-- the sync applies them again in the order they were made.
:mark \gset
INSERT INTO rt_customer VALUES (30, 'X', 'X1'), (31, 'Y', 'Y1');
SELECT * FROM rt_show(dbsync_replication_sync(:k1), :m);
:mark \gset
UPDATE rt_customer SET code = 'tmp' WHERE id = 30;
UPDATE rt_customer SET code = 'X1' WHERE id = 31;
UPDATE rt_customer SET code = 'Y1' WHERE id = 30;
SELECT * FROM rt_show(dbsync_replication_sync(:k1), :m);
\c regress_repl_target
SELECT * FROM rt_customer WHERE id >= 30 ORDER BY id;
\c :src

-- A range longer than one read of the log and one batch: 30,000 inserts, updates of some, deletes of others.
\c regress_repl_target
CREATE TABLE rt_bulk (id int PRIMARY KEY, v text);
\c :src
CREATE TABLE rt_bulk (id int PRIMARY KEY, v text);
SELECT dbsync_track('rt_bulk');
SELECT dbsync_replication_config_alter(:k1, tables => '{rt_invoice,rt_customer,rt_types,rt_bulk}') ->'tables' AS tables;
:mark \gset
INSERT INTO rt_bulk SELECT i, 'v' || i FROM generate_series(1, 30000) i;
UPDATE rt_bulk SET v = v || ' updated' WHERE id % 3 = 0;
DELETE FROM rt_bulk WHERE id % 5 = 0;
SELECT * FROM rt_show(dbsync_replication_sync(:k1), :m);
SELECT md5(string_agg(t::text, '|' ORDER BY id)) AS h FROM rt_bulk t \gset bulk_
\c regress_repl_target
SELECT count(*) AS target_rows, md5(string_agg(t::text, '|' ORDER BY id)) = :'bulk_h' AS bulk_equal FROM rt_bulk t;
\c :src

-- Values of many types arrive exactly as they are on the source (compared as text in both databases).
INSERT INTO rt_types VALUES
  (1, '2026-03-01 12:34:56.789+02', '2026-02-28', '1 year 2 mons 3 days 04:05:06.5', '\x00ff10', 0.1, '{"a": [1, 2.5, null]}',
   '{"x,y","q\"uote",NULL}', E'multi\nline\ttab\\back', 'NaN', true),
  (2, NULL, NULL, NULL, NULL, '-Infinity', 'null', '{}', '', 123456789012345678901234567890.123, false),
  (3, 'infinity', '-infinity', '-1 days', '\x', 1e300, '"text"', NULL, 'ünïcødé ☃', -0.5, NULL);
UPDATE rt_types SET f = 2.5, t = NULL WHERE id = 3;
SELECT * FROM rt_show(dbsync_replication_sync(:k1), 0) \gset res_
\echo :res_success
SELECT md5(string_agg(t::text, '|' ORDER BY id)) AS h FROM rt_types t \gset src_
\c regress_repl_target
SELECT md5(string_agg(t::text, '|' ORDER BY id)) = :'src_h' AS types_equal FROM rt_types t;
\c :src

-- Identity columns GENERATED ALWAYS take the source's values; stored generated columns are computed by the target.
\c regress_repl_target
CREATE TABLE rt_gen (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED);
\c :src
CREATE TABLE rt_gen (id int GENERATED ALWAYS AS IDENTITY (START WITH 100) PRIMARY KEY, a int,
                     b int GENERATED ALWAYS AS (a * 2) STORED);
SELECT dbsync_track('rt_gen');
SELECT dbsync_replication_config_alter(:k1, tables => '{rt_invoice,rt_customer,rt_types,rt_bulk,rt_gen}') ->'tables' AS tables;
:mark \gset
INSERT INTO rt_gen (a) VALUES (1), (2);
UPDATE rt_gen SET a = 5 WHERE id = 101;
SELECT * FROM rt_show(dbsync_replication_sync(:k1), :m);
\c regress_repl_target
SELECT * FROM rt_gen ORDER BY id;
\c :src

-- A second target that cannot be reached: its result fails with a clear message, the first still syncs.
SELECT dbsync_replication_config_alter(:k1, targets => '{rt_target,rt_nodb}') ->'databases' @> '[{"name": "rt_nodb"}]' AS added;
:mark \gset
INSERT INTO rt_customer VALUES (40, 'Dora', 'D');
SELECT * FROM rt_show(dbsync_replication_sync(:k1), :m);
SELECT server, last_success, last_error IS NOT NULL AS has_error FROM dbsync.replication_status ORDER BY target_key;
-- a target without a user mapping for the config's owner fails the same way, naming what is missing
CALL rt_server('rt_nomap', 'regress_repl_target', '20s');
SELECT dbsync_replication_config_alter(:k1, targets => '{rt_target,rt_nomap}') ->'databases' @> '[{"name": "rt_nomap"}]' AS added;
SELECT target, success, regexp_replace(error, 'role "[^"]*"', 'role "..."') AS error
  FROM rt_show(dbsync_replication_sync(:k1), :m) ORDER BY target;
SELECT jsonb_array_length(dbsync_replication_config_alter(:k1, targets => '{rt_target}') ->'databases') AS targets_left;

-- A table missing on the target, a column missing, a row the target rejects: that target fails, nothing of the
-- range is applied there (its version and rows stay), and the next sync after the fix delivers everything.
SELECT dbsync_replication_config_create('missing', '{rt_target}', '{rt_pos,rt_missing}') AS k2 \gset
:mark \gset
INSERT INTO rt_pos VALUES (1, 'one');
INSERT INTO rt_missing VALUES (1);
SELECT * FROM rt_show(dbsync_replication_sync(:k2), :m);
\c regress_repl_target
SELECT count(*) AS pos_rows FROM rt_pos;
\c :src
SELECT dbsync_replication_config_alter(:k2, tables => '{rt_pos}') ->'tables' AS tables;
SELECT * FROM rt_show(dbsync_replication_sync(:k2), :m);

SELECT dbsync_replication_config_create('wide', '{rt_target}', '{rt_wide}') AS k3 \gset
:mark \gset
INSERT INTO rt_wide VALUES (1, 'a', 'b');
SELECT * FROM rt_show(dbsync_replication_sync(:k3), :m);
\c regress_repl_target
ALTER TABLE rt_wide ADD COLUMN b text;
\c :src
SELECT * FROM rt_show(dbsync_replication_sync(:k3), :m);

SELECT dbsync_replication_config_create('check', '{rt_target}', '{rt_check}') AS k4 \gset
:mark \gset
INSERT INTO rt_check VALUES (1, 5), (2, -1), (3, 7);
SELECT * FROM rt_show(dbsync_replication_sync(:k4), :m);
\c regress_repl_target
SELECT count(*) AS check_rows FROM rt_check;
\c :src
UPDATE rt_check SET qty = 0 WHERE id = 2;
SELECT * FROM rt_show(dbsync_replication_sync(:k4), :m);
\c regress_repl_target
SELECT * FROM rt_check ORDER BY id;
\c :src

-- A target slower than the server's timeout: the wait ends, the result fails, nothing is applied.
\c regress_repl_target
CREATE FUNCTION rt_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(3); RETURN NEW; END $$;
CREATE TRIGGER rt_slow BEFORE INSERT ON rt_check FOR EACH ROW EXECUTE FUNCTION rt_slow();
\c :src
CALL rt_server('rt_impatient', 'regress_repl_target', '1s');
CREATE USER MAPPING FOR CURRENT_USER SERVER rt_impatient OPTIONS (user :'USER');
SELECT dbsync_replication_config_alter(:k4, targets => '{rt_impatient}') ->'databases'->0->'name' AS target;
:mark \gset
INSERT INTO rt_check VALUES (4, 1);
SELECT * FROM rt_show(dbsync_replication_sync(:k4), :m);
\c regress_repl_target
DROP TRIGGER rt_slow ON rt_check;
SELECT * FROM rt_check ORDER BY id;
\c :src
SELECT * FROM rt_show(dbsync_replication_sync(:k4), :m);

-- positive_keys_only: rows with keys of zero or less stay on the source; a row leaving the positive keys is
-- deleted on the target; TRUNCATE removes only positive keys there.
SELECT dbsync_replication_config_alter(:k2, positive_keys_only => true) ->'positiveKeysOnly' AS positive;
\c regress_repl_target
INSERT INTO rt_pos VALUES (-5, 'target''s own');
\c :src
:mark \gset
INSERT INTO rt_pos VALUES (2, 'two'), (0, 'zero'), (-1, 'minus one'), (3, 'three');
UPDATE rt_pos SET v = 'minus one again' WHERE id = -1;
UPDATE rt_pos SET id = -3 WHERE id = 3;
SELECT * FROM rt_show(dbsync_replication_sync(:k2), :m);
\c regress_repl_target
SELECT * FROM rt_pos ORDER BY id;
\c :src
:mark \gset
TRUNCATE rt_pos;
INSERT INTO rt_pos VALUES (7, 'seven');
SELECT * FROM rt_show(dbsync_replication_sync(:k2), :m);
\c regress_repl_target
SELECT * FROM rt_pos ORDER BY id;
\c :src

-- Enable, disable, alter, drop; the worker's job follows the schedule.
SELECT dbsync_replication_config_alter(:k4, name => 'check renamed', sync_interval => '5 minutes') - 'key' - 'databases' AS altered;
SELECT kind, args->>'config' = :'k4' AS for_config, repeat_every, state FROM dbsync.job WHERE kind = 'replication_sync';
SELECT dbsync_replication_config_disable(:k4) ->'enabled' AS enabled;
SELECT count(*) AS jobs FROM dbsync.job WHERE kind = 'replication_sync';
SELECT dbsync_replication_config_enable(:k4) ->'enabled' AS enabled;
SELECT count(*) AS jobs FROM dbsync.job WHERE kind = 'replication_sync';
SELECT dbsync_replication_config_alter(:k4, sync_interval => '0') ->'syncInterval' AS interval_removed;
SELECT count(*) AS jobs FROM dbsync.job WHERE kind = 'replication_sync';
SELECT dbsync_replication_config_alter(:k4, name => 'wide');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_alter(:k4, sync_interval => '-1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_drop(:k4);
SELECT dbsync_replication_config_drop(:k4);
\echo :LAST_ERROR_SQLSTATE
-- every enabled config at once (POST /replication/sync): one result per target of each
SELECT dbsync_replication_config_disable(:k3) ->'enabled' AS enabled;
SELECT r->>'configName' AS config, r->>'success' AS success FROM jsonb_array_elements(dbsync_replication_sync()) r;

-- The purge keeps what an enabled config has not delivered, unless forced; a disabled config holds nothing back.
CREATE TABLE rt_old (id int PRIMARY KEY);
\c regress_repl_target
CREATE TABLE rt_old (id int PRIMARY KEY);
\c :src
SELECT dbsync_track('rt_old', max_days => 30);
SELECT dbsync_replication_config_create('old', '{rt_target}', '{rt_old}') AS k5 \gset
:mark \gset
INSERT INTO rt_old SELECT generate_series(1, 6);
SELECT dbsync.ilog_partition_create(current_date - 400) AS made;
UPDATE dbsync.ilog SET day = current_date - 400 WHERE tbl = 'rt_old'::regclass AND version <= :m + 3;
UPDATE dbsync.ilog SET day = current_date - 300 WHERE tbl = 'rt_old'::regclass AND version > :m + 3;
SELECT * FROM dbsync_ilog_clear() WHERE table_name = 'public.rt_old';
SELECT count(*) AS entries_left FROM dbsync.ilog WHERE tbl = 'rt_old'::regclass;
SELECT * FROM rt_show(dbsync_replication_sync(:k5), :m);
SELECT * FROM dbsync_ilog_clear() WHERE table_name = 'public.rt_old';
SELECT count(*) AS entries_left FROM dbsync.ilog WHERE tbl = 'rt_old'::regclass;
INSERT INTO rt_old VALUES (7), (8);
UPDATE dbsync.ilog SET day = current_date - 300 WHERE tbl = 'rt_old'::regclass;
SELECT * FROM dbsync_ilog_clear() WHERE table_name = 'public.rt_old';
SELECT * FROM dbsync_ilog_clear(force => true) WHERE table_name = 'public.rt_old';
SELECT dbsync_ilog_clear(force => NULL);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO rt_old VALUES (9);
UPDATE dbsync.ilog SET day = current_date - 300 WHERE tbl = 'rt_old'::regclass;
SELECT dbsync_replication_config_disable(:k5) ->'enabled' AS enabled;
SELECT * FROM dbsync_ilog_clear() WHERE table_name = 'public.rt_old';

-- Security: a role that is not superuser needs a password (and the target must ask for it); it sees and
-- manages only its own configs; it cannot replicate a table it may not read.
CREATE ROLE regress_repl_user LOGIN;
GRANT USAGE ON FOREIGN SERVER rt_target TO regress_repl_user;
GRANT SELECT ON rt_pos TO regress_repl_user;
GRANT EXECUTE ON FUNCTION dbsync_replication_config_create(text, text[], regclass[], boolean, interval, boolean, bigint),
      dbsync_replication_configs(), dbsync_replication_config(bigint), dbsync_replication_sync(bigint),
      dbsync_replication_config_alter(bigint, text, text[], regclass[], boolean, interval),
      dbsync_replication_config_drop(bigint)
      TO regress_repl_user;
:mark \gset
CREATE USER MAPPING FOR regress_repl_user SERVER rt_target OPTIONS (user 'regress_repl_user');
SET ROLE regress_repl_user;
SELECT dbsync_replication_config_create('theirs', '{rt_target}', '{rt_customer}');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_config_create('theirs', '{rt_target}', '{rt_pos}') AS k6 \gset
SELECT jsonb_array_length(dbsync_replication_configs()) AS visible_configs;
SELECT dbsync_replication_config(:k1);
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_replication_sync(:k1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM rt_show(dbsync_replication_sync(:k6), :m);
RESET ROLE;
SELECT dbsync_replication_config_alter(:k1, name => 'mine') IS NOT NULL AS superuser_may;
SET ROLE regress_repl_user;
SELECT dbsync_replication_config_alter(:k1, name => 'not mine');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
ALTER USER MAPPING FOR regress_repl_user SERVER rt_target OPTIONS (ADD password 'secret-password-123');
SET ROLE regress_repl_user;
-- (this target trusts local connections: it never asks for the password, so the connection is still refused)
SELECT * FROM rt_show(dbsync_replication_sync(:k6), :m);
RESET ROLE;
-- an owner who may no longer read a table cannot replicate it any more
REVOKE SELECT ON rt_pos FROM regress_repl_user;
SET ROLE regress_repl_user;
SELECT * FROM rt_show(dbsync_replication_sync(:k6), :m);
SELECT dbsync_replication_config_drop(:k6);
RESET ROLE;
-- the password appears in no result, status or job row
SELECT count(*) AS leaks FROM dbsync.replication_target
 WHERE last_result::text LIKE '%secret-password%' OR last_error LIKE '%secret-password%';

-- Clean up.
SELECT dbsync_replication_config_drop(key) FROM dbsync.replication_config ORDER BY key;
SELECT count(*) AS targets_left FROM dbsync.replication_target;
DROP USER MAPPING FOR regress_repl_user SERVER rt_target;
REVOKE ALL ON FOREIGN SERVER rt_target FROM regress_repl_user;
REVOKE ALL ON rt_pos FROM regress_repl_user;
REVOKE ALL ON FUNCTION dbsync_replication_config_create(text, text[], regclass[], boolean, interval, boolean, bigint),
      dbsync_replication_configs(), dbsync_replication_config(bigint), dbsync_replication_sync(bigint),
      dbsync_replication_config_alter(bigint, text, text[], regclass[], boolean, interval),
      dbsync_replication_config_drop(bigint)
      FROM regress_repl_user;
DROP ROLE regress_repl_user;
DROP SERVER rt_target, rt_nodb, rt_flexi, rt_impatient, rt_nomap CASCADE;
SELECT dbsync_untrack(t) FROM unnest('{rt_customer,rt_invoice,rt_types,rt_pos,rt_check,rt_wide,rt_missing,rt_nokey,rt_textkey,rt_old,rt_bulk,rt_gen}'::regclass[]) t;
DROP TABLE rt_invoice, rt_customer, rt_types, rt_pos, rt_check, rt_wide, rt_missing, rt_nokey, rt_textkey, rt_old,
           rt_untracked, rt_bulk, rt_gen;
DROP FUNCTION rt_show(jsonb, bigint);
DROP PROCEDURE rt_server(text, text, text);
DROP DATABASE regress_repl_target;
