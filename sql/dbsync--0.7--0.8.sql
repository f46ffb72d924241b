-- dbsync 0.7 -> 0.8: the connector's apply, mapping by mapping.
--
-- 0.7 applied a window of versions across every mapping at once. Staged records hold each record's
-- last state, so a line whose invoice changed after it came before its invoice and waited for it as
-- a 'reference' checkpoint (29 % of the records of bench/connector.sh). Now each mapping applies its
-- whole backlog in dependency order (parents first), and deletes follow once every mapping's
-- upserts are through, children first. Also: bindings are looked up record by record (0.7 hashed
-- every binding of the mapping for each window), and bindings and checkpoints no longer carry a
-- foreign key to their mapping (one check per row written; a trigger removes them with it).
\echo Use "ALTER EXTENSION dbsync UPDATE TO '0.8'" to load this file. \quit

-- Upserts of staged records up to this version are applied; applied_version (deletes too) follows.
ALTER TABLE dbsync.mapping ADD COLUMN upserted_version bigint NOT NULL DEFAULT 0;
UPDATE dbsync.mapping SET upserted_version = applied_version;
ALTER TABLE dbsync.mapping ADD CHECK (upserted_version >= applied_version);

-- The external ids (code:, ext:) of the change a record's staged state comes from ('{}' for a record
-- of the initial load; NULL for records staged before 0.8), for its binding.
ALTER TABLE dbsync.record ADD COLUMN external_ids text[];

-- The apply's windows: one evidence's records by version; deleted ones alone for the delete pass.
DROP INDEX dbsync.record_version_idx;
CREATE INDEX record_evidence_version_idx ON dbsync.record (subscription_id, evidence, version);
CREATE INDEX record_deleted_idx ON dbsync.record (subscription_id, evidence, version) WHERE deleted;

-- Bindings by code (code: references): code first, so that a lookup by mapping and remote id can
-- only take the primary key (with mapping_id first, the planner sometimes took this index and
-- filtered every binding of the mapping); records without a code stay out of it.
DROP INDEX dbsync.binding_code_idx;
CREATE INDEX binding_code_idx ON dbsync.binding (code, mapping_id) WHERE code IS NOT NULL;

ALTER TABLE dbsync.binding DROP CONSTRAINT binding_mapping_id_fkey;
ALTER TABLE dbsync.checkpoint DROP CONSTRAINT checkpoint_mapping_id_fkey;

-- A mapping's bindings and checkpoints go with it (also when its subscription is dropped).
CREATE FUNCTION dbsync.mapping_forget()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM dbsync.binding b USING gone g WHERE b.mapping_id = g.id;
    DELETE FROM dbsync.checkpoint c USING gone g WHERE c.mapping_id = g.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER mapping_forget AFTER DELETE ON dbsync.mapping REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION dbsync.mapping_forget();
REVOKE ALL ON FUNCTION dbsync.mapping_forget() FROM PUBLIC;

-- Internal: whether listeners wait for the mapping's applied records (they get events then).
CREATE FUNCTION dbsync.map_has_listeners(m dbsync.mapping)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM dbsync.listener l WHERE l.subscription_id = m.subscription_id AND l.evidence = m.evidence);
$$;

-- Internal: the statement that applies staged records of a mapping: those with a version after $3
-- and up to $2, of the ids $1 (NULL: all of them). It returns (changed rows, inserted, waiting on references, listener events).
-- Upserts insert unbound records (new key first, so the binding knows it) and update bound ones; a
-- record whose reference is not bound yet becomes a 'reference' checkpoint instead.
CREATE OR REPLACE FUNCTION dbsync.map_upsert_sql(m dbsync.mapping, with_events boolean)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tgt text := m.target::text;
    key_type text := dbsync.column_type(m.target, m.key_column);
    key_col text := quote_ident(m.key_column);
    field_of jsonb := '{}';         -- column -> remote field
    ref_of jsonb := '{}';           -- column -> index in the ref arrays
    ref_evs text[] := '{}';
    ref_ids text[] := '{}';
    ref_codes text[] := '{}';
    ref_wants text[] := '{}';
    ref_keys text[] := '{}';
    ref_bound text[] := '{}';       -- per reference: not wanted, or bound
    ref_fields text[] := '{}';      -- (index, remote field) pairs, for the checkpoint's message
    ref_map text;                   -- the referenced mapping's id: a constant when the evidence is known
    f record;
    a record;
    n integer := 0;
    expr text;
    field_expr text;
    ins_cols text[] := '{}';
    ins_vals text[] := '{}';
    upd_cols text[] := '{}';
    upd_vals text[] := '{}';
    key_expr text;
    link text;
    ready_cond text;
    waiting_sql text;
