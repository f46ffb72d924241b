/*
 * flexi_parse.c: reads ABRA Flexi replies exactly.
 *
 * Flexi sends every number as a JSON string, `next` as "none" at the end of
 * the log, and timestamps with one to six fraction digits in the server's
 * local time. Anything else is an ERROR: a page is used whole or not at all.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/datetime.h"
#include "utils/json.h"

#include "flexi.h"
#include "json_layer.h"
#include "json_stream.h"

/* "YYYY-MM-DD HH:MM:SS[.f{1,6}]", nothing before or after. */
bool
flexi_parse_timestamp(const char *s, Timestamp *result)
{
	struct pg_tm tm;
	fsec_t		fsec = 0;
	int			v[6];
	static const int widths[6] = {4, 2, 2, 2, 2, 2};
	static const char seps[6] = {'-', '-', ' ', ':', ':', '\0'};
	const char *p = s;

	for (int f = 0; f < 6; f++)
	{
		v[f] = 0;
		for (int i = 0; i < widths[f]; i++, p++)
		{
			if (*p < '0' || *p > '9')
				return false;
			v[f] = v[f] * 10 + (*p - '0');
		}
		if (f < 5)
		{
			if (*p != seps[f])
				return false;
			p++;
		}
	}
	if (*p == '.')
	{
		int			digits = 0;
		int			scale = 100000;

		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
		{
			if (digits == 6)
				return false;
			fsec += (*p - '0') * scale;
			scale /= 10;
		}
		if (digits == 0)
			return false;
	}
	if (*p != '\0')
		return false;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = v[0];
	tm.tm_mon = v[1];
	tm.tm_mday = v[2];
	tm.tm_hour = v[3];
	tm.tm_min = v[4];
	tm.tm_sec = v[5];
	if (tm.tm_year < 1 || tm.tm_mon < 1 || tm.tm_mon > MONTHS_PER_YEAR ||
		tm.tm_mday < 1 || tm.tm_mday > day_tab[isleap(tm.tm_year)][tm.tm_mon - 1] ||
		tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59)
		return false;
	return tm2timestamp(&tm, fsec, NULL, result) == 0;
}

/*
 * A change-log page is read in one streaming pass (json_stream.h), its
 * strings used in place: a jansson tree of a 1000-change page cost 2.9 ms
 * against a budget of 2 ms for the whole page (bench/README.md). The pass
 * collects raw values; each change is checked as soon as it closes.
 */
typedef enum PageContext
{
	CTX_ROOT,					/* the top-level object */
	CTX_WINSTROM,				/* {"winstrom": {...}} */
	CTX_CHANGES,				/* "changes": [...] */
	CTX_CHANGE,					/* one change object */
	CTX_EXTERNAL_IDS,			/* "external-ids": [...] */
	CTX_OTHER					/* anything else: skipped */
} PageContext;

#define MAX_DEPTH 64

/* A scalar as the server sent it: its text and JSON type; NULL text when absent. */
typedef struct RawValue
{
	char	   *text;
	JsonTokenType type;
} RawValue;

typedef struct RawChange
{
	bool		is_object;
	RawValue	evidence;
	RawValue	version;
	RawValue	operation;
	RawValue	timestamp;
	RawValue	id;
	bool		ids_not_list;	/* external-ids was there but not a list */
	bool		ids_not_strings;
	List	   *external_ids;
} RawChange;

typedef struct PageState
{
	PageContext stack[MAX_DEPTH];
	int			depth;			/* entries used in stack */
	bool		has_winstrom;
	bool		changes_not_list;
	RawValue	global_version;
	RawValue	next;
	RawChange	cur;			/* the change being read */
	const char *what;			/* names the reply in errors */
	int			nchanges;
	int			cap;
	FlexiChange *changes;		/* checked changes */
} PageState;

static void check_change(const RawChange *raw, int index, const char *what, FlexiChange *c);

static PageContext
top(PageState *st)
{
	return st->depth > 0 ? st->stack[st->depth - 1] : CTX_OTHER;
}

/* Checks the change just read and keeps it. */
static void
finish_change(PageState *st)
{
	if (st->nchanges == st->cap)
	{
		st->cap = st->cap ? st->cap * 2 : 256;
		st->changes = st->changes ? repalloc(st->changes, sizeof(FlexiChange) * st->cap)
			: palloc(sizeof(FlexiChange) * st->cap);
	}
	check_change(&st->cur, st->nchanges, st->what, &st->changes[st->nchanges]);
	st->nchanges++;
}

/* An element of "changes" begins; one that is not an object is refused at once. */
static void
new_change(PageState *st, bool is_object)
{
	memset(&st->cur, 0, sizeof(RawChange));
	st->cur.is_object = is_object;
	if (!is_object)
		finish_change(st);
}

