-- Upgrading from 0.1 gives exactly what a fresh install of the current version has.
CREATE DATABASE regress_dbsync_upgrade;
\c regress_dbsync_upgrade
CREATE EXTENSION dbsync VERSION '0.1';
SELECT extversion FROM pg_extension WHERE extname = 'dbsync';
ALTER EXTENSION dbsync UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'dbsync';
-- Member objects, and the columns of the tables and views, as text.
\set members 'SELECT string_agg(pg_describe_object(classid, objid, objsubid), E''\n'' ORDER BY pg_describe_object(classid, objid, objsubid)) FROM pg_depend WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = ''dbsync'') AND deptype = ''e'''
\set columns 'SELECT string_agg(format(''%s.%s %s %s'', attrelid::regclass, attname, format_type(atttypid, atttypmod), attnotnull), E''\n'' ORDER BY attrelid::regclass::text, attname) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = ''dbsync''::regnamespace AND NOT c.relispartition AND attnum > 0 AND NOT attisdropped'
SELECT (:members) AS upgraded_members, (:columns) AS upgraded_columns \gset
\c contrib_regression
SELECT (:members) = :'upgraded_members' AS same_members, (:columns) = :'upgraded_columns' AS same_columns;
-- (What differs, if anything.)
(SELECT 'only upgraded: ' || c FROM unnest(string_to_array(:'upgraded_columns', E'\n')) c
 EXCEPT SELECT 'only upgraded: ' || c FROM unnest(string_to_array((:columns), E'\n')) c)
UNION ALL
(SELECT 'only fresh: ' || c FROM unnest(string_to_array((:columns), E'\n')) c
 EXCEPT SELECT 'only fresh: ' || c FROM unnest(string_to_array(:'upgraded_columns', E'\n')) c);
SELECT count(*) AS member_objects FROM pg_depend
 WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'dbsync') AND deptype = 'e';
DROP DATABASE regress_dbsync_upgrade;
