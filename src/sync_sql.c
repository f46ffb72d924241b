/*
 * sync_sql.c: SQL functions of the continuous sync.
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "bg_txn.h"
#include "sync.h"
#include "worker.h"

#define PULL_COLUMNS 8

PG_FUNCTION_INFO_V1(dbsync_changes_pull);

/* One round now, inside the caller's transaction. */
Datum
dbsync_changes_pull(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *server;
	int			max_pages = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1);
	TxnScope	tx;
	int32		id;
	SyncRoundResult res;
	Datum		values[PULL_COLUMNS];
	bool		nulls[PULL_COLUMNS] = {false};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("server name must not be null")));
	if (!PG_ARGISNULL(1) && max_pages < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_pages must be at least 1, or NULL for no limit")));
	server = text_to_cstring(PG_GETARG_TEXT_PP(0));
	InitMaterializedSRF(fcinfo, 0);

	txn_scope_init(&tx, false);
	txn_begin(&tx);
	if (!store_find_subscription(server, &id))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("server \"%s\" has no subscription", server),
				 errhint("Create one with dbsync_subscribe('%s').", server)));
	txn_commit(&tx);

	sync_round_run(&tx, id, false, max_pages, &res);

	values[0] = CStringGetTextDatum(res.outcome);
	values[1] = CStringGetTextDatum(res.phase);
	values[2] = Int32GetDatum(res.pages);
	values[3] = Int64GetDatum(res.changes);
	values[4] = Int64GetDatum(res.records);
	values[5] = Int64GetDatum(res.missing);
	values[6] = Int64GetDatum(res.cursor);
	nulls[6] = !res.has_cursor;
	values[7] = Int64GetDatum(res.remote);
	nulls[7] = !res.has_remote;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(dbsync_check_server);

/* Checks a server for the current role without any request. */
Datum
dbsync_check_server(PG_FUNCTION_ARGS)
{
	dbsync_server_get(text_to_cstring(PG_GETARG_TEXT_PP(0)), text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(dbsync_wake_worker);

/* Wakes this database's runners when the transaction commits; false when no worker serves it. */
Datum
dbsync_wake_worker(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(dbsync_wake_at_commit());
}
