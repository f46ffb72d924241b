/*
 * export_jobs.c: the worker's poll of an octoplant export order (job kind
 * export_poll): read the order, ask the service (no transaction open),
 * record the answer; once it has succeeded, download its ZIP where asked.
 * The job ends with the order; an order the service no longer knows
 * (STATE_UNSPECIFIED) ends it as failed, never as an endless poll.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "bg_txn.h"
#include "jobs.h"
#include "json_layer.h"
#include "octoplant.h"
#include "transfer.h"
#include "worker.h"

/* Streams the ZIP (no transaction open), then records it. */
static void
download_zip(TxnScope *tx, const DbsyncServer *srv, const char *name, const char *path)
{
	static SPIPlanPtr plan;
	OctoplantZip order = {srv, name};
	char		sha256[65];
	int64		bytes = transfer_to_file_outside_txn(path, octoplant_fetch_zip, &order, sha256);
	Datum		values[4];

	txn_begin(tx);
	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(bytes);
	values[2] = CStringGetTextDatum(sha256);
	values[3] = CStringGetTextDatum(path);
	if (txn_execute(txn_plan(&plan, "UPDATE dbsync.export_order SET downloaded_bytes = $2, downloaded_sha256 = $3, "
							 "downloaded_to = $4, downloaded_at = now() WHERE name = $1",
							 4, (Oid[]) {TEXTOID, INT8OID, TEXTOID, TEXTOID}), values, NULL, false) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the download of export order \"%s\"", name);
	txn_commit(tx);
	ereport(LOG, (errmsg("dbsync: downloaded export order \"%s\" to \"%s\" (" INT64_FORMAT " bytes)",
						 name, path, bytes)));
}

JobOutcome
run_export_poll(TxnScope *tx, const DbsyncJob *job, char **result)
{
	static SPIPlanPtr read_plan;
	static SPIPlanPtr record_plan;
	Datum		values[3];
	bool		isnull;
	const char *name;
	char	   *server;
	bool		want_download;
	bool		done;
	char	   *state;
	char	   *file_name;
	DbsyncServer *srv;
	HeapTuple	tup;

	name = dbsync_json_string(dbsync_json_member(dbsync_json_parse(job->args, strlen(job->args), "job arguments"), "name"));
	if (name == NULL)
		elog(ERROR, "job " INT64_FORMAT " has no order name", job->id);

	/* The order, and its server as its owner may use it. */
	txn_begin(tx);
	values[0] = CStringGetTextDatum(name);
	if (txn_execute(txn_plan(&read_plan, "SELECT server, download_when_done AND downloaded_at IS NULL, done, state, "
							 "regexp_replace(name, '[^A-Za-z0-9._-]', '_', 'g') || '.zip' "
							 "FROM dbsync.export_order WHERE name = $1",
							 1, (Oid[]) {TEXTOID}), values, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "could not read export order \"%s\"", name);
	if (SPI_processed == 0)
	{
		txn_commit(tx);
		*result = psprintf("{\"name\": \"%s\", \"state\": null, \"note\": \"order removed\"}", name);
		return JOB_ENDED;
	}
	tup = SPI_tuptable->vals[0];
	server = TextDatumGetCString(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
	want_download = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	done = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
	state = SPI_getvalue(tup, SPI_tuptable->tupdesc, 4);
	file_name = SPI_getvalue(tup, SPI_tuptable->tupdesc, 5);
	srv = dbsync_server_get_as(job->owner, server, "octoplant");
	txn_commit(tx);

	/* A SQL call may have seen it done already: then no status request is needed. */
	if (!done)
	{
		char	   *reply = octoplant_call(srv, "GET", octoplant_order_path(name, ""), NULL);

		txn_begin(tx);
		values[0] = CStringGetTextDatum(server);
		values[1] = CStringGetTextDatum(name);
		values[2] = CStringGetTextDatum(reply);
		if (txn_execute(txn_plan(&record_plan, "SELECT r.state, r.done FROM dbsync.export_record($1, $2, $3::jsonb) r", 3,
								 (Oid[]) {TEXTOID, TEXTOID, TEXTOID}), values, NULL, false) != SPI_OK_SELECT)
			elog(ERROR, "could not record export order \"%s\"", name);
		state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		done = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)) && !isnull;
		txn_commit(tx);
	}

	if (state == NULL || strcmp(state, "STATE_UNSPECIFIED") == 0)
	{
		ereport(WARNING,
				(errmsg("dbsync: octoplant server \"%s\" does not know export order \"%s\" (STATE_UNSPECIFIED): no longer polled",
						server, name)));
		*result = psprintf("{\"name\": \"%s\", \"state\": \"STATE_UNSPECIFIED\", "
						   "\"error\": \"the server does not know this order\"}", name);
		return JOB_GAVE_UP;
	}

	/* Succeeded, and asked for: the ZIP goes into the configured directory. */
	if (done && strcmp(state, "STATE_SUCCEEDED") == 0 && want_download && dbsync_export_download_dir[0] != '\0')
		download_zip(tx, srv, name, psprintf("%s/%s", dbsync_export_download_dir, file_name));

	*result = psprintf("{\"name\": \"%s\", \"state\": \"%s\"}", name, state);
	return done ? JOB_ENDED : JOB_AGAIN;
}