BEGIN
    FOR f IN SELECT * FROM jsonb_each_text(m.fields) LOOP
        field_of := field_of || jsonb_build_object(f.value, f.key);
    END LOOP;
    FOR f IN SELECT key, value->>'column' AS col, value->>'evidence' AS ev FROM jsonb_each(dbsync.map_refs(m)) ORDER BY key LOOP
        n := n + 1;
        ref_of := ref_of || jsonb_build_object(f.col, n);
        link := format('(r.payload->>%L)', f.key || '@ref');
        ref_evs := ref_evs || format('coalesce(%L, substring(%s FROM ''^/c/[^/]+/([^/]+)/''))', f.ev, link);
        ref_ids := ref_ids || format('coalesce(substring(%1$s FROM ''/([0-9]+)\.json$'')::bigint, '
                                     'CASE WHEN r.payload->>%2$L ~ ''^[0-9]{1,18}$'' THEN (r.payload->>%2$L)::bigint END)',
                                     link, f.key);
        ref_codes := ref_codes || format('CASE WHEN r.payload->>%1$L LIKE ''code:%%'' THEN substr(r.payload->>%1$L, 6) END',
                                         f.key);
        ref_wants := ref_wants || format('nullif(r.payload->>%L, '''')', f.key);
        ref_bound := ref_bound || format('(s.ref_wants[%1$s] IS NULL OR s.ref_keys[%1$s] IS NOT NULL)', n);
        ref_fields := ref_fields || format('(%s, %L)', n, f.key);
        ref_map := CASE WHEN f.ev IS NULL THEN
            format('(SELECT min(m2.id) FROM dbsync.mapping m2 WHERE m2.subscription_id = %s AND m2.evidence = s.ref_evs[%s])',
                   m.subscription_id, n)
            ELSE coalesce((SELECT min(m2.id)::text FROM dbsync.mapping m2
                            WHERE m2.subscription_id = m.subscription_id AND m2.evidence = f.ev), 'NULL') END;
        -- The bound key: by remote id when the record says it, else by code, in the evidence's first mapping.
        ref_keys := ref_keys || format(
            '(SELECT coalesce((SELECT b2.local_key FROM dbsync.binding b2 WHERE b2.mapping_id = m2.id '
            'AND b2.remote_id = s.ref_ids[%1$s] AND b2.local_key IS NOT NULL), (SELECT b2.local_key FROM dbsync.binding b2 '
            'WHERE b2.mapping_id = m2.id AND s.ref_ids[%1$s] IS NULL AND b2.code = s.ref_codes[%1$s] '
            'AND b2.local_key IS NOT NULL LIMIT 1)) FROM (SELECT %2$s::integer AS id) m2)',
            n, ref_map);
    END LOOP;
    ready_cond := array_to_string(ref_bound, ' AND ');
    IF n = 0 THEN
        ready_cond := 'true';
        waiting_sql := 'SELECT 1 WHERE false';
    ELSE
        waiting_sql := format($w$
    INSERT INTO dbsync.checkpoint AS c (mapping_id, evidence, remote_id, version, reason, error, payload,
                                        waiting_evidence, waiting_id, waiting_code)
    SELECT %1$s, %2$L, s.record_id, s.version, 'reference',
           format('reference "%%s" to %%s %%s is not bound yet', w.field, coalesce(s.ref_evs[w.i], '<unknown evidence>'),
                  coalesce(s.ref_ids[w.i]::text, s.ref_wants[w.i])),
           s.payload, s.ref_evs[w.i], s.ref_ids[w.i], s.ref_codes[w.i]
      FROM resolved s
      CROSS JOIN LATERAL (SELECT v.i, v.field FROM (VALUES %3$s) v(i, field)
                           WHERE s.ref_wants[v.i] IS NOT NULL AND s.ref_keys[v.i] IS NULL ORDER BY v.i LIMIT 1) w
     WHERE NOT s.is_ready
    ON CONFLICT (mapping_id, remote_id) WHERE NOT reviewed DO UPDATE
       SET version = excluded.version, reason = excluded.reason, sqlstate = NULL, error = excluded.error,
           payload = excluded.payload, waiting_evidence = excluded.waiting_evidence,
           waiting_id = excluded.waiting_id, waiting_code = excluded.waiting_code,
           attempts = c.attempts + 1, updated_at = now()
    RETURNING 1$w$, m.id, m.evidence, array_to_string(ref_fields, ', '));
    END IF;

    FOR a IN SELECT att.attname, format_type(att.atttypid, NULL) AS typ, att.attidentity,
                    pg_get_expr(d.adbin, d.adrelid) AS def
               FROM pg_attribute att LEFT JOIN pg_attrdef d ON d.adrelid = att.attrelid AND d.adnum = att.attnum
              WHERE att.attrelid = m.target AND att.attnum > 0 AND NOT att.attisdropped AND att.attgenerated = ''
              ORDER BY att.attnum LOOP
        field_expr := NULL;
        IF field_of ? a.attname THEN
            field_expr := format('(s.payload->>%L)::%s', field_of->>a.attname, a.typ);
        ELSIF ref_of ? a.attname THEN
            field_expr := format('s.ref_keys[%s]::%s', ref_of->>a.attname, a.typ);
        ELSIF a.attname = m.mark_column THEN
            field_expr := CASE WHEN a.typ = 'boolean' THEN 'false' ELSE format('NULL::%s', a.typ) END;
        END IF;
        IF a.attname = m.key_column THEN
            -- The key of a new row, known before the insert so that its binding can name it.
            key_expr := coalesce(field_expr,
                                 CASE WHEN a.attidentity <> '' THEN
                                      format('nextval(pg_get_serial_sequence(%L, %L))', tgt, a.attname) END,
                                 a.def) || '::text';
            ins_cols := ins_cols || key_col;
            ins_vals := ins_vals || format('s.new_key::%s', key_type);
            IF field_expr IS NOT NULL THEN
                upd_cols := upd_cols || key_col;
                upd_vals := upd_vals || field_expr;
            END IF;
            CONTINUE;
        END IF;
        IF m.transform IS NOT NULL THEN
            -- What the transform returns wins over fields; a column it leaves out keeps its value.
            expr := format('CASE WHEN s.t ? %L THEN (s.t->>%L)::%s ELSE %%s END', a.attname, a.attname, a.typ);
            IF a.attidentity = 'a' THEN
                CONTINUE;
            END IF;
            ins_cols := ins_cols || quote_ident(a.attname);
            ins_vals := ins_vals || format(expr, coalesce(field_expr, a.def, 'NULL'));
            upd_cols := upd_cols || quote_ident(a.attname);
            upd_vals := upd_vals || format(expr, coalesce(field_expr, 'x.' || quote_ident(a.attname)));
        ELSIF field_expr IS NOT NULL THEN
            ins_cols := ins_cols || quote_ident(a.attname);
            ins_vals := ins_vals || field_expr;
            upd_cols := upd_cols || quote_ident(a.attname);
            upd_vals := upd_vals || field_expr;
        END IF;
    END LOOP;

    -- Each record's state is computed once (resolved): whether its references are bound (is_ready)
    -- and its key; ready is a view of it. The binding is looked up record by record (OFFSET 0 keeps
    -- the lookup a nested loop: a hash join would read every binding of the mapping for each
    -- window); a record without one gets it by a plain INSERT (rounds of a subscription never
    -- overlap). The external ids are those of the change the staged state comes from (looked up
    -- for records staged before 0.8).
    RETURN format($sql$
WITH resolved AS MATERIALIZED (
    SELECT s.*, %18$s AS is_ready, CASE WHEN %18$s THEN coalesce(s.old_key, %10$s) END AS new_key
      FROM (SELECT s.*, ARRAY[%9$s]::text[] AS ref_keys
              FROM (SELECT r.record_id, r.version, r.payload, b.local_key AS old_key, b.version AS bound_version,
                           %1$s AS t, ARRAY[%2$s]::text[] AS ref_evs, ARRAY[%3$s]::bigint[] AS ref_ids,
                           ARRAY[%4$s]::text[] AS ref_codes, ARRAY[%5$s]::text[] AS ref_wants,
                           coalesce(r.external_ids, (SELECT c.external_ids FROM dbsync.change c
                                                      WHERE c.subscription_id = r.subscription_id AND c.version = r.version
                                                        AND c.record_id = r.record_id)) AS ext_ids
                      FROM dbsync.record r
                      LEFT JOIN LATERAL (SELECT b.local_key, b.version FROM dbsync.binding b
                                          WHERE b.mapping_id = %6$s AND b.remote_id = r.record_id OFFSET 0) b ON true
                     WHERE r.subscription_id = %7$s AND r.evidence = %8$L AND r.version > $3 AND r.version <= $2
                       AND ($1 IS NULL OR r.record_id = ANY ($1)) AND NOT r.deleted AND r.payload IS NOT NULL
                       AND (b.version IS NULL OR b.version < r.version)
                    OFFSET 0) s
            OFFSET 0) s
), ready AS NOT MATERIALIZED (
    SELECT s.* FROM resolved s WHERE s.is_ready
), upd AS (
    UPDATE %11$s AS x SET (%12$s) = ROW(%13$s)
      FROM ready s WHERE s.old_key IS NOT NULL AND x.%14$s = s.old_key::%15$s
    RETURNING s.record_id
), ins AS (
    INSERT INTO %11$s AS x (%16$s) OVERRIDING SYSTEM VALUE
    SELECT %17$s FROM ready s WHERE s.record_id NOT IN (SELECT record_id FROM upd)
    RETURNING 1
), bind AS (
    INSERT INTO dbsync.binding (mapping_id, remote_id, evidence, code, external_ids, local_key, version)
    SELECT %6$s, s.record_id, %8$L, s.payload->>'kod', s.ext_ids, s.new_key, s.version
      FROM ready s WHERE s.bound_version IS NULL
), rebind AS (
    UPDATE dbsync.binding b SET code = s.payload->>'kod', external_ids = s.ext_ids, local_key = s.new_key,
           version = s.version, deleted = false, updated_at = now()
      FROM ready s WHERE s.bound_version IS NOT NULL AND b.mapping_id = %6$s AND b.remote_id = s.record_id
), closed AS (
    UPDATE dbsync.checkpoint c SET reviewed = true, resolution = 'applied', updated_at = now()
     WHERE c.mapping_id = %6$s AND NOT c.reviewed AND c.remote_id IN (SELECT record_id FROM ready)
), waiting AS (%19$s
)
SELECT (SELECT count(*) FROM ready)::bigint, (SELECT count(*) FROM ins)::bigint, (SELECT count(*) FROM waiting)::bigint,
       %20$s
$sql$,
        CASE WHEN m.transform IS NULL THEN 'NULL::jsonb' ELSE format('%s(r.payload)', m.transform::regproc) END,
        array_to_string(ref_evs, ', '), array_to_string(ref_ids, ', '),
        array_to_string(ref_codes, ', '), array_to_string(ref_wants, ', '),
        m.id, m.subscription_id, m.evidence,
        array_to_string(ref_keys, ', '),
        key_expr,
        tgt, array_to_string(upd_cols, ', '),
        CASE WHEN cardinality(upd_cols) = 0 THEN 'x.' || key_col ELSE array_to_string(upd_vals, ', ') END,
        key_col, key_type,
        array_to_string(ins_cols, ', '), array_to_string(ins_vals, ', '),
        ready_cond, waiting_sql,
        CASE WHEN with_events THEN
            'coalesce((SELECT jsonb_agg(jsonb_build_object(''operation'', CASE WHEN s.old_key IS NULL OR s.record_id NOT IN '
            '(SELECT record_id FROM upd) THEN ''insert'' ELSE ''update'' END, ''remote_id'', s.record_id, '
            '''key'', s.new_key, ''version'', s.version, ''payload'', s.payload) ORDER BY s.version, s.record_id) '
            'FROM ready s), ''[]'')'
        ELSE 'NULL::jsonb' END);
