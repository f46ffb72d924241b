/*
 * ilog_trigger.c: dbsync.ilog_trigger(), the C trigger of tracked tables.
 *
 * AFTER ROW for INSERT, UPDATE and DELETE, AFTER STATEMENT for TRUNCATE.
 * Each change becomes one row of dbsync.ilog: version, transaction,
 * table, layout, key hash, operation and the old/new images (INSERT: the
 * new row; DELETE: the old row; UPDATE: the key and the old values of the
 * changed columns, and their new values). Who, when and from where is
 * written once per transaction, to dbsync.ilog_xact. Both go to the
 * partition of the transaction's start day (UTC), or to the default
 * partition when that day has none yet.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "ilog.h"

PG_FUNCTION_INFO_V1(dbsync_ilog_trigger);

#define ILOG_NATTS 9
#define ILOG_XACT_NATTS 9

/* What the current transaction has set up; reset at its end. */
static struct
{
	bool		active;
	int64		xid;
	int32		day;			/* DateADT of the transaction's start, UTC */
	Oid			seq;
	Oid			entries;		/* partition for the entries */
	Oid			xacts;			/* partition for the transaction row */
	bool		first_pending;	/* the horizon waits for the first version */
	SubTransactionId xact_row_subid;	/* 0: the transaction row is not written */
} tx;

bool
ilog_trigger_xact_logged(void)
{
	return tx.active;
}

void
ilog_trigger_xact_end(void)
{
	memset(&tx, 0, sizeof(tx));
}

void
ilog_trigger_subxact_abort(SubTransactionId subid)
{
	if (tx.xact_row_subid != InvalidSubTransactionId && tx.xact_row_subid >= subid)
		tx.xact_row_subid = InvalidSubTransactionId;
}

/* The day's partition of a log table, or its default partition. */
static Oid
day_partition(const char *table, int32 day)
{
	int			y,
				m,
				d;
	char		name[NAMEDATALEN];
	Oid			relid;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &m, &d);
	snprintf(name, sizeof(name), "%s_p%04d%02d%02d", table, y, m, d);
	relid = ilog_relation(name);
	if (!OidIsValid(relid))
	{
		snprintf(name, sizeof(name), "%s_default", table);
		relid = ilog_relation(name);
	}
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dbsync: the iLog has no partition for the day and no default partition")));
	return relid;
}

static void
begin_xact(void)
{
	TimestampTz start = GetCurrentTransactionStartTimestamp();

	tx.xid = (int64) U64FromFullTransactionId(GetTopFullTransactionId());
	tx.day = (int32) (start / USECS_PER_DAY - (start < 0 && start % USECS_PER_DAY != 0 ? 1 : 0));
	tx.seq = ilog_relation("ilog_version_seq");
	if (!OidIsValid(tx.seq))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dbsync: the iLog version sequence is missing")));
	tx.entries = day_partition("ilog", tx.day);
	tx.xacts = day_partition("ilog_xact", tx.day);
	ilog_horizon_begin();
	tx.first_pending = true;
	tx.active = true;
}

/* Calls a client-information function of the backend (NULL outside a client connection). */
static Datum
client_info(PGFunction fn, bool *isnull)
{
	LOCAL_FCINFO(fcinfo, 0);
	Datum		d;

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	d = fn(fcinfo);
	*isnull = fcinfo->isnull;
	return d;
}

static void
write_xact_row(void)
{
	Datum		values[ILOG_XACT_NATTS];
	bool		nulls[ILOG_XACT_NATTS] = {0};
	char	   *user = GetUserNameFromId(GetUserId(), true);

	values[0] = Int64GetDatum(tx.xid);
	values[1] = DateADTGetDatum(tx.day);
	values[2] = CStringGetTextDatum(user ? user : "?");
	values[3] = CStringGetTextDatum(application_name ? application_name : "");
	values[4] = client_info(inet_client_addr, &nulls[4]);
	values[5] = client_info(inet_client_port, &nulls[5]);
	values[6] = Int32GetDatum(MyProcPid);
	values[7] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[8] = ObjectIdGetDatum(GetUserId());
	ilog_store_row(tx.xacts, ILOG_XACT_NATTS, values, nulls);
	tx.xact_row_subid = GetCurrentSubTransactionId();
}

static bytea *
image_bytea(StringInfo buf)
{
	bytea	   *b = palloc(VARHDRSZ + buf->len);

	SET_VARSIZE(b, VARHDRSZ + buf->len);
	memcpy(VARDATA(b), buf->data, buf->len);
	return b;
}

static void
write_entry(Oid tracked, int32 layout, uint32 key_hash, char op, StringInfo old, StringInfo new)
{
	Datum		values[ILOG_NATTS];
	bool		nulls[ILOG_NATTS] = {0};
	int64		version;

	if (!tx.active)
		begin_xact();
	if (tx.xact_row_subid == InvalidSubTransactionId)
		write_xact_row();
	version = nextval_internal(tx.seq, false);
	if (tx.first_pending)
	{
		ilog_horizon_first(version);
		tx.first_pending = false;
	}
	values[0] = Int64GetDatum(version);
	values[1] = Int64GetDatum(tx.xid);
	values[2] = DateADTGetDatum(tx.day);
	values[3] = ObjectIdGetDatum(tracked);
	values[4] = Int32GetDatum(layout);
	values[5] = Int32GetDatum((int32) key_hash);
	values[6] = CharGetDatum(op);
	nulls[7] = old == NULL;
	if (old != NULL)
		values[7] = PointerGetDatum(image_bytea(old));
	nulls[8] = new == NULL;
	if (new != NULL)
		values[8] = PointerGetDatum(image_bytea(new));
	ilog_store_row(tx.entries, ILOG_NATTS, values, nulls);
}

