/*
 * repl_source.c: what a replication sync reads on the source: its config,
 * the iLog horizon, and the entries after a version, decoded into the text
 * the target's COPY reads. Each function is one step (bg_txn.h); what it
 * returns lives in the sync's memory, not in the step's.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "ilog.h"
#include "repl.h"

/* Runs a statement with SPI and comes back to the caller's memory context. */
static void
spi_run(const char *sql, int nargs, Oid *types, Datum *values, int expect)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, true, 0);

	MemoryContextSwitchTo(cxt);
	if (rc != expect)
		elog(ERROR, "dbsync: replication could not read its config: %s", SPI_result_code_string(rc));
}

static char *
spi_text(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/* Ranks the tables so that a table comes after the tables its foreign keys reference. */
static void
rank_tables(ReplSync *rs)
{
	int			n = rs->ntables;
	Oid		   *relids = palloc(sizeof(Oid) * n);
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *refs = palloc0(sizeof(bool) * n * n);	/* refs[child * n + parent] */
	bool	   *placed = palloc0(sizeof(bool) * n);
	ArrayType  *arr;
	int			next = 0;

	for (int i = 0; i < n; i++)
		elems[i] = ObjectIdGetDatum(relids[i] = rs->tables[i].relid);
	arr = construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT);
	spi_run("SELECT conrelid, confrelid FROM pg_catalog.pg_constraint WHERE contype = 'f' "
			"AND conrelid = ANY ($1) AND confrelid = ANY ($1) AND conrelid <> confrelid",
			1, (Oid[]) {OIDARRAYOID}, (Datum[]) {PointerGetDatum(arr)}, SPI_OK_SELECT);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		Oid			child = atooid(spi_text(r, 1));
		Oid			parent = atooid(spi_text(r, 2));
		int			c = -1,
					p = -1;

		for (int i = 0; i < n; i++)
		{
			if (relids[i] == child)
				c = i;
			if (relids[i] == parent)
				p = i;
		}
		if (c >= 0 && p >= 0)
			refs[c * n + p] = true;
	}

	rs->by_rank = palloc(sizeof(int) * n);
	while (next < n)
	{
		bool		progress = false;

		for (int i = 0; i < n; i++)
		{
			bool		ready = !placed[i];

			for (int p = 0; ready && p < n; p++)
				if (refs[i * n + p] && !placed[p])
					ready = false;
			if (ready)
			{
				placed[i] = true;
				rs->tables[i].rank = next;
				rs->by_rank[next++] = i;
				progress = true;
			}
		}
		if (!progress)
		{
			/* a cycle of references: the rest in config order */
			for (int i = 0; i < n; i++)
				if (!placed[i])
				{
					placed[i] = true;
					rs->tables[i].rank = next;
					rs->by_rank[next++] = i;
				}
		}
	}
}

void
repl_source_load(TxnScope *tx, ReplSync *rs, DbsyncServer **srv, bool *superuser)
{
	Datum		key = Int64GetDatum(rs->target_key);

	txn_begin(tx);
	spi_run("SELECT c.key, c.name, c.positive_keys_only, c.owner, t.server, t.stream, t.start_version, "
			"t.delivered_version FROM dbsync.replication_config c "
			"JOIN dbsync.replication_target t ON t.config_key = c.key WHERE t.key = $1",
			1, (Oid[]) {INT8OID}, &key, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("dbsync: replication target " INT64_FORMAT " does not exist", rs->target_key)));
	rs->config_key = pg_strtoint64(spi_text(0, 1));
	rs->config_name = spi_text(0, 2);
	rs->positive_keys_only = strcmp(spi_text(0, 3), "t") == 0;
	rs->owner = atooid(spi_text(0, 4));
	rs->server = spi_text(0, 5);
	rs->stream = spi_text(0, 6);
	rs->start_version = pg_strtoint64(spi_text(0, 7));
	rs->applied_before = rs->applied_after = pg_strtoint64(spi_text(0, 8));

	/* the tables, with the key column of one-integer keys (for positive_keys_only) */
	spi_run("SELECT ct.relid, it.table_name, "
			"(SELECT quote_ident(a.attname) FROM pg_catalog.pg_index i "
			"  JOIN pg_catalog.pg_class c ON c.oid = i.indrelid "
			"  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
			" WHERE i.indrelid = ct.relid AND i.indnkeyatts = 1 "
			"   AND CASE c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident "
			"       ELSE false END), "
			"pg_catalog.has_table_privilege($2, ct.relid, 'SELECT') IS NOT FALSE "
			"FROM dbsync.replication_config_table ct JOIN dbsync.ilog_table it ON it.relid = ct.relid "
			"WHERE ct.config_key = $1 ORDER BY ct.table_name",
			2, (Oid[]) {INT8OID, OIDOID}, (Datum[]) {Int64GetDatum(rs->config_key), ObjectIdGetDatum(rs->owner)},
			SPI_OK_SELECT);
	rs->ntables = (int) SPI_processed;
	rs->tables = palloc0(sizeof(ReplTable) * Max(rs->ntables, 1));
	for (int i = 0; i < rs->ntables; i++)
	{
		rs->tables[i].relid = atooid(spi_text(i, 1));
		rs->tables[i].name = spi_text(i, 2);
		rs->tables[i].key_column = spi_text(i, 3);
		/* (a dropped table's remaining entries are still sent) */
		if (strcmp(spi_text(i, 4), "t") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("dbsync: the owner of replication config \"%s\" may no longer read %s",
							rs->config_name, rs->tables[i].name)));
	}
	rank_tables(rs);

	*srv = dbsync_server_get_as(rs->owner, rs->server, "postgres");
	*superuser = superuser_arg(rs->owner);
	txn_commit(tx);
}