END
$$;

-- Internal: the statement that applies deleted records of a mapping (same parameters and result).
CREATE OR REPLACE FUNCTION dbsync.map_delete_sql(m dbsync.mapping, with_events boolean)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key_type text := dbsync.column_type(m.target, m.key_column);
    action text;
BEGIN
    action := CASE m.on_delete
        WHEN 'delete' THEN format('DELETE FROM %s x USING src s WHERE s.old_key IS NOT NULL AND x.%s = s.old_key::%s '
                                  'RETURNING s.record_id', m.target, quote_ident(m.key_column), key_type)
        WHEN 'mark' THEN format('UPDATE %s x SET %s = %s FROM src s WHERE s.old_key IS NOT NULL AND x.%s = s.old_key::%s '
                                'RETURNING s.record_id', m.target, quote_ident(m.mark_column),
                                CASE WHEN dbsync.column_type(m.target, m.mark_column) = 'boolean' THEN 'true' ELSE 'now()' END,
                                quote_ident(m.key_column), key_type)
        ELSE 'SELECT s.record_id FROM src s WHERE false' END;
    RETURN format($sql$
WITH src AS MATERIALIZED (
    SELECT r.record_id, r.version, r.payload, b.local_key AS old_key
      FROM dbsync.record r
      JOIN LATERAL (SELECT b.local_key, b.version FROM dbsync.binding b
                     WHERE b.mapping_id = %1$s AND b.remote_id = r.record_id OFFSET 0) b ON true
     WHERE r.subscription_id = %2$s AND r.evidence = %3$L AND r.version > $3 AND r.version <= $2
       AND ($1 IS NULL OR r.record_id = ANY ($1)) AND r.deleted AND b.version < r.version
), act AS (
    %4$s
), bind AS (
    UPDATE dbsync.binding b SET deleted = true, version = s.version, updated_at = now(),
           local_key = CASE WHEN %5$L = 'delete' THEN NULL ELSE b.local_key END
      FROM src s WHERE b.mapping_id = %1$s AND b.remote_id = s.record_id
)
SELECT (SELECT count(*) FROM act)::bigint, 0::bigint, 0::bigint, %6$s
$sql$,
        m.id, m.subscription_id, m.evidence, action, m.on_delete,
        CASE WHEN with_events THEN
            'coalesce((SELECT jsonb_agg(jsonb_build_object(''operation'', ''delete'', ''remote_id'', s.record_id, '
            '''key'', s.old_key, ''version'', s.version, ''payload'', s.payload) ORDER BY s.version, s.record_id) '
            'FROM src s' || CASE WHEN m.on_delete = 'ignore' THEN '' ELSE ' WHERE s.record_id IN (SELECT record_id FROM act)' END
            || '), ''[]'')'
        ELSE 'NULL::jsonb' END);
END
$$;

-- Internal: applies the staged records of a mapping with a version after "after" and up to "upto",
-- of the ids given (NULL: all of them); a failing set is split in halves until the failing records
-- are alone, and each of those becomes an 'error' checkpoint. Returns {applied, inserted, waiting, failed}.
DROP FUNCTION dbsync.map_apply_ids(dbsync.mapping, text, bigint[], bigint, boolean);
-- JIT is off: a window is a few thousand records, and compiling its statement cost more than the
-- whole apply once the planner's estimate crossed jit_optimize_above_cost (1.1 s per window of
-- 10,000 lines seen in bench/connector.sh at 1M).
CREATE FUNCTION dbsync.map_apply_ids(m dbsync.mapping, stmt text, ids bigint[], after bigint, upto bigint,
                                     deleting boolean)
RETURNS bigint[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    applied bigint;
    inserted bigint;
    waiting bigint;
    events jsonb;
    ev jsonb;
    context jsonb;
    calls text[];
    call text;
    half integer;
    a bigint[];
    b bigint[];
    state text;
    msg text;
    detail text;
BEGIN
    IF cardinality(ids) = 0 THEN
        RETURN ARRAY[0, 0, 0, 0];
    END IF;
    BEGIN
        EXECUTE stmt INTO applied, inserted, waiting, events USING ids, upto, after;
        IF events IS NOT NULL THEN
            -- What every event of this mapping says, and its listeners, looked up once.
            SELECT jsonb_build_object('server', s.server, 'evidence', m.evidence, 'table', m.target::text),
                   array_agg(format('SELECT %s($1)', l.function::regproc) ORDER BY l.id)
              INTO context, calls
              FROM dbsync.subscription s JOIN dbsync.listener l ON l.subscription_id = s.id AND l.evidence = m.evidence
             WHERE s.id = m.subscription_id
             GROUP BY s.server;
            FOR ev IN SELECT value FROM jsonb_array_elements(events) LOOP
                FOREACH call IN ARRAY coalesce(calls, '{}') LOOP
                    EXECUTE call USING ev || context;
                END LOOP;
            END LOOP;
        END IF;
        RETURN ARRAY[applied, inserted, waiting, 0];
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
        -- Not the record's fault: the whole apply fails and runs again.
        IF left(state, 2) IN ('40', '53', '54', '55', '57', '58', 'XX') THEN
            RAISE;
        END IF;
    END;
    IF ids IS NULL THEN
        -- The whole window failed: its records, to split.
        SELECT array_agg(r.record_id ORDER BY r.version) INTO ids FROM dbsync.record r
         WHERE r.subscription_id = m.subscription_id AND r.evidence = m.evidence AND r.deleted = deleting
           AND r.version > after AND r.version <= upto;
    END IF;
    IF cardinality(ids) > 1 THEN
        half := cardinality(ids) / 2;
        a := dbsync.map_apply_ids(m, stmt, ids[1:half], after, upto, deleting);
        b := dbsync.map_apply_ids(m, stmt, ids[half + 1:], after, upto, deleting);
        RETURN ARRAY[a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4]];
    END IF;
    INSERT INTO dbsync.checkpoint AS c (mapping_id, evidence, remote_id, version, reason, sqlstate, error, payload)
    SELECT m.id, m.evidence, r.record_id, r.version, 'error', state,
           msg || CASE WHEN detail IS NULL OR detail = '' THEN '' ELSE ' (' || detail || ')' END, r.payload
      FROM dbsync.record r
     WHERE r.subscription_id = m.subscription_id AND r.evidence = m.evidence AND r.record_id = ids[1]
    ON CONFLICT (mapping_id, remote_id) WHERE NOT reviewed DO UPDATE
       SET version = excluded.version, reason = 'error', sqlstate = excluded.sqlstate, error = excluded.error,
           payload = excluded.payload, waiting_evidence = NULL, waiting_id = NULL, waiting_code = NULL,
           attempts = c.attempts + 1, updated_at = now();
    RETURN ARRAY[0, 0, 0, 1];
END
$$;

-- Internal: one apply round of a subscription in the caller's transaction, about max_records staged
-- records (whole versions): first every mapping's upserts in dependency order, each through its whole
-- backlog below the cursor (so a staged parent is bound before its children whatever the order of
-- their versions); once all are through, the deletes, children first; then records whose awaited
-- reference got bound. The staged records and the progress that covers them commit together;
-- rounds of one subscription never overlap.
CREATE OR REPLACE FUNCTION dbsync.map_apply_round(sub_id integer, max_records integer DEFAULT 10000)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub dbsync.subscription;
    maps dbsync.mapping[];
    m dbsync.mapping;
    upto bigint;
    lo bigint;
    hi bigint;
    n bigint;
    ids bigint[];
    res bigint[];
    tot bigint[] := ARRAY[0, 0, 0, 0, 0];   -- updated, inserted, deleted, waiting, failed
    budget bigint := greatest(max_records, 1);
    stmt text;
    more boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('dbsync.map_apply'), sub_id);
    SELECT * INTO sub FROM dbsync.subscription WHERE id = sub_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', 0, 'more', false);
    END IF;
    SELECT array_agg(o) INTO maps FROM dbsync.map_order(sub_id) o;
    IF maps IS NULL THEN
        RETURN jsonb_build_object('applied', 0, 'more', false);
    END IF;
    SELECT min(x.applied_version) INTO lo FROM unnest(maps) x;
    -- Staged records are final below the cursor, the next version to read (the initial load stamps
    -- its records one below the cursor, and they are final once the load is over).
    IF sub.phase = 'sync' THEN
        upto := sub.cursor_version - 1;
    END IF;

    -- 1. Upserts, referenced mappings first.
    FOR i IN 1..cardinality(maps) LOOP
        m := maps[i];
        stmt := NULL;
        WHILE m.upserted_version < upto AND budget > 0 LOOP
            -- The window: the next budget records, and any others of its last version.
            SELECT count(*), max(w.version) INTO n, hi
              FROM (SELECT r.version FROM dbsync.record r
                     WHERE r.subscription_id = sub_id AND r.evidence = m.evidence
                       AND r.version > m.upserted_version AND r.version <= upto
                     ORDER BY r.version LIMIT budget) w;
            IF n < budget THEN
                hi := upto;
            END IF;
            IF n > 0 THEN
                stmt := coalesce(stmt, dbsync.map_upsert_sql(m, dbsync.map_has_listeners(m)));
                res := dbsync.map_apply_ids(m, stmt, NULL, m.upserted_version, hi, false);
                tot := ARRAY[tot[1] + res[1] - res[2], tot[2] + res[2], tot[3], tot[4] + res[3], tot[5] + res[4]];
            END IF;
            budget := budget - greatest(n, 1);
            m.upserted_version := hi;
        END LOOP;
        IF m.upserted_version <> maps[i].upserted_version THEN
            UPDATE dbsync.mapping SET upserted_version = m.upserted_version WHERE id = m.id;
            maps[i] := m;
        END IF;
    END LOOP;

    -- 2. Deletes once every mapping's upserts are through, referring mappings first.
    IF upto IS NOT NULL AND NOT EXISTS (SELECT FROM unnest(maps) x WHERE x.upserted_version < upto) THEN
        FOR i IN REVERSE cardinality(maps)..1 LOOP
            m := maps[i];
            stmt := NULL;
            WHILE m.applied_version < m.upserted_version AND budget > 0 LOOP
                SELECT count(*), max(w.version) INTO n, hi
                  FROM (SELECT r.version FROM dbsync.record r
                         WHERE r.subscription_id = sub_id AND r.evidence = m.evidence AND r.deleted
                           AND r.version > m.applied_version AND r.version <= m.upserted_version
                         ORDER BY r.version LIMIT budget) w;
                IF n < budget THEN
                    hi := m.upserted_version;
                END IF;
                IF n > 0 THEN
                    stmt := coalesce(stmt, dbsync.map_delete_sql(m, dbsync.map_has_listeners(m)));
                    res := dbsync.map_apply_ids(m, stmt, NULL, m.applied_version, hi, true);
                    tot := ARRAY[tot[1], tot[2], tot[3] + res[1], tot[4], tot[5] + res[4]];
                    -- A record gone remotely that never reached its row: its open checkpoint has nothing left to apply.
                    UPDATE dbsync.checkpoint c SET reviewed = true, resolution = 'superseded', updated_at = now()
                      FROM dbsync.record r
                     WHERE c.mapping_id = m.id AND NOT c.reviewed
                       AND r.subscription_id = sub_id AND r.evidence = m.evidence AND r.record_id = c.remote_id
                       AND r.deleted AND r.version > m.applied_version AND r.version <= hi
                       AND NOT EXISTS (SELECT FROM dbsync.binding b WHERE b.mapping_id = m.id AND b.remote_id = c.remote_id
                                          AND b.local_key IS NOT NULL AND NOT b.deleted);
                END IF;
                budget := budget - greatest(n, 1);
                m.applied_version := hi;
            END LOOP;
            IF m.applied_version <> maps[i].applied_version THEN
                UPDATE dbsync.mapping SET applied_version = m.applied_version, last_applied_at = now() WHERE id = m.id;
                maps[i] := m;
            END IF;
        END LOOP;
    END IF;

    -- 3. Records that wait for a reference that is bound now.
    FOREACH m IN ARRAY maps LOOP
        CONTINUE WHEN m.refs = '{}';
        SELECT array_agg(c.remote_id ORDER BY c.version) INTO ids FROM dbsync.checkpoint c
         WHERE c.mapping_id = m.id AND NOT c.reviewed AND c.reason = 'reference'
           -- Two lookups, each on an index (one OR-ed condition scanned every binding per checkpoint).
           AND (EXISTS (SELECT FROM dbsync.mapping m2 JOIN dbsync.binding b ON b.mapping_id = m2.id
                         WHERE m2.subscription_id = sub_id AND m2.evidence = c.waiting_evidence
                           AND b.remote_id = c.waiting_id AND b.local_key IS NOT NULL)
                OR (c.waiting_id IS NULL
                    AND EXISTS (SELECT FROM dbsync.mapping m2 JOIN dbsync.binding b ON b.mapping_id = m2.id
                                 WHERE m2.subscription_id = sub_id AND m2.evidence = c.waiting_evidence
                                   AND b.code = c.waiting_code AND b.local_key IS NOT NULL)));
        IF ids IS NOT NULL THEN
            res := dbsync.map_apply_ids(m, dbsync.map_upsert_sql(m, dbsync.map_has_listeners(m)), ids,
                                        0, m.upserted_version, false);
            tot := ARRAY[tot[1] + res[1] - res[2], tot[2] + res[2], tot[3], tot[4] + res[3], tot[5] + res[4]];
        END IF;
    END LOOP;

    SELECT min(x.applied_version), bool_or(x.upserted_version < upto OR x.applied_version < x.upserted_version)
      INTO hi, more FROM unnest(maps) x;
    IF tot[1] + tot[2] + tot[3] > 0 THEN
        PERFORM pg_notify('dbsync', json_build_object('server', sub.server, 'subscription', sub_id,
                                                      'applied', tot[1] + tot[2] + tot[3], 'version', hi)::text);
    END IF;
    RETURN jsonb_build_object('from_version', lo, 'to_version', hi, 'inserted', tot[2], 'updated', tot[1],
                              'deleted', tot[3], 'waiting', tot[4], 'failed', tot[5], 'more', upto IS NOT NULL AND more);
END
$$;

-- Internal: applies one record's staged state again for a checkpoint; returns the checkpoint's state.
CREATE OR REPLACE FUNCTION dbsync.checkpoint_apply(cp dbsync.checkpoint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m dbsync.mapping;
    rec dbsync.record;
    with_events boolean;
    after dbsync.checkpoint;
BEGIN
    SELECT * INTO m FROM dbsync.mapping WHERE id = cp.mapping_id;
    PERFORM pg_advisory_xact_lock(hashtext('dbsync.map_apply'), m.subscription_id);
    SELECT * INTO rec FROM dbsync.record r
     WHERE r.subscription_id = m.subscription_id AND r.evidence = m.evidence AND r.record_id = cp.remote_id;
    with_events := dbsync.map_has_listeners(m);
    IF rec.record_id IS NULL OR (rec.deleted AND NOT EXISTS (SELECT FROM dbsync.binding b WHERE b.mapping_id = m.id
                                                              AND b.remote_id = cp.remote_id AND NOT b.deleted)) THEN
        -- Gone remotely, never applied: nothing is left to apply.
        UPDATE dbsync.checkpoint SET reviewed = true, resolution = 'superseded', updated_at = now() WHERE id = cp.id;
    ELSE
        PERFORM dbsync.map_apply_ids(m, CASE WHEN rec.deleted THEN dbsync.map_delete_sql(m, with_events)
                                             ELSE dbsync.map_upsert_sql(m, with_events) END,
                                     ARRAY[cp.remote_id], 0, rec.version, rec.deleted);
        -- Applied now, or already by a later change: nothing is left to do.
        UPDATE dbsync.checkpoint SET reviewed = true, resolution = 'applied', updated_at = now()
         WHERE id = cp.id AND NOT reviewed
           AND EXISTS (SELECT FROM dbsync.binding b WHERE b.mapping_id = m.id AND b.remote_id = cp.remote_id
                          AND b.version >= rec.version);
    END IF;
    SELECT * INTO after FROM dbsync.checkpoint WHERE id = cp.id;
    IF after.resolution = 'applied' THEN
        -- Records waiting for this one may go now.
        PERFORM dbsync.map_schedule(m.subscription_id);
    END IF;
    RETURN CASE WHEN after.reviewed THEN after.resolution ELSE after.reason END;
END
$$;
