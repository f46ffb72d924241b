/*
 * ilog_layout.c: table shapes, as the trigger writes them and the decoder
 * reads them.
 *
 * A layout row (dbsync.ilog_layout) keeps what decoding an image needs:
 * each column's name, type, typmod, attlen and attbyval, which columns are
 * logged and which form the key. The trigger finds its table's layout once
 * per relcache invalidation (an ALTER TABLE, a new replica identity, a
 * re-track with other options), by a hash of that shape, and writes a new
 * row when the shape is new; entries written before keep their layout, so
 * they stay readable with the values they had.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "ilog.h"

typedef struct RelInfoEntry
{
	Oid			relid;			/* hash key */
	bool		valid;
	SubTransactionId created_subid; /* layout row written by this (sub)transaction, or 0 */
	IlogRelInfo info;
} RelInfoEntry;

typedef struct LayoutEntry
{
	int32		id;				/* hash key */
	IlogLayout	layout;
} LayoutEntry;

static HTAB *rel_infos = NULL;
static HTAB *layouts = NULL;
static MemoryContext layout_cxt = NULL;

static void
invalidate_rel(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	RelInfoEntry *e;

	if (rel_infos == NULL)
		return;
	hash_seq_init(&seq, rel_infos);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (relid == InvalidOid || e->relid == relid)
			e->valid = false;
}

static void
ensure_caches(void)
{
	HASHCTL		ctl;

	if (rel_infos != NULL)
		return;
	layout_cxt = AllocSetContextCreate(CacheMemoryContext, "dbsync ilog layouts", ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(RelInfoEntry);
	ctl.hcxt = layout_cxt;
	rel_infos = hash_create("dbsync ilog tables", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.keysize = sizeof(int32);
	ctl.entrysize = sizeof(LayoutEntry);
	layouts = hash_create("dbsync ilog layouts", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(invalidate_rel, (Datum) 0);
}

Oid
ilog_owner(void)
{
	Oid			relid = ilog_relation("ilog_layout");
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dbsync: the iLog tables are missing"),
				 errhint("Update the extension: ALTER EXTENSION dbsync UPDATE.")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* Runs one statement through SPI as the owner of the log; the caller has connected SPI. */
static int
spi_as_owner(const char *sql, int nargs, Oid *types, Datum *values, bool read_only)
{
	Oid			save_user;
	int			save_sec;
	int			rc;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(ilog_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	rc = SPI_execute_with_args(sql, nargs, types, values, NULL, read_only, 0);
	SetUserIdAndSecContext(save_user, save_sec);
	return rc;
}

/* The key columns of a table as logical replication chooses them; false: the whole row. */
static bool
identity_key(Relation rel, int *nkeys, AttrNumber **keys)
{
	char		replident = rel->rd_rel->relreplident;
	Oid			index;
	HeapTuple	tup;
	Form_pg_index form;

	if (replident != REPLICA_IDENTITY_DEFAULT && replident != REPLICA_IDENTITY_INDEX)
		return false;
	index = RelationGetReplicaIndex(rel);
	if (!OidIsValid(index))
		return false;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(index));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for index %u", index);
	form = (Form_pg_index) GETSTRUCT(tup);
	*nkeys = form->indnkeyatts;
	*keys = MemoryContextAlloc(layout_cxt, sizeof(AttrNumber) * form->indnkeyatts);
	for (int k = 0; k < form->indnkeyatts; k++)
		(*keys)[k] = form->indkey.values[k];
	ReleaseSysCache(tup);
	return true;
}

/* Reads the trigger's arguments: tracked table, flags, excluded columns (attnums of the tracked table). */
static void
read_trigger_args(Relation rel, Trigger *trig, IlogRelInfo *info)
{
	Oid			relid = RelationGetRelid(rel);
	bool		ok = false;

	if (trig->tgnargs < 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("dbsync: trigger \"%s\" on \"%s\" was not created by dbsync_track",
						trig->tgname, RelationGetRelationName(rel))));
	info->tracked = DatumGetObjectId(DirectFunctionCall1(oidin, CStringGetDatum(trig->tgargs[0])));
	info->log_unchanged = strchr(trig->tgargs[1], 'u') != NULL;
	/* A trigger copied onto another table cannot write entries for a table it is not part of. */
	if (info->tracked == relid)
		ok = true;
	else if (rel->rd_rel->relispartition)
		ok = list_member_oid(get_partition_ancestors(relid), info->tracked);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("dbsync: trigger \"%s\" on \"%s\" names another table",
						trig->tgname, RelationGetRelationName(rel))));
}

static void
mark_excluded(Relation rel, Trigger *trig, IlogRelInfo *info)
{
	Oid			relid = RelationGetRelid(rel);

	for (int a = 2; a < trig->tgnargs; a++)
	{
		AttrNumber	attnum = (AttrNumber) pg_strtoint32(trig->tgargs[a]);
		char	   *name = get_attname(info->tracked, attnum, true);
		AttrNumber	own;

		if (name == NULL)
			continue;			/* dropped since */
		own = info->tracked == relid ? attnum : get_attnum(relid, name);
		if (own > 0 && own <= info->natts)
			info->cols[own - 1].dropped = true;
	}
}

/* A hash of everything decoding depends on. */
static int64
shape_signature(TupleDesc desc, const IlogRelInfo *info)
{
	StringInfoData buf;
	uint64		hash;

	initStringInfo(&buf);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (info->cols[i].dropped)
			appendStringInfoString(&buf, "-;");
		else
			appendStringInfo(&buf, "%s:%u:%d:%d:%d;", NameStr(att->attname), att->atttypid,
							 att->atttypmod, att->attlen, att->attbyval);
	}
	appendStringInfo(&buf, "k%d:", info->whole_row);
	for (int k = 0; k < info->nkeys; k++)
		appendStringInfo(&buf, "%d,", info->keys[k]);
	hash = hash_bytes_extended((unsigned char *) buf.data, buf.len, 0);
	pfree(buf.data);
	return (int64) hash;
}

