/*
 * flexi_records.c: ABRA Flexi record listings, for the initial load and for
 * the records that changes touch, and the company's evidence list.
 *
 * A listing is {"winstrom":{"<evidence>":[{record}, ...]}}. Each record is
 * kept as the exact JSON text the server sent (it becomes jsonb once, in the
 * database), read in one streaming pass.
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "flexi.h"
#include "http.h"
#include "json_layer.h"
#include "json_stream.h"

typedef struct ListingState
{
	const char *evidence;
	const char *what;
	int			depth;
	int			list_depth;		/* depth of the evidence's array, 0 until found */
	bool		has_winstrom;
	const char *record_start;	/* '{' of the record being read */
	char	   *record_id;		/* its "id", as sent */
	int			n;
	int			cap;
	FlexiRecord *records;
} ListingState;

static void
listing_open(void *arg, bool is_object, const JsonName *field, const char *start)
{
	ListingState *st = (ListingState *) arg;

	st->depth++;
	if (st->depth == 2 && is_object && json_name_is(field, "winstrom"))
		st->has_winstrom = true;
	else if (st->depth == 3 && st->has_winstrom && !is_object && json_name_is(field, st->evidence))
		st->list_depth = 3;
	else if (st->list_depth == 3 && st->depth == 4)
	{
		if (!is_object)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s lists a record that is not an object", st->what)));
		st->record_start = start;
		st->record_id = NULL;
	}
}

static void
listing_close(void *arg, bool is_object, const char *end)
{
	ListingState *st = (ListingState *) arg;

	if (st->list_depth == 3 && st->depth == 4)
	{
		FlexiRecord *r;

		if (st->n == st->cap)
		{
			st->cap = st->cap ? st->cap * 2 : 64;
			st->records = st->records ? repalloc(st->records, sizeof(FlexiRecord) * st->cap)
				: palloc(sizeof(FlexiRecord) * st->cap);
		}
		r = &st->records[st->n];
		if (st->record_id == NULL || !dbsync_parse_int64_strict(st->record_id, &r->id))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("%s has record %d without a valid numeric \"id\"", st->what, st->n + 1)));
		r->json = pnstrdup(st->record_start, end - st->record_start);
		st->n++;
	}
	else if (st->depth == 3 && st->list_depth == 3)
		st->list_depth = -1;	/* that list is done; another one of the same name is ignored */
	st->depth--;
}

static void
listing_scalar(void *arg, const JsonName *field, JsonToken *token)
{
	ListingState *st = (ListingState *) arg;

	/* The record's text must stay intact: the id is copied, never cut in place. */
	if (st->list_depth == 3 && st->depth == 4 && json_name_is(field, "id") &&
		(token->type == JSON_TOKEN_STRING || token->type == JSON_TOKEN_NUMBER))
		st->record_id = json_token_string(token, false);
}

FlexiRecordList *
flexi_parse_record_list(char *body, size_t len, const char *evidence, const char *what)
{
	JsonStreamHandler handler = {0};
	ListingState st;
	FlexiRecordList *list;

	memset(&st, 0, sizeof(st));
	st.evidence = evidence;
	st.what = what;
	handler.state = &st;
	handler.open = listing_open;
	handler.close = listing_close;
	handler.scalar = listing_scalar;
	json_stream_read(body, len, what, &handler);

	if (!st.has_winstrom)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s is not an ABRA Flexi listing", what),
				 errdetail("It has no \"winstrom\" object.")));

	/* No list under the evidence's name means no records. */
	list = palloc0(sizeof(FlexiRecordList));
	list->nrecords = st.n;
	list->records = st.records;
	return list;
}

static FlexiRecordList *
fetch_listing(const DbsyncServer *srv, const char *evidence, StringInfo path)
{
	DbsyncHttpRequest req;
	DbsyncHttpResponse resp;

	dbsync_http_request_init(&req, srv, "GET", path->data);
	req.accept = "application/json";
	flexi_perform(&req, &resp);
	return flexi_parse_record_list(resp.body, resp.body_len, evidence, flexi_reply_name(&req));
}

static StringInfo
evidence_path(const DbsyncServer *srv, const char *evidence)
{
	StringInfo	path = flexi_company_path(srv, "/");

	dbsync_http_append_escaped(path, evidence);
	return path;
}

/* The records with these ids that exist, by the (id in (...)) filter. */
FlexiRecordList *
flexi_fetch_records_by_id(const DbsyncServer *srv, const char *evidence, const int64 *ids, int nids)
{
	StringInfo	path = evidence_path(srv, evidence);

	Assert(nids > 0 && nids <= FLEXI_MAX_IDS_PER_REQUEST);
	appendStringInfoString(path, "/(id%20in%20(");
	for (int i = 0; i < nids; i++)
		appendStringInfo(path, "%s" INT64_FORMAT, i ? "," : "", ids[i]);
	appendStringInfoString(path, ")).json?limit=0&detail=full");
	return fetch_listing(srv, evidence, path);
}

/*
 * Up to `limit` records with ids above after_id, in id order: the initial
 * load pages by id, so records created or deleted meanwhile shift nothing.
 */
FlexiRecordList *
flexi_fetch_records_after(const DbsyncServer *srv, const char *evidence, int64 after_id, int limit)
{
	StringInfo	path = evidence_path(srv, evidence);

	appendStringInfo(path, "/(id%%20%%3E%%20" INT64_FORMAT ").json?limit=%d&order=id%%40A&detail=full",
					 after_id, limit);
	return fetch_listing(srv, evidence, path);
}

/* The company's evidences (evidencePath of /c/{company}/evidence-list.json). */
List *
flexi_fetch_evidence_list(const DbsyncServer *srv)
{
	StringInfo	path = flexi_company_path(srv, "/evidence-list.json");
	DbsyncHttpRequest req;
	DbsyncHttpResponse resp;
	DbsyncJson *root;
	DbsyncJson *list;
	List	   *result = NIL;

	dbsync_http_request_init(&req, srv, "GET", path->data);
	req.accept = "application/json";
	flexi_perform(&req, &resp);
	root = dbsync_json_parse(resp.body, resp.body_len, flexi_reply_name(&req));
	list = dbsync_json_member(dbsync_json_member(root, "winstrom"), "evidences");
	/* Some servers nest the list one level deeper: {"evidences":{"evidence":[...]}}. */
	if (dbsync_json_is_object(list))
		list = dbsync_json_member(list, "evidence");
	if (!dbsync_json_is_array(list))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s is not an evidence list", flexi_reply_name(&req))));
	for (size_t i = 0; i < dbsync_json_array_length(list); i++)
	{
		const char *name = dbsync_json_string(dbsync_json_member(dbsync_json_array_item(list, i),
																 "evidencePath"));

		if (name == NULL || name[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s has an entry without \"evidencePath\"", flexi_reply_name(&req))));
		result = lappend(result, pstrdup(name));
	}
	return result;
}
