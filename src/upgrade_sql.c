/*
 * upgrade_sql.c: the network half of the Odoo upgrade functions; the SQL
 * half (dbsync_upgrade_*) keeps each request's lifecycle in
 * dbsync.upgrade_request. These internal functions take the request's key
 * from there and never show it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "odoo.h"
#include "stream_io.h"
#include "transfer.h"

static char *
text_arg(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static Datum
jsonb_from(const char *json)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
}

PG_FUNCTION_INFO_V1(dbsync_odoo_create);

/* create: (server, target, aim, filename, contract, email, timezone) -> the request (with its key) */
Datum
dbsync_odoo_create(PG_FUNCTION_ARGS)
{
	DbsyncServer *srv = dbsync_server_get(text_arg(fcinfo, 0), "odoo_upgrade");
	char	   *contract = text_arg(fcinfo, 4);
	char	   *email = text_arg(fcinfo, 5);
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
	fields = lappend(fields, text_arg(fcinfo, 1));
	fields = lappend(fields, "aim");
	fields = lappend(fields, text_arg(fcinfo, 2));
	fields = lappend(fields, "filename");
	fields = lappend(fields, text_arg(fcinfo, 3));
	fields = lappend(fields, "timezone");
	fields = lappend(fields, text_arg(fcinfo, 6));
	request = odoo_call(srv, "create", fields, NULL, NULL);
	if (request == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("the Odoo upgrade service (server \"%s\") accepted the request but sent no request back",
						srv->name)));
	PG_RETURN_DATUM(jsonb_from(request));
}

PG_FUNCTION_INFO_V1(dbsync_odoo_request);

/* process or status: (server, method, request id, key) -> the request, or NULL */
Datum
dbsync_odoo_request(PG_FUNCTION_ARGS)
{
	DbsyncServer *srv = dbsync_server_get(text_arg(fcinfo, 0), "odoo_upgrade");
	char	   *method = text_arg(fcinfo, 1);
	char	   *id = psprintf(INT64_FORMAT, PG_GETARG_INT64(2));
	char	   *key = text_arg(fcinfo, 3);
	char	   *request;

	if (strcmp(method, "process") != 0 && strcmp(method, "status") != 0)
		elog(ERROR, "unknown upgrade method \"%s\"", method);
	request = odoo_call(srv, method, list_make4("key", key, "request", id), NULL, key);
	if (request == NULL)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(jsonb_from(request));
}

/* What a transfer needs to reach the service. */
typedef struct OdooTransfer
{
	const DbsyncServer *srv;
	List	   *fields;			/* upload: the query fields */
	const char *key;
	const char *url;			/* download: the link */
	const char *shown;
} OdooTransfer;

static void
odoo_upload_fetch(void *arg, DbsyncStream *stream)
{
	OdooTransfer *t = arg;

	(void) odoo_call(t->srv, "upload", t->fields, stream, t->key);
}

static void
odoo_download_fetch(void *arg, DbsyncStream *stream)
{
	OdooTransfer *t = arg;

	odoo_download(t->srv, t->url, t->shown, stream);
}

PG_FUNCTION_INFO_V1(dbsync_odoo_upload);

/* upload: (server, request id, key, path, loid) -> (bytes, sha256); path or loid */
Datum
dbsync_odoo_upload(PG_FUNCTION_ARGS)
{
	DbsyncServer *srv = dbsync_server_get(text_arg(fcinfo, 0), "odoo_upgrade");
	char	   *id = psprintf(INT64_FORMAT, PG_GETARG_INT64(1));
	char	   *key = text_arg(fcinfo, 2);
	DbsyncStream *source = PG_ARGISNULL(3) ? stream_lo_source(PG_GETARG_OID(4)) : stream_file_source(text_arg(fcinfo, 3));
	OdooTransfer t = {.srv = srv, .fields = list_make4("key", key, "request", id), .key = key};
	char		sha256[65];
	int64		bytes = transfer_run(source, odoo_upload_fetch, &t, sha256);

	PG_RETURN_DATUM(transfer_result(fcinfo, bytes, sha256, InvalidOid));
}

PG_FUNCTION_INFO_V1(dbsync_odoo_download);

/* download: (server, url, shown, path) -> (bytes, sha256, loid); into a new large object when path is NULL */
Datum
dbsync_odoo_download(PG_FUNCTION_ARGS)
{
	DbsyncServer *srv = dbsync_server_get(text_arg(fcinfo, 0), "odoo_upgrade");
	char	   *path = text_arg(fcinfo, 3);
	DbsyncStream *sink = path ? stream_file_sink(path) : stream_lo_sink();
	OdooTransfer t = {.srv = srv, .url = text_arg(fcinfo, 1), .shown = text_arg(fcinfo, 2)};
	char		sha256[65];
	int64		bytes = transfer_run(sink, odoo_download_fetch, &t, sha256);

	PG_RETURN_DATUM(transfer_result(fcinfo, bytes, sha256, path ? InvalidOid : stream_lo_oid(sink)));
}
