/*
 * octoplant_client.c: requests to the octoplant Export API and the meaning of
 * its errors. The API is a gRPC gateway: an error is an HTTP status with a
 * body {code, message, details}, code being a gRPC status code; the token
 * endpoint may also answer OAuth2's {error, error_description}.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "json_layer.h"
#include "octoplant.h"
#include "zip_sink.h"

#define GRPC_UNAUTHENTICATED 16

static const char *const grpc_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"
};

const char *
grpc_code_name(int code)
{
	if (code >= 0 && code < (int) lengthof(grpc_names))
		return grpc_names[code];
	return psprintf("code %d", code);
}

static int
grpc_sqlstate(int code)
{
	switch (code)
	{
		case 3:					/* INVALID_ARGUMENT */
		case 11:				/* OUT_OF_RANGE */
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case 5:					/* NOT_FOUND */
			return ERRCODE_UNDEFINED_OBJECT;
		case 6:					/* ALREADY_EXISTS */
			return ERRCODE_DUPLICATE_OBJECT;
		case 7:					/* PERMISSION_DENIED */
			return ERRCODE_INSUFFICIENT_PRIVILEGE;
		case 8:					/* RESOURCE_EXHAUSTED */
			return ERRCODE_INSUFFICIENT_RESOURCES;
		case 9:					/* FAILED_PRECONDITION */
			return ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		case 12:				/* UNIMPLEMENTED */
			return ERRCODE_FEATURE_NOT_SUPPORTED;
		case 14:				/* UNAVAILABLE */
			return ERRCODE_CONNECTION_FAILURE;
		case 16:				/* UNAUTHENTICATED */
			return ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		default:
			return ERRCODE_FDW_ERROR;
	}
}

static char *
server_text(const char *s)
{
	return pg_any_to_server(s, strlen(s), PG_UTF8);
}

int
octoplant_error_code(const char *body, size_t len)
{
	DbsyncJson *root = body ? dbsync_json_try_parse(body, len) : NULL;
	int64		code;

	if (root != NULL && dbsync_json_int64(dbsync_json_member(root, "code"), &code) && code >= 0 && code <= PG_INT32_MAX)
		return (int) code;
	return -1;
}

void
octoplant_raise(const DbsyncHttpRequest *req, long status, const char *body, size_t len)
{
	DbsyncJson *root = body ? dbsync_json_try_parse(body, len) : NULL;
	int			code = octoplant_error_code(body, len);
	const char *message = dbsync_json_string(dbsync_json_member(root, "message"));
	const char *oauth_error = dbsync_json_string(dbsync_json_member(root, "error"));
	DbsyncJson *details = dbsync_json_member(root, "details");
	const char *hint = NULL;

	if (code == GRPC_UNAUTHENTICATED || status == 401)
		hint = psprintf("Check the user and password of your user mapping for server \"%s\" (and client_id and client_secret where the service has its own).",
						req->server_name);
	if (code >= 0)
		ereport(ERROR,
				(errcode(grpc_sqlstate(code)),
				 errmsg("server \"%s\" refused %s %s: %s: %s", req->server_name, req->method, req->path,
						grpc_code_name(code), message ? server_text(message) : "(no message)"),
				 errdetail("HTTP %ld, gRPC code %d%s%s.", status, code,
						   dbsync_json_array_length(details) > 0 ? ", details: " : "",
						   dbsync_json_array_length(details) > 0 ? server_text(dbsync_json_dump(details)) : ""),
				 hint ? errhint("%s", hint) : 0));
	if (oauth_error != NULL)
	{
		const char *description = dbsync_json_string(dbsync_json_member(root, "error_description"));

		ereport(ERROR,
				(errcode(status == 400 || status == 401 ? ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION : ERRCODE_FDW_ERROR),
				 errmsg("server \"%s\" refused %s %s: %s%s%s", req->server_name, req->method, req->path,
						server_text(oauth_error), description ? ": " : "", description ? server_text(description) : ""),
				 errdetail("HTTP %ld.", status),
				 hint ? errhint("%s", hint) : 0));
	}
	dbsync_http_status_error(req, status, NULL, hint);
}

char *
octoplant_order_path(const char *name, const char *suffix)
{
	StringInfoData path;

	initStringInfo(&path);
	appendStringInfoString(&path, "/v1/order/");
	dbsync_http_append_escaped(&path, name);
	appendStringInfoString(&path, suffix);
	return path.data;
}

/* Whether a reply refuses the token: then one fresh token and one retry. */
static bool
token_refused(long status, const char *body, size_t len)
{
	return status == 401 || (status >= 400 && octoplant_error_code(body, len) == GRPC_UNAUTHENTICATED);
}

char *
octoplant_call(const DbsyncServer *srv, const char *method, const char *path, const char *body)
{
	DbsyncHttpRequest req;
	DbsyncHttpResponse resp;
	DbsyncJson *reply;

	dbsync_http_request_init(&req, srv, method, path);
	req.user = NULL;
	req.password = NULL;
	req.accept = "application/json";
	if (body != NULL)
	{
		req.content_type = "application/json";
		req.body = body;
		req.body_len = strlen(body);
	}
	for (int attempt = 0;; attempt++)
	{
		req.bearer = octoplant_token(srv, attempt > 0);
		dbsync_http_perform(&req, &resp);
		if (attempt == 0 && token_refused(resp.status, resp.body, resp.body_len))
			continue;
		break;
	}
	if (resp.status != 200)
		octoplant_raise(&req, resp.status, resp.body, resp.body_len);
	reply = dbsync_json_parse(resp.body, resp.body_len,
							  psprintf("reply of server \"%s\" to %s %s", srv->name, method, req.path));
	if (!dbsync_json_is_object(reply))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("reply of server \"%s\" to %s %s is not a JSON object", srv->name, method, req.path)));
	return dbsync_json_dump(reply);
}

void
octoplant_download(const DbsyncServer *srv, const char *name, DbsyncStream *sink)
{
	DbsyncHttpRequest req;
	DbsyncHttpResponse resp;
	DbsyncStream *zip = zip_sink_wrap(sink, psprintf("the download of export order \"%s\"", name));
	const char *kept = NULL;
	size_t		kept_len = 0;

	dbsync_http_request_init(&req, srv, "GET", octoplant_order_path(name, "/download"));
	req.user = NULL;
	req.password = NULL;
	req.accept = "application/zip, application/json";
	req.reply_stream = zip;
	req.timeout_ms = 0;			/* a big export takes what it takes; stalls are still caught */
	for (int attempt = 0;; attempt++)
	{
		req.bearer = octoplant_token(srv, attempt > 0);
		zip_sink_restart(zip);
		dbsync_http_perform(&req, &resp);
		if (zip_sink_started(zip))
			break;
		kept = zip_sink_kept(zip, &kept_len);
		if (attempt == 0 && token_refused(resp.status, kept, kept_len))
			continue;
		break;
	}
	if (resp.status != 200)
	{
		/* An error body never reached the sink (it does not start like a ZIP). */
		if (!zip_sink_started(zip))
			octoplant_raise(&req, resp.status, kept, kept_len);
		dbsync_http_status_error(&req, resp.status, NULL, NULL);
	}
	zip_sink_check_end(zip);
}

void
octoplant_fetch_zip(void *arg, DbsyncStream *sink)
{
	OctoplantZip *zip = arg;

	octoplant_download(zip->srv, zip->name, sink);
}
