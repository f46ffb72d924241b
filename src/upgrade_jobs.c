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
#include "transfer.h"
#include "worker.h"

/* Streams the dump (no transaction open), then records it. */
static void
download_when_done(TxnScope *tx, const DbsyncServer *srv, int64 request_id, const char *url, const char *path)
{
	static SPIPlanPtr plan;
	OdooDump	dump = {srv, url, psprintf("the upgraded dump of request " INT64_FORMAT, request_id)};
	char		sha256[65];
	int64		bytes = transfer_to_file_outside_txn(path, odoo_fetch_dump, &dump, sha256);
	Datum		values[4];

	txn_begin(tx);
	values[0] = Int64GetDatum(request_id);
	values[1] = Int64GetDatum(bytes);
	values[2] = CStringGetTextDatum(sha256);
	values[3] = CStringGetTextDatum(path);
	if (txn_execute(txn_plan(&plan, "UPDATE dbsync.upgrade_request SET downloaded_bytes = $2, downloaded_sha256 = $3, "
							 "downloaded_to = $4, downloaded_at = now() WHERE id = $1",
							 4, (Oid[]) {INT8OID, INT8OID, TEXTOID, TEXTOID}), values, NULL, false) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the download of upgrade request " INT64_FORMAT, request_id);
	txn_commit(tx);
	ereport(LOG, (errmsg("dbsync: downloaded the upgraded dump of request " INT64_FORMAT " to \"%s\" (" INT64_FORMAT " bytes)",
						 request_id, path, bytes)));
}

JobOutcome
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
	char	   *url = NULL;
	bool		want_download;
	char	   *file_name;
	DbsyncServer *srv;
	HeapTuple	tup;

	if (!dbsync_json_int64(dbsync_json_member(dbsync_json_parse(job->args, strlen(job->args), "job arguments"),
											  "request_id"), &request_id))
		elog(ERROR, "job " INT64_FORMAT " has no request_id", job->id);

	/* The request, and its server as its owner may use it. */
	txn_begin(tx);
	values[0] = Int64GetDatum(request_id);
	if (txn_execute(txn_plan(&read_plan, "SELECT server, request_key, download_when_done AND downloaded_at IS NULL, "
							 "id || '-' || regexp_replace(coalesce(filename, 'dump'), '[^A-Za-z0-9._-]', '_', 'g') "
							 "FROM dbsync.upgrade_request WHERE id = $1",
							 1, (Oid[]) {INT8OID}), values, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "could not read upgrade request " INT64_FORMAT, request_id);
	if (SPI_processed == 0)
	{
		txn_commit(tx);
		*result = psprintf("{\"request_id\": " INT64_FORMAT ", \"state\": null, \"note\": \"request removed\"}", request_id);
		return JOB_ENDED;
	}
	tup = SPI_tuptable->vals[0];
	server = TextDatumGetCString(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
	key = TextDatumGetCString(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	want_download = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
	file_name = TextDatumGetCString(SPI_getbinval(tup, SPI_tuptable->tupdesc, 4, &isnull));
	srv = dbsync_server_get_as(job->owner, server, "odoo_upgrade");
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
	if (txn_execute(txn_plan(&record_plan, "SELECT r.state, r.upgraded_dump_url FROM dbsync.upgrade_record($1, $2::jsonb) r", 2,
							 (Oid[]) {TEXTOID, TEXTOID}), values, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "could not record upgrade request " INT64_FORMAT, request_id);
	state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	url = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	txn_commit(tx);

	/* Done, and asked for: the upgraded dump goes into the configured directory. */
	if (state != NULL && strcmp(state, "done") == 0 && want_download && url != NULL &&
		dbsync_upgrade_download_dir[0] != '\0')
		download_when_done(tx, srv, request_id, url, psprintf("%s/%s", dbsync_upgrade_download_dir, file_name));

	*result = psprintf("{\"request_id\": " INT64_FORMAT ", \"state\": \"%s\"}", request_id, state ? state : "");
	return state != NULL && (strcmp(state, "done") == 0 || strcmp(state, "failed") == 0 ||
							 strcmp(state, "cancelled") == 0) ? JOB_ENDED : JOB_AGAIN;
}