#define LAYOUT_COLUMNS "attnames, atttypes, atttypmods, attlens, attbyvals, logged, key_attnums, whole_row_key"

/* Finds or writes the layout row of the shape; returns its id. */
static int32
layout_for_shape(Relation rel, IlogRelInfo *info, int64 signature, bool *created)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			n = desc->natts;
	Datum	   *names = palloc(sizeof(Datum) * n);
	bool	   *name_nulls = palloc(sizeof(bool) * n);
	Datum	   *types = palloc(sizeof(Datum) * n);
	Datum	   *typmods = palloc(sizeof(Datum) * n);
	Datum	   *lens = palloc(sizeof(Datum) * n);
	Datum	   *byvals = palloc(sizeof(Datum) * n);
	Datum	   *logged = palloc(sizeof(Datum) * n);
	Datum	   *keys = palloc(sizeof(Datum) * Max(info->nkeys, 1));
	int			dims[1];
	int			lbs[1] = {1};
	Datum		args[11];
	int32		id;
	bool		isnull;

	SPI_connect();
	args[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	args[1] = Int64GetDatum(signature);
	if (spi_as_owner("SELECT id FROM dbsync.ilog_layout WHERE relid = $1 AND signature = $2 ORDER BY id LIMIT 1",
					 2, (Oid[]) {OIDOID, INT8OID}, args, true) != SPI_OK_SELECT)
		elog(ERROR, "dbsync: could not read dbsync.ilog_layout");
	if (SPI_processed == 1)
	{
		id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		SPI_finish();
		*created = false;
		return id;
	}

	for (int i = 0; i < n; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		name_nulls[i] = att->attisdropped;
		names[i] = att->attisdropped ? (Datum) 0 : NameGetDatum(&att->attname);
		types[i] = ObjectIdGetDatum(att->atttypid);
		typmods[i] = Int32GetDatum(att->atttypmod);
		lens[i] = Int16GetDatum(att->attlen);
		byvals[i] = BoolGetDatum(att->attbyval);
		logged[i] = BoolGetDatum(!info->cols[i].dropped);
	}
	for (int k = 0; k < info->nkeys; k++)
		keys[k] = Int16GetDatum(info->keys[k]);
	dims[0] = n;
	args[0] = ObjectIdGetDatum(info->tracked);
	args[1] = ObjectIdGetDatum(RelationGetRelid(rel));
	args[2] = Int64GetDatum(signature);
	args[3] = PointerGetDatum(construct_md_array(names, name_nulls, 1, dims, lbs, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR));
	args[4] = PointerGetDatum(construct_array(types, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	args[5] = PointerGetDatum(construct_array(typmods, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
	args[6] = PointerGetDatum(construct_array(lens, n, INT2OID, sizeof(int16), true, TYPALIGN_SHORT));
	args[7] = PointerGetDatum(construct_array(byvals, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	args[8] = PointerGetDatum(construct_array(logged, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	args[9] = PointerGetDatum(construct_array(keys, info->nkeys, INT2OID, sizeof(int16), true, TYPALIGN_SHORT));
	args[10] = BoolGetDatum(info->whole_row);
	if (spi_as_owner("INSERT INTO dbsync.ilog_layout (tbl, relid, signature, " LAYOUT_COLUMNS ") "
					 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
					 11, (Oid[]) {OIDOID, OIDOID, INT8OID, NAMEARRAYOID, OIDARRAYOID, INT4ARRAYOID,
					 INT2ARRAYOID, BOOLARRAYOID, BOOLARRAYOID, INT2ARRAYOID, BOOLOID}, args, false) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "dbsync: could not write dbsync.ilog_layout");
	id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	*created = true;
	return id;
}

IlogRelInfo *
ilog_rel_info(Relation rel, TriggerData *td)
{
	Oid			relid = RelationGetRelid(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	RelInfoEntry *e;
	IlogRelInfo *info;
	bool		found;
	bool		created;

	ensure_caches();
	e = hash_search(rel_infos, &relid, HASH_ENTER, &found);
	if (found && e->valid && e->info.trigger == td->tg_trigger->tgoid)
		return &e->info;
	if (found && e->info.cols != NULL)
	{
		pfree(e->info.cols);
		if (e->info.keys != NULL)
			pfree(e->info.keys);
	}
	e->valid = false;
	e->created_subid = InvalidSubTransactionId;
	info = &e->info;
	memset(info, 0, sizeof(*info));
	info->relid = relid;
	info->trigger = td->tg_trigger->tgoid;
	read_trigger_args(rel, td->tg_trigger, info);
	info->natts = desc->natts;
	info->cols = MemoryContextAllocZero(layout_cxt, sizeof(IlogColumn) * Max(desc->natts, 1));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		info->cols[i].len = att->attlen;
		info->cols[i].byval = att->attbyval;
		info->cols[i].dropped = att->attisdropped;
	}
	mark_excluded(rel, td->tg_trigger, info);
	if (identity_key(rel, &info->nkeys, &info->keys))
	{
		/* a key is always logged, even if it was excluded */
		for (int k = 0; k < info->nkeys; k++)
			info->cols[info->keys[k] - 1].dropped = false;
	}
	else
	{
		info->whole_row = true;
		info->keys = MemoryContextAlloc(layout_cxt, sizeof(AttrNumber) * Max(desc->natts, 1));
		for (int i = 0; i < desc->natts; i++)
			if (!info->cols[i].dropped)
				info->keys[info->nkeys++] = i + 1;
	}
	info->layout_id = layout_for_shape(rel, info, shape_signature(desc, info), &created);
	if (created)
		e->created_subid = GetCurrentSubTransactionId();
	e->valid = true;
	return info;
}

/*
 * The end of a (sub)transaction that may have written layout rows: those
 * written from subid on are gone when it rolled back (find or write them
 * again); at the top level's end no row is "being written" any more.
 */
static void
created_layouts_end(SubTransactionId subid, bool rolled_back, bool top_level)
{
	HASH_SEQ_STATUS seq;
	RelInfoEntry *e;

	if (rel_infos == NULL)
		return;
	hash_seq_init(&seq, rel_infos);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (rolled_back && e->created_subid != InvalidSubTransactionId && e->created_subid >= subid)
			e->valid = false;
		if (top_level)
			e->created_subid = InvalidSubTransactionId;
	}
}

void
ilog_layout_subxact_abort(SubTransactionId subid)
{
	created_layouts_end(subid, true, false);
}

void
ilog_layout_xact_end(bool committed)
{
	created_layouts_end(TopSubTransactionId, !committed, true);
}

/* Copies an array column of the layout row into a C array of n elements. */
static void *
array_values(HeapTuple tup, TupleDesc desc, int col, Oid elemtype, int elemlen, bool byval,
			 char align, int *n, bool **nulls)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
	Datum	   *elems;
	bool	   *elem_nulls;

	if (isnull)
		elog(ERROR, "dbsync: damaged dbsync.ilog_layout row");
	deconstruct_array(DatumGetArrayTypeP(d), elemtype, elemlen, byval, align, &elems, &elem_nulls, n);
	if (nulls != NULL)
		*nulls = elem_nulls;
	return elems;
}

/*
 * Layout ids start again at 1 when the extension is dropped and created
 * again: the decoder's cache holds for one dbsync.ilog_layout table only.
 */
static void
forget_layouts_of_dropped_extension(void)
{
	static Oid	cached_for = InvalidOid;
	static LocalTransactionId checked_in = InvalidLocalTransactionId;
	Oid			current;
	HASH_SEQ_STATUS seq;
	LayoutEntry *e;

	/* once per transaction, not per entry decoded */
	if (checked_in == MyProc->lxid)
		return;
	checked_in = MyProc->lxid;
	current = ilog_relation("ilog_layout");
	if (current == cached_for)
		return;
	hash_seq_init(&seq, layouts);
	while ((e = hash_seq_search(&seq)) != NULL)
		(void) hash_search(layouts, &e->id, HASH_REMOVE, NULL);
	cached_for = current;
}

IlogLayout *
ilog_layout_get(int32 id)
{
	LayoutEntry *e;
	bool		found;
	HeapTuple	tup;
	TupleDesc	desc;
	IlogLayout *l;
	MemoryContext old;
	Datum	   *names,
			   *types,
			   *typmods,
			   *lens,
			   *byvals,
			   *logged,
			   *keys;
	bool	   *name_nulls;
	int			n,
				nkeys;
	bool		isnull;

	ensure_caches();
	forget_layouts_of_dropped_extension();
	e = hash_search(layouts, &id, HASH_FIND, &found);
	if (found)
		return &e->layout;

	SPI_connect();
	if (spi_as_owner("SELECT " LAYOUT_COLUMNS " FROM dbsync.ilog_layout WHERE id = $1",
					 1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(id)}, true) != SPI_OK_SELECT)
		elog(ERROR, "dbsync: could not read dbsync.ilog_layout");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("dbsync: iLog layout %d is missing", id)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	names = array_values(tup, desc, 1, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &n, &name_nulls);
	types = array_values(tup, desc, 2, OIDOID, sizeof(Oid), true, TYPALIGN_INT, &n, NULL);
	typmods = array_values(tup, desc, 3, INT4OID, sizeof(int32), true, TYPALIGN_INT, &n, NULL);
	lens = array_values(tup, desc, 4, INT2OID, sizeof(int16), true, TYPALIGN_SHORT, &n, NULL);
	byvals = array_values(tup, desc, 5, BOOLOID, 1, true, TYPALIGN_CHAR, &n, NULL);
	logged = array_values(tup, desc, 6, BOOLOID, 1, true, TYPALIGN_CHAR, &n, NULL);
	keys = array_values(tup, desc, 7, INT2OID, sizeof(int16), true, TYPALIGN_SHORT, &nkeys, NULL);

	old = MemoryContextSwitchTo(layout_cxt);
	e = hash_search(layouts, &id, HASH_ENTER, &found);
	l = &e->layout;
	l->id = id;
	l->natts = n;
	l->cols = palloc0(sizeof(IlogColumn) * Max(n, 1));
	l->names = palloc0(sizeof(char *) * Max(n, 1));
	l->types = palloc0(sizeof(Oid) * Max(n, 1));
	l->typmods = palloc0(sizeof(int32) * Max(n, 1));
	l->out = NULL;
	l->typioparams = NULL;
	for (int i = 0; i < n; i++)
	{
		l->cols[i].len = DatumGetInt16(lens[i]);
		l->cols[i].byval = DatumGetBool(byvals[i]);
		l->cols[i].dropped = name_nulls[i] || !DatumGetBool(logged[i]);
		l->names[i] = name_nulls[i] ? NULL : pstrdup(NameStr(*DatumGetName(names[i])));
		l->types[i] = DatumGetObjectId(types[i]);
		l->typmods[i] = DatumGetInt32(typmods[i]);
	}
	l->nkeys = nkeys;
	l->keys = palloc(sizeof(AttrNumber) * Max(nkeys, 1));
	for (int k = 0; k < nkeys; k++)
		l->keys[k] = DatumGetInt16(keys[k]);
	l->whole_row = DatumGetBool(SPI_getbinval(tup, desc, 8, &isnull));
	MemoryContextSwitchTo(old);
	SPI_finish();
	return l;
}

/* The ids of every layout of a tracked table (its partitions' too). */
int32 *
ilog_layout_ids(Oid tbl, int *n)
{
	int32	   *ids;
	MemoryContext caller = CurrentMemoryContext;

	SPI_connect();
	if (spi_as_owner("SELECT id FROM dbsync.ilog_layout WHERE tbl = $1 ORDER BY id",
					 1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(tbl)}, true) != SPI_OK_SELECT)
		elog(ERROR, "dbsync: could not read dbsync.ilog_layout");
	*n = (int) SPI_processed;
	ids = MemoryContextAlloc(caller, sizeof(int32) * Max(*n, 1));
	for (int r = 0; r < *n; r++)
	{
		bool		isnull;

		ids[r] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	return ids;
}
