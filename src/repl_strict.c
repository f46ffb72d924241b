/*
 * repl_strict.c: applying entries one statement each, in version order.
 *
 * The fallback of a sync whose folded batches broke a constraint on the
 * target (repl_batch.c): the statements replay the changes in the order the
 * source made them, so what the source accepted the target accepts too. They
 * are still sent many per round trip.
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "ilog.h"
#include "repl.h"

/* Statements sent per round trip. */
#define STRICT_STATEMENTS_PER_TRIP 1000

/* A value in COPY text form as an SQL literal of unknown type (the column's type reads it). */
static void
append_literal(StringInfo sql, const char *copy_text)
{
	StringInfoData raw;

	if (strcmp(copy_text, "\\N") == 0)
	{
		appendStringInfoString(sql, "NULL");
		return;
	}
	initStringInfo(&raw);
	for (const char *p = copy_text; *p; p++)
	{
		if (*p == '\\' && p[1] != '\0')
		{
			p++;
			appendStringInfoChar(&raw, *p == 't' ? '\t' : *p == 'n' ? '\n' : *p == 'r' ? '\r' : *p);
		}
		else
			appendStringInfoChar(&raw, *p);
	}
	appendStringInfoString(sql, quote_literal_cstr(raw.data));
	pfree(raw.data);
}

static void
append_key_match(StringInfo sql, const ReplShape *s, char **texts)
{
	for (int k = 0; k < s->nkeys; k++)
	{
		appendStringInfo(sql, "%s%s = ", k > 0 ? " AND " : " WHERE ", s->names[repl_key_col(s, k)]);
		append_literal(sql, texts[s->keys[k]]);
	}
}

static void
append_insert(StringInfo sql, const char *table, const ReplShape *s, char **texts)
{
	appendStringInfo(sql, "INSERT INTO %s (", table);
	for (int c = 0; c < s->ncols; c++)
		appendStringInfo(sql, "%s%s", c > 0 ? ", " : "", s->names[c]);
	appendStringInfoString(sql, ") OVERRIDING SYSTEM VALUE VALUES (");
	for (int c = 0; c < s->ncols; c++)
	{
		const char *v = texts[s->atts[c]];

		if (c > 0)
			appendStringInfoString(sql, ", ");
		append_literal(sql, v ? v : "\\N");
	}
	appendStringInfoChar(sql, ')');
	repl_append_on_conflict(sql, s);
}

static void
append_update(StringInfo sql, const char *table, const ReplShape *s, char **old, char **new)
{
	bool		any = false;

	for (int c = 0; c < s->ncols; c++)
	{
		const char *v = new[s->atts[c]];

		if (v == NULL)
			continue;
		appendStringInfo(sql, "%s%s = ", any ? ", " : psprintf("UPDATE %s SET ", table), s->names[c]);
		append_literal(sql, v);
		any = true;
	}
	if (!any)
		return;
	append_key_match(sql, s, old);
}

void
repl_strict_add(ReplSync *rs, const ReplEntry *e)
{
	const ReplShape *s = e->shape;
	const char *table = rs->tables[e->table].name;
	StringInfo	sql = &rs->strict_sql;
	int			before = sql->len;

	if (e->op == ILOG_INSERT)
	{
		if (!rs->positive_keys_only || repl_key_positive(repl_key_of(s, e->new, NULL)))
		{
			append_insert(sql, table, s, e->new);
			rs->stats.inserts++;
		}
	}
	else if (e->op == ILOG_DELETE)
	{
		if (!rs->positive_keys_only || repl_key_positive(repl_key_of(s, e->old, NULL)))
		{
			appendStringInfo(sql, "DELETE FROM %s", table);
			append_key_match(sql, s, e->old);
			rs->stats.deletes++;
		}
	}
	else if (!rs->positive_keys_only || repl_key_positive(repl_key_of(s, e->old, NULL)))
	{
		/* as when folding: a row leaving the positive keys is deleted */
		if (rs->positive_keys_only && !repl_key_positive(repl_key_of(s, e->new, e->old)))
		{
			appendStringInfo(sql, "DELETE FROM %s", table);
			append_key_match(sql, s, e->old);
		}
		else
			append_update(sql, table, s, e->old, e->new);
		rs->stats.updates++;
	}
	if (sql->len > before)
	{
		appendStringInfoString(sql, ";\n");
		if (++rs->strict_count >= STRICT_STATEMENTS_PER_TRIP)
			repl_strict_flush(rs);
	}
}

void
repl_strict_flush(ReplSync *rs)
{
	if (rs->strict_count == 0)
		return;
	repl_batch_finish(rs);
	rs->stats.target_entries += pg_target_exec(rs->conn, rs->strict_sql.data, NULL);
	resetStringInfo(&rs->strict_sql);
	rs->strict_count = 0;
}