int64
repl_source_horizon(TxnScope *tx)
{
	int64		horizon;

	txn_begin(tx);
	horizon = ilog_horizon_compute(ilog_relation("ilog_version_seq"));
	txn_commit(tx);
	return horizon;
}

/* The config's tables as an oid[] Datum. */
static Datum
table_oids(ReplSync *rs)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(rs->ntables, 1));

	for (int i = 0; i < rs->ntables; i++)
		elems[i] = ObjectIdGetDatum(rs->tables[i].relid);
	return PointerGetDatum(construct_array(elems, rs->ntables, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
}

/*
 * Whether a transaction with entries in (after, horizon) also wrote at or
 * above the horizon. Usually none did, and this is far cheaper than the full
 * search below: the entries above the horizon are few, and the range is only
 * scanned for their transactions (not grouped by transaction).
 */
static bool
range_spanned(Datum *args, Snapshot snap)
{
	static SPIPlanPtr above_plan;
	static SPIPlanPtr span_plan;
	Datum		span_args[4];
	bool		isnull;
	Datum		xids;
	int			rc;

	if (above_plan == NULL)
	{
		above_plan = SPI_prepare("SELECT array_agg(DISTINCT xid) FROM dbsync.ilog WHERE version >= $2 AND tbl = ANY ($3)",
								 3, (Oid[]) {INT8OID, INT8OID, OIDARRAYOID});
		span_plan = SPI_prepare("SELECT EXISTS (SELECT FROM dbsync.ilog WHERE version > $1 AND version < $2 "
								"AND tbl = ANY ($3) AND xid = ANY ($4))",
								4, (Oid[]) {INT8OID, INT8OID, OIDARRAYOID, INT8ARRAYOID});
		if (above_plan == NULL || span_plan == NULL)
			elog(ERROR, "dbsync: could not prepare the replication cut: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(above_plan);
		SPI_keepplan(span_plan);
	}
	rc = SPI_execute_snapshot(above_plan, args, NULL, snap, InvalidSnapshot, true, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "dbsync: could not find where the replication range ends");
	xids = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return false;
	memcpy(span_args, args, sizeof(Datum) * 3);
	span_args[3] = PointerGetDatum(DatumGetArrayTypePCopy(xids));
	rc = SPI_execute_snapshot(span_plan, span_args, NULL, snap, InvalidSnapshot, true, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "dbsync: could not find where the replication range ends");
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * The last version a sync may deliver: below the horizon, and not inside a
 * transaction. A transaction that wrote before the horizon and again after it
 * (a younger one still open in between) would otherwise reach the target in
 * halves. Among the versions where a range may end (just before some
 * transaction's first entry, or just below the horizon), the highest one that
 * no transaction of the config's tables spans. When no transaction spans the
 * horizon, that is just below it.
 */
int64
repl_source_cut(TxnScope *tx, ReplSync *rs, int64 after, int64 horizon)
{
	static SPIPlanPtr plan;
	Datum		args[3];
	Snapshot	snap;
	bool		isnull;
	Datum		d;
	int64		cut;
	int			rc;

	txn_begin(tx);
	if (plan == NULL)
	{
		plan = SPI_prepare("WITH x AS (SELECT min(version) AS lo, max(version) AS hi FROM dbsync.ilog "
						   "           WHERE version > $1 AND tbl = ANY ($3) GROUP BY xid), "
						   "w AS (SELECT lo, max(hi) OVER (ORDER BY lo ROWS BETWEEN UNBOUNDED PRECEDING "
						   "                                AND 1 PRECEDING) AS hi_before FROM x) "
						   "SELECT max(e) FROM (SELECT lo - 1 AS e FROM w WHERE lo < $2 AND "
						   "                    (hi_before IS NULL OR hi_before < lo) "
						   "                    UNION ALL "
						   "                    SELECT $2 - 1 WHERE NOT EXISTS "
						   "                    (SELECT FROM x WHERE lo < $2 AND hi >= $2)) c",
						   3, (Oid[]) {INT8OID, INT8OID, OIDARRAYOID});
		if (plan == NULL)
			elog(ERROR, "dbsync: could not prepare the replication cut: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	args[0] = Int64GetDatum(after);
	args[1] = Int64GetDatum(horizon);
	args[2] = table_oids(rs);
	/* a snapshot taken after the horizon sees every transaction below it */
	snap = RegisterSnapshot(GetLatestSnapshot());
	if (!range_spanned(args, snap))
	{
		UnregisterSnapshot(snap);
		MemoryContextSwitchTo(tx->work_cxt);
		cut = Max(after, horizon - 1);
		txn_commit(tx);
		return cut;
	}
	rc = SPI_execute_snapshot(plan, args, NULL, snap, InvalidSnapshot, true, false, 1);
	UnregisterSnapshot(snap);
	MemoryContextSwitchTo(tx->work_cxt);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "dbsync: could not find where the replication range ends");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	cut = isnull ? after : Max(after, DatumGetInt64(d));
	txn_commit(tx);
	return cut;
}

char *
repl_copy_escape(const char *value)
{
	StringInfoData buf;

	if (strpbrk(value, "\\\t\n\r") == NULL)
		return pstrdup(value);
	initStringInfo(&buf);
	for (const char *p = value; *p; p++)
	{
		switch (*p)
		{
			case '\\':
				appendStringInfoString(&buf, "\\\\");
				break;
			case '\t':
				appendStringInfoString(&buf, "\\t");
				break;
			case '\n':
				appendStringInfoString(&buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(&buf, "\\r");
				break;
			default:
				appendStringInfoChar(&buf, *p);
		}
	}
	return buf.data;
}

/* Whether the table's column is generated (the target computes it: it is never sent). */
static bool
generated_column(Oid relid, const char *name)
{
	AttrNumber	attnum = get_attnum(relid, name);

	return attnum != InvalidAttrNumber && get_attgenerated(relid, attnum) != '\0';
}

/* A layout and the shape the sync uses for it. */
typedef struct ShapeOf
{
	int32		layout;
	ReplShape  *shape;
} ShapeOf;

static bool
same_shape(const ReplShape *a, const ReplShape *b)
{
	if (a->natts != b->natts || a->ncols != b->ncols || a->nkeys != b->nkeys)
		return false;
	for (int c = 0; c < a->ncols; c++)
		if (a->atts[c] != b->atts[c] || strcmp(a->names[c], b->names[c]) != 0)
			return false;
	for (int k = 0; k < a->nkeys; k++)
		if (a->keys[k] != b->keys[k])
			return false;
	return true;
}

/*
 * The replication view of a layout, made once per sync. Layouts of the same
 * shape share one view (writers that first wrote a table at the same moment
 * may each have registered a layout), so their entries fold into one batch.
 */
static ReplShape *
shape_get(ReplSync *rs, int32 layout, Oid relid, const char *table)
{
	ListCell   *lc;
	IlogLayout *l;
	ReplShape  *s;
	ShapeOf    *of;
	MemoryContext old;

	foreach(lc, rs->shapes)
	{
		of = lfirst(lc);
		if (of->layout == layout)
			return of->shape;
	}
	l = ilog_layout_get(layout);
	if (l->whole_row)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("dbsync: %s had no primary key or replica identity index when it was written", table),
				 errdetail("Replication finds a row on the target by its key.")));
	ilog_layout_io(l);
	old = MemoryContextSwitchTo(rs->sync_cxt);
	s = palloc0(sizeof(ReplShape));
	s->layout = layout;
	s->natts = l->natts;
	s->atts = palloc(sizeof(int) * Max(l->natts, 1));
	s->names = palloc(sizeof(char *) * Max(l->natts, 1));
	for (int i = 0; i < l->natts; i++)
		if (!l->cols[i].dropped && l->names[i] != NULL && !generated_column(relid, l->names[i]))
		{
			s->atts[s->ncols] = i;
			s->names[s->ncols++] = pstrdup(quote_identifier(l->names[i]));
		}
	s->nkeys = l->nkeys;
	s->keys = palloc(sizeof(int) * Max(l->nkeys, 1));
	for (int k = 0; k < l->nkeys; k++)
		s->keys[k] = l->keys[k] - 1;
	foreach(lc, rs->shapes)
	{
		of = lfirst(lc);
		if (same_shape(of->shape, s))
		{
			s = of->shape;
			break;
		}
	}
	of = palloc(sizeof(ShapeOf));
	of->layout = layout;
	of->shape = s;
	rs->shapes = lappend(rs->shapes, of);
	MemoryContextSwitchTo(old);
	return s;
}

/* An image's values as COPY text by attribute index (NULL: not in the image). */
static char **
image_texts(IlogLayout *l, bytea *img, Datum *values, bool *nulls, bool *present)
{
	char	  **texts = palloc0(sizeof(char *) * Max(l->natts, 1));

	if (!ilog_image_decode(VARDATA_ANY(img), VARSIZE_ANY_EXHDR(img), l->natts, l->cols, values, nulls, present))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("dbsync: an iLog entry does not match its layout %d", l->id)));
	for (int i = 0; i < l->natts; i++)
	{
		if (!present[i] || l->cols[i].dropped)
			continue;
		if (nulls[i])
			texts[i] = "\\N";
		else if (!OidIsValid(l->out[i].fn_oid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("dbsync: column \"%s\" of layout %d has a type that was dropped", l->names[i], l->id)));
		else
		{
			char	   *out = OutputFunctionCall(&l->out[i], values[i]);

			/* (the output function's string is new: escaping copies only when it must) */
			texts[i] = strpbrk(out, "\\\t\n\r") != NULL ? repl_copy_escape(out) : out;
		}
	}
	return texts;
}

static List *
read_entries(ReplSync *rs, int64 after, int64 below, int limit)
{
	static SPIPlanPtr plan;
	Datum		args[4];
	Snapshot	snap;
	List	   *entries = NIL;
	int			rc;

	if (plan == NULL)
	{
		plan = SPI_prepare("SELECT version, xid, tbl, layout, op, old, new FROM dbsync.ilog "
						   "WHERE version > $1 AND version < $2 AND tbl = ANY ($3) ORDER BY version LIMIT $4",
						   4, (Oid[]) {INT8OID, INT8OID, OIDARRAYOID, INT4OID});
		if (plan == NULL)
			elog(ERROR, "dbsync: could not prepare the iLog read: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	args[0] = Int64GetDatum(after);
	args[1] = Int64GetDatum(below);
	args[2] = table_oids(rs);
	args[3] = Int32GetDatum(limit);
	/* a snapshot taken after the horizon sees every transaction below it */
	snap = RegisterSnapshot(GetLatestSnapshot());
	rc = SPI_execute_snapshot(plan, args, NULL, snap, InvalidSnapshot, true, false, 0);
	UnregisterSnapshot(snap);
	MemoryContextSwitchTo(rs->read_cxt);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "dbsync: could not read the iLog");

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		ReplEntry  *e = palloc0(sizeof(ReplEntry));
		bool		isnull;
		Oid			tbl;
		int32		layout;
		Datum		d;

		e->version = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		e->xid = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		tbl = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		layout = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		e->op = DatumGetChar(SPI_getbinval(tup, desc, 5, &isnull));
		e->table = -1;
		for (int i = 0; i < rs->ntables; i++)
			if (rs->tables[i].relid == tbl)
				e->table = i;
		Assert(e->table >= 0);
		if (e->op == ILOG_TRUNCATE)
		{
			d = SPI_getbinval(tup, desc, 7, &isnull);
			if (!isnull)
				e->partition = text_to_cstring((text *) DatumGetByteaPP(d));
		}
		else
		{
			IlogLayout *l;
			int			n;
			Datum	   *values;
			bool	   *nulls,
					   *present;

			e->shape = shape_get(rs, layout, tbl, rs->tables[e->table].name);
			l = ilog_layout_get(layout);
			n = Max(l->natts, 1);
			values = palloc(sizeof(Datum) * n);
			nulls = palloc(sizeof(bool) * n);
			present = palloc(sizeof(bool) * n);
			d = SPI_getbinval(tup, desc, 6, &isnull);
			if (!isnull)
				e->old = image_texts(l, DatumGetByteaPP(d), values, nulls, present);
			d = SPI_getbinval(tup, desc, 7, &isnull);
			if (!isnull)
				e->new = image_texts(l, DatumGetByteaPP(d), values, nulls, present);
		}
		entries = lappend(entries, e);
	}
	return entries;
}

List *
repl_source_read(TxnScope *tx, ReplSync *rs, int64 after, int64 below, int limit)
{
	IlogOutputStyle saved;
	List	   *entries;

	txn_begin(tx);
	ilog_output_style_fix(&saved);
	PG_TRY();
	{
		entries = read_entries(rs, after, below, limit);
	}
	PG_FINALLY();
	{
		ilog_output_style_restore(&saved);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(tx->work_cxt);
	txn_commit(tx);
	return entries;
}
