/*
 * upgrade_jobs.c: the worker's poll of an Odoo upgrade request (job kind
 * upgrade_poll): read the request, ask the service (no transaction open),
 * record the answer; the job ends with the request (done, failed, cancelled).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "bg_txn.h"
#include "jobs.h"
#include "json_layer.h"
#include "odoo.h"
#include "worker.h"

bool
run_upgrade_poll(TxnScope *tx, const DbsyncJob *job, char **result)
{
	static SPIPlanPtr read_plan;
	static SPIPlanPtr record_plan;
	Datum		values[2];
	bool		isnull;
	int64		request_id;
	char	   *server;
	char	   *key;
	char	   *reply;
	char	   *state;
	DbsyncServer *volatile srv = NULL;
	Oid			saved_user;
	int			saved_context;
	HeapTuple	tup;

	if (!dbsync_json_int64(dbsync_json_member(dbsync_json_parse(job->args, strlen(job->args), "job arguments"),
											  "request_id"), &request_id))
		elog(ERROR, "job " INT64_FORMAT " has no request_id", job->id);

	/* The request, and its server as its owner may use it. */
	txn_begin(tx);
	values[0] = Int64GetDatum(request_id);
	if (txn_execute(txn_plan(&read_plan, "SELECT server, request_key FROM dbsync.upgrade_request WHERE id = $1",
							 1, (Oid[]) {INT8OID}), values, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "could not read upgrade request " INT64_FORMAT, request_id);
	if (SPI_processed == 0)
	{
		txn_commit(tx);
		*result = psprintf("{\"request_id\": " INT64_FORMAT ", \"state\": null, \"note\": \"request removed\"}", request_id);
		return true;
	}
	tup = SPI_tuptable->vals[0];
	server = TextDatumGetCString(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
	key = TextDatumGetCString(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(job->owner, saved_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		srv = dbsync_server_get(server, "odoo_upgrade");
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_user, saved_context);
	}
	PG_END_TRY();
	txn_commit(tx);

	/* The network call, between steps. */
	reply = odoo_call(srv, "status", list_make4("key", key, "request", psprintf(INT64_FORMAT, request_id)),
					  NULL, key);
	if (reply == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("the Odoo upgrade service (server \"%s\") sent no status for request " INT64_FORMAT,
						server, request_id)));

	txn_begin(tx);
	values[0] = CStringGetTextDatum(server);
	values[1] = CStringGetTextDatum(reply);
	if (txn_execute(txn_plan(&record_plan, "SELECT (dbsync.upgrade_record($1, $2::jsonb)).state", 2,
							 (Oid[]) {TEXTOID, TEXTOID}), values, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "could not record upgrade request " INT64_FORMAT, request_id);
	state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	txn_commit(tx);

	*result = psprintf("{\"request_id\": " INT64_FORMAT ", \"state\": \"%s\"}", request_id, state ? state : "");
	return state != NULL && (strcmp(state, "done") == 0 || strcmp(state, "failed") == 0 ||
							 strcmp(state, "cancelled") == 0);
}
