/*
 * sync_store.c: the staging writes of a sync round, one statement each, with
 * whole pages passed as arrays (one round trip into the executor per page).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "sync.h"

static void
run(SPIPlanPtr p, Datum *values, const char *nulls, int expected)
{
	int			rc = txn_execute(p, values, nulls, false);

	if (rc != expected)
		elog(ERROR, "staging statement failed: %s", SPI_result_code_string(rc));
}

static Datum
text_array(const char **vals, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(vals[i]);
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
int8_array(const int64 *vals, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(vals[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static Datum
text_list_array(List *items)
{
	int			n = list_length(items);
	const char **vals = palloc(sizeof(char *) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, items)
		vals[i++] = (const char *) lfirst(lc);
	return text_array(vals, n);
}

static List *
array_text_list(Datum d)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			result = lappend(result, TextDatumGetCString(elems[i]));
	return result;
}

/* Remote text is UTF-8; the database may use another encoding. */
static const char *
local_text(const char *s)
{
	return pg_any_to_server(s, strlen(s), PG_UTF8);
}

/* An array literal of the ids, for a text[] column filled from a text[] of literals. */
static const char *
array_literal(List *items)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	foreach(lc, items)
	{
		const char *s = local_text((const char *) lfirst(lc));

		if (buf.len > 1)
			appendStringInfoChar(&buf, ',');
		appendStringInfoChar(&buf, '"');
		for (; *s; s++)
		{
			if (*s == '"' || *s == '\\')
				appendStringInfoChar(&buf, '\\');
			appendStringInfoChar(&buf, *s);
		}
		appendStringInfoChar(&buf, '"');
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

bool
store_read_subscription(int32 id, SyncSubscription *sub)
{
	static SPIPlanPtr p;
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	run(txn_plan(&p, "SELECT server, evidences, enabled, page_size, owner, phase, cursor_version, "
			 "load_evidences, load_after_id FROM dbsync.subscription WHERE id = $1",
			 1, types), values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	memset(sub, 0, sizeof(*sub));
	sub->id = id;
	sub->server = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
	d = SPI_getbinval(tup, desc, 2, &isnull);
	sub->evidences = isnull ? NIL : array_text_list(d);
	sub->enabled = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	sub->page_size = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
	sub->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
	sub->loading = strcmp(TextDatumGetCString(SPI_getbinval(tup, desc, 6, &isnull)), "load") == 0;
	d = SPI_getbinval(tup, desc, 7, &isnull);
	sub->has_cursor = !isnull;
	sub->cursor = isnull ? 0 : DatumGetInt64(d);
	d = SPI_getbinval(tup, desc, 8, &isnull);
	sub->load_evidences = isnull ? NIL : array_text_list(d);
	sub->load_after_id = DatumGetInt64(SPI_getbinval(tup, desc, 9, &isnull));
	return true;
}

bool
store_find_subscription(const char *server, int32 *id)
{
	static SPIPlanPtr p;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(server)};
	bool		isnull;

	run(txn_plan(&p, "SELECT id FROM dbsync.subscription WHERE server = $1", 1, types),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	*id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return true;
}

void
store_round_started(int32 id)
{
	static SPIPlanPtr p;
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(id)};

	run(txn_plan(&p, "UPDATE dbsync.subscription SET last_run_at = now() WHERE id = $1", 1, types),
		values, NULL, SPI_OK_UPDATE);
}

void
store_load_started(int32 id, int64 global_version, List *evidences)
{
	static SPIPlanPtr p;
	Oid			types[3] = {INT4OID, INT8OID, TEXTARRAYOID};
	Datum		values[3] = {Int32GetDatum(id), Int64GetDatum(global_version), text_list_array(evidences)};

	run(txn_plan(&p, "UPDATE dbsync.subscription SET cursor_version = $2, remote_version = $2, "
			 "load_evidences = $3, load_after_id = 0, "
			 "phase = CASE WHEN cardinality($3) = 0 THEN 'sync' ELSE phase END WHERE id = $1", 3, types),
		values, NULL, SPI_OK_UPDATE);
}

/* Upserts records; a record never goes back to an older version. */
static void
upsert_records(int32 id, PageRecord *records, int n)
{
	static SPIPlanPtr p;
	Oid			types[7] = {INT4OID, TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, BOOLARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID};
	Datum		values[7];
	char		nulls[7] = "       ";
	const char **evidences = palloc(sizeof(char *) * Max(n, 1));
	const char **external = palloc(sizeof(char *) * Max(n, 1));
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	int64	   *versions = palloc(sizeof(int64) * Max(n, 1));
	Datum	   *deleted = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *payloads = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *payload_nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
	{
		evidences[i] = local_text(records[i].evidence);
		ids[i] = records[i].id;
		versions[i] = records[i].version;
		deleted[i] = BoolGetDatum(records[i].deleted);
		payload_nulls[i] = (records[i].json == NULL);
		payloads[i] = payload_nulls[i] ? (Datum) 0 : CStringGetTextDatum(local_text(records[i].json));
		external[i] = array_literal(records[i].external_ids);
	}
	values[0] = Int32GetDatum(id);
	values[1] = text_array(evidences, n);
	values[2] = int8_array(ids, n);
	values[3] = int8_array(versions, n);
	values[4] = PointerGetDatum(construct_array(deleted, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	values[5] = PointerGetDatum(construct_md_array(payloads, payload_nulls, 1, dims, lbs,
												   TEXTOID, -1, false, TYPALIGN_INT));
	values[6] = text_array(external, n);
	/* A deleted record keeps its last known payload; a missing payload keeps the stored one. */
	run(txn_plan(&p,
			 "INSERT INTO dbsync.record AS r (subscription_id, evidence, record_id, version, deleted, payload, "
			 "external_ids) "
			 "SELECT $1, u.e, u.i, u.v, u.d, u.p::jsonb, u.x::text[] FROM unnest($2, $3, $4, $5, $6, $7) "
			 "AS u(e, i, v, d, p, x) "
			 "ON CONFLICT (subscription_id, evidence, record_id) DO UPDATE "
			 "SET version = excluded.version, deleted = excluded.deleted, "
			 "payload = coalesce(excluded.payload, r.payload), external_ids = excluded.external_ids, "
			 "updated_at = now() "
			 "WHERE r.version <= excluded.version",
			 7, types), values, nulls, SPI_OK_INSERT);
}

void
store_load_page(int32 id, const char *evidence, FlexiRecordList *list, int64 version,
				List *remaining, int64 after_id)
{
	static SPIPlanPtr p;
	Oid			types[3] = {INT4OID, TEXTARRAYOID, INT8OID};
	Datum		values[3];
	PageRecord *records = palloc(sizeof(PageRecord) * Max(list->nrecords, 1));

	for (int i = 0; i < list->nrecords; i++)
	{
		records[i].evidence = evidence;
		records[i].id = list->records[i].id;
		records[i].version = version;
		records[i].deleted = false;
		records[i].json = list->records[i].json;
		records[i].external_ids = NIL;
	}
	upsert_records(id, records, list->nrecords);

	values[0] = Int32GetDatum(id);
	values[1] = text_list_array(remaining);
	values[2] = Int64GetDatum(after_id);
	run(txn_plan(&p, "UPDATE dbsync.subscription SET load_evidences = $2, load_after_id = $3, "
			 "phase = CASE WHEN cardinality($2) = 0 THEN 'sync' ELSE phase END WHERE id = $1",
			 3, types), values, NULL, SPI_OK_UPDATE);
}

void
store_changes_page(int32 id, FlexiChangePage *page, PageRecord *records, int nrecords, int64 new_cursor,
				   bool move_cursor)
{
	static SPIPlanPtr ins;
	int			n = page->nchanges;

	if (n > 0)
	{
		Oid			types[7] = {INT4OID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPARRAYOID,
		INT8ARRAYOID, TEXTARRAYOID};
		Datum		values[7];
		int64	   *versions = palloc(sizeof(int64) * n);
		const char **evidences = palloc(sizeof(char *) * n);
		const char **operations = palloc(sizeof(char *) * n);
		Datum	   *times = palloc(sizeof(Datum) * n);
		int64	   *ids = palloc(sizeof(int64) * n);
		const char **external = palloc(sizeof(char *) * n);

		for (int i = 0; i < n; i++)
		{
			FlexiChange *c = &page->changes[i];

			versions[i] = c->version;
			evidences[i] = local_text(c->evidence);
			operations[i] = c->operation;
			times[i] = TimestampGetDatum(c->changed_at);
			ids[i] = c->record_id;
			external[i] = array_literal(c->external_ids);
		}
		values[0] = Int32GetDatum(id);
		values[1] = int8_array(versions, n);
		values[2] = text_array(evidences, n);
		values[3] = text_array(operations, n);
		values[4] = PointerGetDatum(construct_array(times, n, TIMESTAMPOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[5] = int8_array(ids, n);
		values[6] = text_array(external, n);
		run(txn_plan(&ins,
				 "INSERT INTO dbsync.change (subscription_id, version, evidence, operation, changed_at, "
				 "record_id, external_ids) "
				 "SELECT $1, u.v, u.e, u.o, u.t, u.r, u.x::text[] FROM unnest($2, $3, $4, $5, $6, $7) "
				 "AS u(v, e, o, t, r, x)",
				 7, types), values, NULL, SPI_OK_INSERT);
	}

	upsert_records(id, records, nrecords);
	if (move_cursor)
		store_cursor(id, new_cursor, page->global_version);
}

void
store_cursor(int32 id, int64 cursor, int64 remote_version)
{
	static SPIPlanPtr p;
	Oid			types[3] = {INT4OID, INT8OID, INT8OID};
	Datum		values[3] = {Int32GetDatum(id), Int64GetDatum(cursor), Int64GetDatum(remote_version)};

	run(txn_plan(&p, "UPDATE dbsync.subscription SET cursor_version = $2, remote_version = $3 WHERE id = $1",
				 3, types), values, NULL, SPI_OK_UPDATE);
}

void
store_round_succeeded(int32 id, const char *server, int64 changes, int64 cursor)
{
	static SPIPlanPtr ok;
	static SPIPlanPtr notify;
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(id)};

	run(txn_plan(&ok, "UPDATE dbsync.subscription SET last_success_at = now(), failures = 0, last_error = NULL "
			 "WHERE id = $1", 1, types), values, NULL, SPI_OK_UPDATE);
	if (changes > 0)
	{
		Oid			ntypes[4] = {TEXTOID, INT4OID, INT8OID, INT8OID};
		Datum		nvalues[4] = {CStringGetTextDatum(server), Int32GetDatum(id), Int64GetDatum(changes),
		Int64GetDatum(cursor)};

		/* Listeners hear of it when this transaction commits. */
		run(txn_plan(&notify, "SELECT pg_notify('dbsync', json_build_object('server', $1, 'subscription', $2, "
				 "'changes', $3, 'cursor_version', $4)::text)", 4, ntypes), nvalues, NULL, SPI_OK_SELECT);
	}
}

void
store_round_failed(int32 id, const char *error)
{
	static SPIPlanPtr p;
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2] = {Int32GetDatum(id), CStringGetTextDatum(error)};

	run(txn_plan(&p, "UPDATE dbsync.subscription SET failures = failures + 1, last_error = $2, "
			 "last_error_at = now() WHERE id = $1", 2, types), values, NULL, SPI_OK_UPDATE);
}