static bool
is_key(const IlogRelInfo *info, int attidx)
{
	for (int k = 0; k < info->nkeys; k++)
		if (info->keys[k] == attidx + 1)
			return true;
	return false;
}

static void
log_row(TriggerData *td, Relation rel)
{
	IlogRelInfo *info = ilog_rel_info(rel, td);
	TupleDesc	desc = RelationGetDescr(rel);
	int			n = info->natts;
	Datum	   *ov = palloc(sizeof(Datum) * n);
	Datum	   *nv = palloc(sizeof(Datum) * n);
	bool	   *on = palloc(sizeof(bool) * n);
	bool	   *nn = palloc(sizeof(bool) * n);
	bool	   *inc_old = palloc0(sizeof(bool) * n);
	bool	   *inc_new = palloc0(sizeof(bool) * n);
	StringInfoData old,
				new;
	uint32		key_hash;
	char		op;

	initStringInfo(&old);
	initStringInfo(&new);
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		op = ILOG_INSERT;
		heap_deform_tuple(td->tg_trigtuple, desc, nv, nn);
		for (int i = 0; i < n; i++)
			inc_new[i] = !info->cols[i].dropped;
		ilog_image_encode(&new, n, info->cols, nv, nn, inc_new);
		key_hash = ilog_key_hash(info->nkeys, info->keys, info->cols, nv, nn);
		write_entry(info->tracked, info->layout_id, key_hash, op, NULL, &new);
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		op = ILOG_DELETE;
		heap_deform_tuple(td->tg_trigtuple, desc, ov, on);
		for (int i = 0; i < n; i++)
			inc_old[i] = !info->cols[i].dropped;
		ilog_image_encode(&old, n, info->cols, ov, on, inc_old);
		key_hash = ilog_key_hash(info->nkeys, info->keys, info->cols, ov, on);
		write_entry(info->tracked, info->layout_id, key_hash, op, &old, NULL);
	}
	else
	{
		bool		any = false;
		bool		key_changed = false;

		op = ILOG_UPDATE;
		heap_deform_tuple(td->tg_trigtuple, desc, ov, on);
		heap_deform_tuple(td->tg_newtuple, desc, nv, nn);
		for (int i = 0; i < n; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);
			bool		changed;

			if (info->cols[i].dropped)
				continue;
			if (on[i] || nn[i])
				changed = on[i] != nn[i];
			else
				/* same bytes (an untouched toast pointer) first; else the values, however stored */
				changed = !datumIsEqual(ov[i], nv[i], att->attbyval, att->attlen) &&
					!datum_image_eq(ov[i], nv[i], att->attbyval, att->attlen);
			inc_new[i] = changed;
			inc_old[i] = changed || info->whole_row || is_key(info, i);
			any |= changed;
			if (changed && is_key(info, i))
				key_changed = true;
		}
		if (!any && !info->log_unchanged)
			return;
		ilog_image_encode(&old, n, info->cols, ov, on, inc_old);
		ilog_image_encode(&new, n, info->cols, nv, nn, inc_new);
		/* an entry is found under the key the row has after it */
		key_hash = key_changed ? ilog_key_hash(info->nkeys, info->keys, info->cols, nv, nn)
			: ilog_key_hash(info->nkeys, info->keys, info->cols, ov, on);
		write_entry(info->tracked, info->layout_id, key_hash, op, &old, &new);
	}
}

/*
 * TRUNCATE of a tracked table, or of one leaf partition of a tracked
 * partitioned table: an event naming the tracked table and, for a partition,
 * the partition (its qualified name in place of the new image).
 */
static void
log_truncate(TriggerData *td)
{
	Trigger    *trig = td->tg_trigger;
	Relation	rel = td->tg_relation;
	Oid			relid = RelationGetRelid(rel);
	Oid			tracked;
	StringInfoData name;

	if (trig->tgnargs < 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("dbsync: trigger \"%s\" was not created by dbsync_track", trig->tgname)));
	tracked = DatumGetObjectId(DirectFunctionCall1(oidin, CStringGetDatum(trig->tgargs[0])));
	if (tracked == relid)
	{
		write_entry(tracked, 0, 0, ILOG_TRUNCATE, NULL, NULL);
		return;
	}
	/* a partition detached since is no longer part of the tracked table */
	if (!rel->rd_rel->relispartition || !list_member_oid(get_partition_ancestors(relid), tracked))
		return;
	initStringInfo(&name);
	appendStringInfoString(&name, quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
															 RelationGetRelationName(rel)));
	write_entry(tracked, 0, 0, ILOG_TRUNCATE, NULL, &name);
}

Datum
dbsync_ilog_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("dbsync.ilog_trigger() may only run as a trigger")));
	if (!TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("dbsync.ilog_trigger() must be an AFTER trigger")));
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		log_truncate(td);
	else if (TRIGGER_FIRED_FOR_ROW(td->tg_event))
		log_row(td, td->tg_relation);
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("dbsync.ilog_trigger() must be FOR EACH ROW for INSERT, UPDATE and DELETE")));
	return PointerGetDatum(NULL);
}
