/*
 * export_sql.c: the network half of the octoplant export functions; the SQL
 * half (dbsync_export_*) keeps each order's lifecycle in dbsync.export_order.
 */
#include "postgres.h"

#include "fmgr.h"

#include "octoplant.h"
#include "sql_args.h"
#include "stream_io.h"
#include "transfer.h"

PG_FUNCTION_INFO_V1(dbsync_octoplant_order);

/* (server, contents) -> the Operation of the new order */
Datum
dbsync_octoplant_order(PG_FUNCTION_ARGS)
{
	DbsyncServer *srv = dbsync_server_get(dbsync_text_arg(fcinfo, 0), "octoplant");
	Jsonb	   *contents = PG_GETARG_JSONB_P(1);
	char	   *body = psprintf("{\"exportContents\": %s}", JsonbToCString(NULL, &contents->root, VARSIZE(contents)));

	PG_RETURN_DATUM(dbsync_jsonb_datum(octoplant_call(srv, "POST", "/v1/order", body)));
}

PG_FUNCTION_INFO_V1(dbsync_octoplant_get);

/* (server, name) -> the order's Operation (STATE_UNSPECIFIED when the service does not know it) */
Datum
dbsync_octoplant_get(PG_FUNCTION_ARGS)
{
	DbsyncServer *srv = dbsync_server_get(dbsync_text_arg(fcinfo, 0), "octoplant");

	PG_RETURN_DATUM(dbsync_jsonb_datum(octoplant_call(srv, "GET", octoplant_order_path(dbsync_text_arg(fcinfo, 1), ""), NULL)));
}

PG_FUNCTION_INFO_V1(dbsync_octoplant_cancel);

Datum
dbsync_octoplant_cancel(PG_FUNCTION_ARGS)
{
	DbsyncServer *srv = dbsync_server_get(dbsync_text_arg(fcinfo, 0), "octoplant");

	(void) octoplant_call(srv, "POST", octoplant_order_path(dbsync_text_arg(fcinfo, 1), "/cancel"), "{}");
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(dbsync_octoplant_download);

/* (server, name, path) -> (bytes, sha256, zip); into a new large object when path is NULL */
Datum
dbsync_octoplant_download(PG_FUNCTION_ARGS)
{
	OctoplantZip order;
	char	   *path = dbsync_text_arg(fcinfo, 2);
	DbsyncStream *sink;
	char		sha256[65];
	int64		bytes;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("server and order name must not be null")));
	order.srv = dbsync_server_get(dbsync_text_arg(fcinfo, 0), "octoplant");
	order.name = dbsync_text_arg(fcinfo, 1);
	sink = path ? stream_file_sink(path) : stream_lo_sink();
	bytes = transfer_run(sink, octoplant_fetch_zip, &order, sha256);
	PG_RETURN_DATUM(transfer_result(fcinfo, bytes, sha256, path ? InvalidOid : stream_lo_oid(sink)));
}

PG_FUNCTION_INFO_V1(dbsync_grpc_code_name);

Datum
dbsync_grpc_code_name(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(grpc_code_name(PG_GETARG_INT32(0))));
}