static void
page_open(void *arg, bool is_object, const JsonName *field, const char *start)
{
	PageState  *st = (PageState *) arg;
	PageContext parent = top(st);
	PageContext ctx = CTX_OTHER;

	if (st->depth == 0)
		ctx = is_object ? CTX_ROOT : CTX_OTHER;
	else if (parent == CTX_ROOT && is_object && json_name_is(field, "winstrom"))
	{
		ctx = CTX_WINSTROM;
		st->has_winstrom = true;
	}
	else if (parent == CTX_WINSTROM && json_name_is(field, "changes"))
	{
		if (is_object)
			st->changes_not_list = true;
		else
			ctx = CTX_CHANGES;
	}
	else if (parent == CTX_CHANGES)
	{
		new_change(st, is_object);
		if (is_object)
			ctx = CTX_CHANGE;
	}
	else if (parent == CTX_CHANGE && json_name_is(field, "external-ids"))
	{
		if (is_object)
			st->cur.ids_not_list = true;
		else
			ctx = CTX_EXTERNAL_IDS;
	}
	else if (parent == CTX_EXTERNAL_IDS)
		st->cur.ids_not_strings = true;

	if (st->depth == MAX_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s nests deeper than %d levels", st->what, MAX_DEPTH)));
	st->stack[st->depth++] = ctx;
}

static void
page_close(void *arg, bool is_object, const char *end)
{
	PageState  *st = (PageState *) arg;

	if (top(st) == CTX_CHANGE)
		finish_change(st);
	st->depth--;
}

static void
page_scalar(void *arg, const JsonName *field, JsonToken *token)
{
	PageState  *st = (PageState *) arg;
	RawValue	v;

	switch (top(st))
	{
		case CTX_WINSTROM:
		case CTX_CHANGE:
		case CTX_EXTERNAL_IDS:
			break;
		case CTX_CHANGES:
			new_change(st, false);
			return;
		default:
			return;
	}

	v.text = json_token_string(token, true);
	v.type = token->type;
	if (top(st) == CTX_WINSTROM)
	{
		if (json_name_is(field, "@globalVersion"))
			st->global_version = v;
		else if (json_name_is(field, "next"))
			st->next = v;
		else if (json_name_is(field, "changes"))
			st->changes_not_list = true;
	}
	else if (top(st) == CTX_CHANGE)
	{
		RawChange  *c = &st->cur;

		if (json_name_is(field, "@evidence"))
			c->evidence = v;
		else if (json_name_is(field, "@in-version"))
			c->version = v;
		else if (json_name_is(field, "@operation"))
			c->operation = v;
		else if (json_name_is(field, "@timestamp"))
			c->timestamp = v;
		else if (json_name_is(field, "id"))
			c->id = v;
		else if (json_name_is(field, "external-ids"))
			c->ids_not_list = (v.type != JSON_TOKEN_NULL);
	}
	else if (v.type == JSON_TOKEN_STRING)
		st->cur.external_ids = lappend(st->cur.external_ids, v.text);
	else
		st->cur.ids_not_strings = true;
}

/* How a value is shown in an error: as JSON text, short. */
static char *
describe(const RawValue *v)
{
	StringInfoData buf;

	if (v->text == NULL)
		return pstrdup("nothing (the member is missing)");
	initStringInfo(&buf);
	if (v->type == JSON_TOKEN_STRING)
		escape_json(&buf, v->text);
	else
		appendStringInfoString(&buf, v->text);
	if (buf.len > 200)
		buf.data[pg_mbcliplen(buf.data, buf.len, 200)] = '\0';
	return buf.data;
}

/* An integer sent as a string of digits (as Flexi does) or as a JSON number. */
static bool
raw_int64(const RawValue *v, int64 *result)
{
	if (v->text == NULL || (v->type != JSON_TOKEN_STRING && v->type != JSON_TOKEN_NUMBER))
		return false;
	return dbsync_parse_int64_strict(v->text, result);
}

static const char *
raw_string(const RawValue *v)
{
	return (v->text != NULL && v->type == JSON_TOKEN_STRING) ? v->text : NULL;
}

static void
bad_value(const char *what, int index, const char *field, const char *expected, const RawValue *v)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("%s has an invalid \"%s\" in change %d", what, field, index + 1),
			 errdetail("Expected %s, got %s.", expected, describe(v))));
}

static void
check_change(const RawChange *raw, int index, const char *what, FlexiChange *c)
{
	const char *s;

	if (!raw->is_object)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s has change %d that is not an object", what, index + 1)));

	s = raw_string(&raw->evidence);
	if (s == NULL || s[0] == '\0')
		bad_value(what, index, "@evidence", "an evidence name", &raw->evidence);
	c->evidence = (char *) s;

	if (!raw_int64(&raw->version, &c->version))
		bad_value(what, index, "@in-version", "a version number", &raw->version);

	s = raw_string(&raw->operation);
	if (s == NULL || (strcmp(s, "create") != 0 && strcmp(s, "update") != 0 && strcmp(s, "delete") != 0))
		bad_value(what, index, "@operation", "create, update or delete", &raw->operation);
	c->operation = (char *) s;

	s = raw_string(&raw->timestamp);
	if (s == NULL || !flexi_parse_timestamp(s, &c->changed_at))
		bad_value(what, index, "@timestamp", "YYYY-MM-DD HH:MM:SS with up to 6 fraction digits", &raw->timestamp);

	if (!raw_int64(&raw->id, &c->record_id))
		bad_value(what, index, "id", "a numeric record id", &raw->id);

	if (raw->ids_not_list || raw->ids_not_strings)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("%s has an invalid \"external-ids\" in change %d", what, index + 1),
				 errdetail("Expected a list of strings.")));
	c->external_ids = raw->external_ids;
}

