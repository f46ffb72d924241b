/*
 * flexi_client.c: requests to the ABRA Flexi Changes API.
 *
 * Paths follow the API's documentation: /c/{company}/changes.json for the
 * log, /c/{company}/changes/{enable,disable,status}.xml for its switch.
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "flexi.h"
#include "http.h"

/* The documented reply when enabling needs every user logged out. */
#define FLEXI_LOCK_ERROR "could not obtain lock on relation"

StringInfo
flexi_company_path(const DbsyncServer *srv, const char *rest)
{
	StringInfo	path = makeStringInfo();

	appendStringInfoString(path, "/c/");
	dbsync_http_append_escaped(path, dbsync_option_value(srv->server_options, "company"));
	appendStringInfoString(path, rest);
	return path;
}

char *
flexi_reply_name(const DbsyncHttpRequest *req)
{
	return psprintf("reply of server \"%s\" to %s %s", req->server_name, req->method, req->path);
}

/* Raises the fitting ERROR unless the reply is a success. */
static void
check_reply(const DbsyncHttpRequest *req, const DbsyncHttpResponse *resp)
{
	char	   *message;

	if (resp->status >= 200 && resp->status < 300)
		return;

	message = flexi_error_message(resp->body, resp->body_len);

	if (message != NULL && strstr(message, FLEXI_LOCK_ERROR) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("ABRA Flexi server \"%s\" could not switch the changes API because its database is in use",
						req->server_name),
				 errdetail("The server said: %s", message),
				 errhint("Switching the changes API needs an exclusive lock on the company's database: "
						 "have every user log out of ABRA Flexi (web interface and desktop client), then try again.")));

	switch (resp->status)
	{
		case 402:
			dbsync_http_status_error(req, resp->status, message,
									 "The ABRA Flexi licence does not include writing through the REST API.");
			break;
		case 403:
			dbsync_http_status_error(req, resp->status, message,
									 "The ABRA Flexi licence must include the REST API (reading for the change log, "
									 "writing to switch it on or off), and the user mapping's user needs the rights for it.");
			break;
		case 404:
			dbsync_http_status_error(req, resp->status, message,
									 psprintf("Check the company option of server \"%s\": it must name an existing company.",
											  req->server_name));
			break;
		default:
			dbsync_http_status_error(req, resp->status, message, NULL);
	}
}

void
flexi_perform(DbsyncHttpRequest *req, DbsyncHttpResponse *resp)
{
	dbsync_http_perform(req, resp);
	check_reply(req, resp);
}

FlexiChangePage *
flexi_fetch_changes(const DbsyncServer *srv, bool has_start, int64 start, int limit, List *evidences)
{
	StringInfo	path = flexi_company_path(srv, "/changes.json");
	DbsyncHttpRequest req;
	DbsyncHttpResponse resp;
	ListCell   *lc;

	appendStringInfo(path, "?limit=%d", limit);
	if (has_start)
		appendStringInfo(path, "&start=" INT64_FORMAT, start);
	foreach(lc, evidences)
	{
		appendStringInfoString(path, "&evidence=");
		dbsync_http_append_escaped(path, (const char *) lfirst(lc));
	}

	dbsync_http_request_init(&req, srv, "GET", path->data);
	req.accept = "application/json";
	flexi_perform(&req, &resp);
	return flexi_parse_change_page(resp.body, resp.body_len, flexi_reply_name(&req));
}

void
flexi_set_changes_enabled(const DbsyncServer *srv, bool enable)
{
	StringInfo	path = flexi_company_path(srv, enable ? "/changes/enable.xml" : "/changes/disable.xml");
	DbsyncHttpRequest req;
	DbsyncHttpResponse resp;

	dbsync_http_request_init(&req, srv, "PUT", path->data);
	flexi_perform(&req, &resp);
}

bool
flexi_changes_enabled(const DbsyncServer *srv)
{
	StringInfo	path = flexi_company_path(srv, "/changes/status.xml");
	DbsyncHttpRequest req;
	DbsyncHttpResponse resp;
	bool		enabled;

	dbsync_http_request_init(&req, srv, "GET", path->data);
	flexi_perform(&req, &resp);
	if (!flexi_parse_status_xml(resp.body, &enabled))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s does not say true or false", flexi_reply_name(&req))));
	return enabled;
}

/* The smallest page of the log carries the company's current global version. */
int64
flexi_global_version(const DbsyncServer *srv)
{
	StringInfo	path = flexi_company_path(srv, "/changes.json?limit=1&add-global-version=true");
	DbsyncHttpRequest req;
	DbsyncHttpResponse resp;
	FlexiChangePage *page;

	dbsync_http_request_init(&req, srv, "GET", path->data);
	req.accept = "application/json";
	flexi_perform(&req, &resp);
	page = flexi_parse_change_page(resp.body, resp.body_len, flexi_reply_name(&req));
	return page->global_version;
}
