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

#include "flexi.h"
#include "json_layer.h"

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

static void
bad_value(const char *what, int index, const char *field, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("%s has an invalid \"%s\" in change %d", what, field, index + 1),
			 errdetail("%s", detail)));
}

static char *
describe(const DbsyncJson *v)
{
	char	   *text = v ? dbsync_json_dump(v) : pstrdup("nothing (the member is missing)");

	if (strlen(text) > 200)
		text[200] = '\0';
	return text;
}

static void
parse_change(const DbsyncJson *item, int index, const char *what, FlexiChange *c)
{
	const DbsyncJson *ids;
	const char *s;

	if (!dbsync_json_is_object(item))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s has change %d that is not an object", what, index + 1)));

	s = dbsync_json_string(dbsync_json_member(item, "@evidence"));
	if (s == NULL || s[0] == '\0')
		bad_value(what, index, "@evidence", psprintf("Expected an evidence name, got %s.",
													 describe(dbsync_json_member(item, "@evidence"))));
	c->evidence = pstrdup(s);

	if (!dbsync_json_int64(dbsync_json_member(item, "@in-version"), &c->version))
		bad_value(what, index, "@in-version", psprintf("Expected a version number, got %s.",
													   describe(dbsync_json_member(item, "@in-version"))));

	s = dbsync_json_string(dbsync_json_member(item, "@operation"));
	if (s == NULL || (strcmp(s, "create") != 0 && strcmp(s, "update") != 0 && strcmp(s, "delete") != 0))
		bad_value(what, index, "@operation", psprintf("Expected create, update or delete, got %s.",
													  describe(dbsync_json_member(item, "@operation"))));
	c->operation = pstrdup(s);

	s = dbsync_json_string(dbsync_json_member(item, "@timestamp"));
	if (s == NULL || !flexi_parse_timestamp(s, &c->changed_at))
		bad_value(what, index, "@timestamp", psprintf("Expected YYYY-MM-DD HH:MM:SS with up to 6 fraction digits, got %s.",
													  describe(dbsync_json_member(item, "@timestamp"))));

	if (!dbsync_json_int64(dbsync_json_member(item, "id"), &c->record_id))
		bad_value(what, index, "id", psprintf("Expected a numeric record id, got %s.",
											  describe(dbsync_json_member(item, "id"))));

	c->external_ids = NIL;
	ids = dbsync_json_member(item, "external-ids");
	if (ids != NULL && !dbsync_json_is_array(ids))
		bad_value(what, index, "external-ids", psprintf("Expected a list, got %s.", describe(ids)));
	for (size_t i = 0; i < dbsync_json_array_length(ids); i++)
	{
		s = dbsync_json_string(dbsync_json_array_item(ids, i));
		if (s == NULL)
			bad_value(what, index, "external-ids", psprintf("Expected strings, got %s.", describe(ids)));
		c->external_ids = lappend(c->external_ids, pstrdup(s));
	}
}

FlexiChangePage *
flexi_parse_change_page(const char *body, size_t len, const char *what)
{
	DbsyncJson *root = dbsync_json_parse(body, len, what);
	DbsyncJson *winstrom = dbsync_json_member(root, "winstrom");
	DbsyncJson *changes;
	DbsyncJson *next;
	FlexiChangePage *page;
	const char *s;

	if (!dbsync_json_is_object(winstrom))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s is not an ABRA Flexi changes listing", what),
				 errdetail("It has no \"winstrom\" object.")));

	page = palloc0(sizeof(FlexiChangePage));
	if (!dbsync_json_int64(dbsync_json_member(winstrom, "@globalVersion"), &page->global_version))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s has no valid \"@globalVersion\"", what),
				 errdetail("Got %s.", describe(dbsync_json_member(winstrom, "@globalVersion")))));

	next = dbsync_json_member(winstrom, "next");
	s = dbsync_json_string(next);
	if (s != NULL && strcmp(s, "none") == 0)
		page->has_next = false;
	else if (dbsync_json_int64(next, &page->next_version))
		page->has_next = true;
	else
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s has no valid \"next\"", what),
				 errdetail("Expected a version number or \"none\", got %s.", describe(next))));

	changes = dbsync_json_member(winstrom, "changes");
	if (changes != NULL && !dbsync_json_is_array(changes))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s has a \"changes\" member that is not a list", what)));
	page->nchanges = (int) dbsync_json_array_length(changes);
	page->changes = palloc0(sizeof(FlexiChange) * Max(page->nchanges, 1));
	for (int i = 0; i < page->nchanges; i++)
		parse_change(dbsync_json_array_item(changes, i), i, what, &page->changes[i]);

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