FlexiChangePage *
flexi_parse_change_page(char *body, size_t len, const char *what)
{
	JsonStreamHandler handler = {0};
	PageState	st;
	FlexiChangePage *page;
	const char *s;

	memset(&st, 0, sizeof(st));
	st.what = what;
	handler.state = &st;
	handler.open = page_open;
	handler.close = page_close;
	handler.scalar = page_scalar;
	json_stream_read(body, len, what, &handler);

	if (!st.has_winstrom)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s is not an ABRA Flexi changes listing", what),
				 errdetail("It has no \"winstrom\" object.")));

	page = palloc0(sizeof(FlexiChangePage));
	if (!raw_int64(&st.global_version, &page->global_version))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s has no valid \"@globalVersion\"", what),
				 errdetail("Got %s.", describe(&st.global_version))));

	s = raw_string(&st.next);
	if (s != NULL && strcmp(s, "none") == 0)
		page->has_next = false;
	else if (raw_int64(&st.next, &page->next_version))
		page->has_next = true;
	else
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s has no valid \"next\"", what),
				 errdetail("Expected a version number or \"none\", got %s.", describe(&st.next))));

	if (st.changes_not_list)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s has a \"changes\" member that is not a list", what)));

	page->nchanges = st.nchanges;
	page->changes = st.changes;
	return page;
}

/* Text of the first <tag>...</tag> in an XML body, entities decoded; NULL if absent. */
static char *
xml_element_text(const char *body, const char *tag)
{
	char	   *open = psprintf("<%s>", tag);
	char	   *close = psprintf("</%s>", tag);
	const char *start = strstr(body, open);
	const char *end;
	StringInfoData buf;

	if (start == NULL)
		return NULL;
	start += strlen(open);
	end = strstr(start, close);
	if (end == NULL)
		return NULL;

	initStringInfo(&buf);
	for (const char *p = start; p < end; p++)
	{
		static const char *const entities[][2] = {
			{"&lt;", "<"}, {"&gt;", ">"}, {"&amp;", "&"}, {"&quot;", "\""}, {"&apos;", "'"}
		};
		bool		decoded = false;

		for (int e = 0; e < (int) lengthof(entities) && !decoded; e++)
		{
			size_t		n = strlen(entities[e][0]);

			if (strncmp(p, entities[e][0], n) == 0 && p + n <= end)
			{
				appendStringInfoString(&buf, entities[e][1]);
				p += n - 1;
				decoded = true;
			}
		}
		if (!decoded)
			appendStringInfoChar(&buf, *p);
	}
	return buf.data;
}

/* changes/status.xml answers <success>true</success> (or a bare true/false). */
bool
flexi_parse_status_xml(const char *body, bool *enabled)
{
	char	   *text = xml_element_text(body, "success");
	char	   *trimmed;
	size_t		len;

	if (text == NULL)
		text = pstrdup(body);
	trimmed = text + strspn(text, " \t\r\n");
	len = strlen(trimmed);
	while (len > 0 && strchr(" \t\r\n", trimmed[len - 1]) != NULL)
		trimmed[--len] = '\0';

	if (strcmp(trimmed, "true") == 0)
		*enabled = true;
	else if (strcmp(trimmed, "false") == 0)
		*enabled = false;
	else
		return false;
	return true;
}

/*
 * The message of a Flexi error body: {"winstrom":{"message":..}}, the first of
 * results[].errors[].message, or <message> in XML. NULL when there is none.
 */
char *
flexi_error_message(const char *body, size_t len)
{
	DbsyncJson *root = dbsync_json_try_parse(body, len);
	char	   *message = NULL;

	if (root != NULL)
	{
		DbsyncJson *w = dbsync_json_member(root, "winstrom");
		DbsyncJson *results = dbsync_json_member(w, "results");
		const char *s = dbsync_json_string(dbsync_json_member(w, "message"));

		for (size_t i = 0; s == NULL && i < dbsync_json_array_length(results); i++)
		{
			DbsyncJson *errors = dbsync_json_member(dbsync_json_array_item(results, i), "errors");

			if (dbsync_json_array_length(errors) > 0)
				s = dbsync_json_string(dbsync_json_member(dbsync_json_array_item(errors, 0), "message"));
		}
		message = s ? pstrdup(s) : NULL;
	}
	else if (body != NULL)
		message = xml_element_text(body, "message");

	if (message == NULL)
		return NULL;
	/* Remote text is UTF-8; the database may use another encoding. */
	message = pg_any_to_server(message, strlen(message), PG_UTF8);
	message[pg_mbcliplen(message, strlen(message), 1000)] = '\0';
	return message;
}
