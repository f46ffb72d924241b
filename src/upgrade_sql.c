/*
 * upgrade_sql.c: the network half of the Odoo upgrade functions; the SQL
 * half (dbsync_upgrade_*) keeps each request's lifecycle in
 * dbsync.upgrade_request. These internal functions take the request's key
 * from there and never show it.
 */
#include "postgres.h"

#include "fmgr.h"

#include "odoo.h"
#include "sql_args.h"
#include "stream_io.h"
#include "transfer.h"

PG_FUNCTION_INFO_V1(dbsync_odoo_create);

/* create: (server, target, aim, filename, contract, email, timezone) -> the request (with its key) */
Datum
dbsync_odoo_create(PG_FUNCTION_ARGS)
{
	DbsyncServer *srv = dbsync_server_get(dbsync_text_arg(fcinfo, 0), "odoo_upgrade");
	char	   *contract = dbsync_text_arg(fcinfo, 4);
	char	   *email = dbsync_text_arg(fcinfo, 5);
	List	   *fields;
	char	   *request;

	/* The user mapping gives what the call does not. */
	if (contract == NULL)
		contract = (char *) dbsync_option_value(srv->mapping_options, "contract");
	if (email == NULL)
		email = (char *) dbsync_option_value(srv->mapping_options, "email");
	if (contract == NULL || email == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an upgrade request needs a contract and an e-mail address"),
				 errhint("Pass contract and email, or put them in your user mapping for server \"%s\".", srv->name)));

	fields = list_make4("contract", contract, "email", email);
	fields = lappend(fields, "target");
	fields = lappend(fields, dbsync_text_arg(fcinfo, 1));
	fields = lappend(fields, "aim");
	fields = lappend(fields, dbsync_text_arg(fcinfo, 2));
	fields = lappend(fields, "filename");
	fields = lappend(fields, dbsync_text_arg(fcinfo, 3));
	fields = lappend(fields, "timezone");
	fields = lappend(fields, dbsync_text_arg(fcinfo, 6));
	request = odoo_call(srv, "create", fields, NULL, NULL);
	if (request == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("the Odoo upgrade service (server \"%s\") accepted the request but sent no request back",
						srv->name)));
	PG_RETURN_DATUM(dbsync_jsonb_datum(request));
}

PG_FUNCTION_INFO_V1(dbsync_odoo_request);

/* process or status: (server, method, request id, key) -> the request, or NULL */
Datum
dbsync_odoo_request(PG_FUNCTION_ARGS)
{
	DbsyncServer *srv = dbsync_server_get(dbsync_text_arg(fcinfo, 0), "odoo_upgrade");
	char	   *method = dbsync_text_arg(fcinfo, 1);
	char	   *id = psprintf(INT64_FORMAT, PG_GETARG_INT64(2));
	char	   *key = dbsync_text_arg(fcinfo, 3);
	char	   *request;

	if (strcmp(method, "process") != 0 && strcmp(method, "status") != 0)
		elog(ERROR, "unknown upgrade method \"%s\"", method);
	request = odoo_call(srv, method, list_make4("key", key, "request", id), NULL, key);
	if (request == NULL)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(dbsync_jsonb_datum(request));
}

/* What an upload needs to reach the service. */
typedef struct OdooUpload
{
	const DbsyncServer *srv;
	List	   *fields;			/* the query fields */
	const char *key;
} OdooUpload;

static void
odoo_upload_fetch(void *arg, DbsyncStream *stream)
{
	OdooUpload *t = arg;

	(void) odoo_call(t->srv, "upload", t->fields, stream, t->key);
}

PG_FUNCTION_INFO_V1(dbsync_odoo_upload);

/* upload: (server, request id, key, path, loid) -> (bytes, sha256); path or loid */
Datum
dbsync_odoo_upload(PG_FUNCTION_ARGS)
{
	DbsyncServer *srv = dbsync_server_get(dbsync_text_arg(fcinfo, 0), "odoo_upgrade");
	char	   *id = psprintf(INT64_FORMAT, PG_GETARG_INT64(1));
	char	   *key = dbsync_text_arg(fcinfo, 2);
	DbsyncStream *source = PG_ARGISNULL(3) ? stream_lo_source(PG_GETARG_OID(4)) : stream_file_source(dbsync_text_arg(fcinfo, 3));
	OdooUpload	t = {.srv = srv, .fields = list_make4("key", key, "request", id), .key = key};
	char		sha256[65];
	int64		bytes = transfer_run(source, odoo_upload_fetch, &t, sha256);

	PG_RETURN_DATUM(transfer_result(fcinfo, bytes, sha256, InvalidOid));
}

PG_FUNCTION_INFO_V1(dbsync_odoo_download);

/* download: (server, url, shown, path) -> (bytes, sha256, loid); into a new large object when path is NULL */
Datum
dbsync_odoo_download(PG_FUNCTION_ARGS)
{
	DbsyncServer *srv = dbsync_server_get(dbsync_text_arg(fcinfo, 0), "odoo_upgrade");
	char	   *path = dbsync_text_arg(fcinfo, 3);
	DbsyncStream *sink = path ? stream_file_sink(path) : stream_lo_sink();
	OdooDump	dump = {srv, dbsync_text_arg(fcinfo, 1), dbsync_text_arg(fcinfo, 2)};
	char		sha256[65];
	int64		bytes = transfer_run(sink, odoo_fetch_dump, &dump, sha256);

	PG_RETURN_DATUM(transfer_result(fcinfo, bytes, sha256, path ? InvalidOid : stream_lo_oid(sink)));
}
