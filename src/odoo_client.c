/*
 * odoo_client.c: requests to the Odoo upgrade API and the meaning of its
 * failures. Replies are always {"failures": [...], "request": {...}}, also
 * with an HTTP error status; each failure has a reason (TARGET:INVALID,
 * CONTRACT:NOT_FOUND, ...) and a message.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "json_layer.h"
#include "odoo.h"

/* Removes the request's key from a text the service wrote. */
static char *
scrub(const char *text, const char *secret)
{
	StringInfoData buf;
	const char *p = text;
	const char *hit;

	if (text == NULL || secret == NULL || secret[0] == '\0')
		return text ? pstrdup(text) : NULL;
	initStringInfo(&buf);
	while ((hit = strstr(p, secret)) != NULL)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, "<key>");
		p = hit + strlen(secret);
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

static int
reason_sqlstate(const char *reason)
{
	if (strstr(reason, ":INVALID") != NULL && strncmp(reason, "STATE", 5) != 0 && strncmp(reason, "KEY", 3) != 0)
		return ERRCODE_INVALID_PARAMETER_VALUE;
	if (strcmp(reason, "PARAM:MISSING") == 0)
		return ERRCODE_INVALID_PARAMETER_VALUE;
	if (strstr(reason, ":NOT_FOUND") != NULL)
		return ERRCODE_UNDEFINED_OBJECT;
	if (strcmp(reason, "KEY:INVALID") == 0)
		return ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
	if (strncmp(reason, "STATE", 5) == 0 || strncmp(reason, "UPLOAD", 6) == 0 || strncmp(reason, "DUMP", 4) == 0)
		return ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
	return ERRCODE_FDW_ERROR;
}

/* One failure in words: the service's message, with the expected values when given. */
static void
describe_failure(StringInfo buf, DbsyncJson *f)
{
	const char *reason = dbsync_json_string(dbsync_json_member(f, "reason"));
	const char *message = dbsync_json_string(dbsync_json_member(f, "message"));
	DbsyncJson *expected = dbsync_json_member(f, "expected");

	appendStringInfo(buf, "%s%s (%s)", buf->len ? "; " : "", message ? message : "failed", reason ? reason : "?");
	if (dbsync_json_array_length(expected) > 0)
	{
		appendStringInfoString(buf, ", expected one of: ");
		for (size_t i = 0; i < dbsync_json_array_length(expected); i++)
		{
			const char *v = dbsync_json_string(dbsync_json_array_item(expected, i));

			appendStringInfo(buf, "%s%s", i ? ", " : "", v ? v : "?");
		}
	}
}

/* Raises the failures of a reply as one ERROR; returns when there are none. */
static void
check_failures(const DbsyncHttpRequest *req, DbsyncJson *failures, const char *secret)
{
	StringInfoData words;
	const char *first_reason;
	char	   *detail;

	if (dbsync_json_array_length(failures) == 0)
		return;
	initStringInfo(&words);
	for (size_t i = 0; i < dbsync_json_array_length(failures); i++)
		describe_failure(&words, dbsync_json_array_item(failures, i));
	first_reason = dbsync_json_string(dbsync_json_member(dbsync_json_array_item(failures, 0), "reason"));
	detail = scrub(dbsync_json_dump(failures), secret);
	ereport(ERROR,
			(errcode(reason_sqlstate(first_reason ? first_reason : "")),
			 errmsg("the Odoo upgrade service (server \"%s\") refused %s: %s", req->server_name, req->path,
					scrub(pg_any_to_server(words.data, words.len, PG_UTF8), secret)),
			 errdetail("Failures: %s", pg_any_to_server(detail, strlen(detail), PG_UTF8))));
}

char *
odoo_call(const DbsyncServer *srv, const char *method, List *fields, DbsyncStream *body, const char *secret)
{
	StringInfoData path;
	StringInfoData form;
	DbsyncHttpRequest req;
	DbsyncHttpResponse resp;
	DbsyncJson *root;
	DbsyncJson *request;
	ListCell   *lc;

	initStringInfo(&path);
	initStringInfo(&form);
	appendStringInfo(&path, "/database/v1/%s", method);
	for (lc = list_head(fields); lc != NULL; lc = lnext(fields, lnext(fields, lc)))
	{
		const char *name = lfirst(lc);
		const char *value = lfirst(lnext(fields, lc));

		if (value == NULL)
			continue;
		if (form.len > 0)
			appendStringInfoChar(&form, '&');
		appendStringInfo(&form, "%s=", name);
		dbsync_http_append_escaped(&form, value);
	}
	if (body != NULL && form.len > 0)
		appendStringInfo(&path, "?%s", form.data);

	dbsync_http_request_init(&req, srv, "POST", path.data);
	req.accept = "application/json";
	if (body != NULL)
	{
		req.body_stream = body;
		req.content_type = "application/octet-stream";
		req.timeout_ms = 0;		/* a dump takes what it takes; stalls are still caught by curl's low-speed rule */
	}
	else
	{
		req.body = form.data;
		req.body_len = form.len;
		req.content_type = "application/x-www-form-urlencoded";
	}
	dbsync_http_perform(&req, &resp);

	root = dbsync_json_try_parse(resp.body, resp.body_len);
	if (root == NULL)
	{
		if (resp.status >= 400)
			dbsync_http_status_error(&req, resp.status, NULL, NULL);
		root = dbsync_json_parse(resp.body, resp.body_len,
								 psprintf("reply of server \"%s\" to %s %s", req.server_name, req.method, req.path));
	}
	if (!dbsync_json_is_array(dbsync_json_member(root, "failures")))
	{
		if (resp.status >= 400)
			dbsync_http_status_error(&req, resp.status, NULL, NULL);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("reply of server \"%s\" to %s %s has no \"failures\" list", req.server_name, req.method,
						req.path)));
	}
	check_failures(&req, dbsync_json_member(root, "failures"), secret);
	if (resp.status >= 400)
		dbsync_http_status_error(&req, resp.status, NULL, NULL);

	request = dbsync_json_member(root, "request");
	if (!dbsync_json_is_object(request))
		return NULL;
	return dbsync_json_dump(request);
}

void
odoo_download(const DbsyncServer *srv, const char *url, const char *shown, DbsyncStream *sink)
{
	DbsyncHttpRequest req;
	DbsyncHttpResponse resp;

	dbsync_http_request_init_url(&req, srv, "GET", url, shown);
	req.reply_stream = sink;
	req.timeout_ms = 0;
	dbsync_http_perform(&req, &resp);
	if (resp.status != 200)
		dbsync_http_status_error(&req, resp.status, NULL,
								 resp.status == 404 ? "The upgraded dump is there only once the request is done: check dbsync_upgrade_status." : NULL);
}

void
odoo_fetch_dump(void *arg, DbsyncStream *sink)
{
	OdooDump   *dump = arg;

	odoo_download(dump->srv, dump->url, dump->shown, sink);
}
