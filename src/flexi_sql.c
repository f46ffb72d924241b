/*
 * flexi_sql.c: SQL functions of the ABRA Flexi Changes API.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "flexi.h"

#define CHANGE_COLUMNS 8

static DbsyncServer *
flexi_server_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("server name must not be null")));
	return dbsync_server_get(text_to_cstring(PG_GETARG_TEXT_PP(0)), "flexi");
}

/* Remote text is UTF-8; the database may use another encoding. */
static Datum
remote_text(const char *s)
{
	return PointerGetDatum(cstring_to_text(pg_any_to_server(s, strlen(s), PG_UTF8)));
}

static List *
evidence_list(ArrayType *arr)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("evidence must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *name;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("evidence names must not be null")));
		name = text_to_cstring(DatumGetTextPP(elems[i]));
		if (name[0] == '\0' || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(name))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid evidence name \"%s\"", name),
					 errhint("Evidence names are lower-case words joined by '-', such as 'faktura-vydana' or 'adresar'.")));
		result = lappend(result, name);
	}
	return result;
}

static Datum
external_ids_array(List *ids)
{
	int			n = list_length(ids);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, ids)
		elems[i++] = remote_text((const char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

PG_FUNCTION_INFO_V1(dbsync_changes_fetch);

/* One page of the change log: a row per change, with the page's next and global version. */
Datum
dbsync_changes_fetch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DbsyncServer *srv;
	bool		has_start = !PG_ARGISNULL(1);
	int64		start = has_start ? PG_GETARG_INT64(1) : 0;
	int			limit = PG_ARGISNULL(2) ? FLEXI_DEFAULT_LIMIT : PG_GETARG_INT32(2);
	List	   *evidences = PG_ARGISNULL(3) ? NIL : evidence_list(PG_GETARG_ARRAYTYPE_P(3));
	FlexiChangePage *page;

	if (has_start && start < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start must be a version of 0 or more, not " INT64_FORMAT, start)));
	if (limit < 1 || limit > FLEXI_MAX_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("limit must be between 1 and %d, not %d", FLEXI_MAX_LIMIT, limit),
				 errhint("ABRA Flexi returns at most %d changes a page; follow next_version for more.", FLEXI_MAX_LIMIT)));

	srv = flexi_server_arg(fcinfo);
	InitMaterializedSRF(fcinfo, 0);
	page = flexi_fetch_changes(srv, has_start, start, limit, evidences);

	for (int i = 0; i < page->nchanges; i++)
	{
		FlexiChange *c = &page->changes[i];
		Datum		values[CHANGE_COLUMNS];
		bool		nulls[CHANGE_COLUMNS] = {false};

		values[0] = remote_text(c->evidence);
		values[1] = Int64GetDatum(c->version);
		values[2] = CStringGetTextDatum(c->operation);
		values[3] = TimestampGetDatum(c->changed_at);
		values[4] = Int64GetDatum(c->record_id);
		values[5] = external_ids_array(c->external_ids);
		values[6] = Int64GetDatum(page->next_version);
		nulls[6] = !page->has_next;
		values[7] = Int64GetDatum(page->global_version);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(dbsync_changes_enable);

Datum
dbsync_changes_enable(PG_FUNCTION_ARGS)
{
	flexi_set_changes_enabled(flexi_server_arg(fcinfo), true);
	PG_RETURN_BOOL(true);
}

PG_FUNCTION_INFO_V1(dbsync_changes_disable);

Datum
dbsync_changes_disable(PG_FUNCTION_ARGS)
{
	flexi_set_changes_enabled(flexi_server_arg(fcinfo), false);
	PG_RETURN_BOOL(false);
}

PG_FUNCTION_INFO_V1(dbsync_changes_status);

Datum
dbsync_changes_status(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(flexi_changes_enabled(flexi_server_arg(fcinfo)));
}

PG_FUNCTION_INFO_V1(dbsync_changes_global_version);

Datum
dbsync_changes_global_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(flexi_global_version(flexi_server_arg(fcinfo)));
}
