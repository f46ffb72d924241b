/*
 * repl_batch.c: folding iLog entries into the final state of each row, and
 * applying a batch of them on the target with few round trips.
 *
 * Entries arrive in version order, which for any one row is the order its
 * changes committed (a row's writer holds its lock until commit). Per table,
 * each row ends as one of: deleted (its key on the target before the batch
 * is removed), updated (the columns changed, set where the target has its
 * old key, which moves the key when it changed), or written whole (inserted
 * in the batch: an upsert). A batch goes to the target as one COPY into a
 * staging table per table and one round trip of set-based statements:
 * deletes with the referencing tables first, then updates and upserts with
 * the referenced tables first.
 *
 * Folding can reorder changes of different rows. If the target rejects a
 * batch for a constraint (a unique value that moved from one row to
 * another), the sync runs again in strict mode (repl_strict.c), one
 * statement per entry in the order the changes were made.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "ilog.h"
#include "repl.h"

/* Entries folded before a batch is applied (bounds the memory of a sync). */
#define REPL_BATCH_ENTRIES 50000

struct ReplRow
{
	char	   *key;			/* the key now: COPY text of the key columns, tab-separated */
	char	   *orig;			/* the key on the target before the batch; NULL when inserted in it */
	bool		exists;
	bool		full;			/* every column known (inserted in the batch) */
	char	  **vals;			/* by column of the shape; NULL when unknown */
	int64		ord;			/* when last changed, for the order of upserts */
	ReplRow    *next;
};

typedef struct RowSlot
{
	char	   *key;
	ReplRow    *row;
} RowSlot;

static uint32
row_key_hash(const void *key, Size keysize)
{
	const char *s = *(char *const *) key;

	return hash_bytes((const unsigned char *) s, strlen(s));
}

static int
row_key_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static int64 touch_counter = 0;

/* A table's staged rows by kind. */
typedef struct StageCounts
{
	int			del;
	int			upd;
	int			full;
	bool		moved;			/* an updated row's key changed */
} StageCounts;

void
repl_batch_reset(ReplSync *rs)
{
	MemoryContextReset(rs->batch_cxt);
	for (int i = 0; i < rs->ntables; i++)
	{
		ReplTable  *t = &rs->tables[i];

		t->shape = NULL;
		t->rows = NULL;
		t->first = t->last = NULL;
		t->nrows = 0;
	}
	rs->entries_in_batch = 0;
}

bool
repl_batch_full(const ReplSync *rs)
{
	return rs->entries_in_batch >= REPL_BATCH_ENTRIES;
}

/* Key column k's value in an image, or in fallback when the image lacks it. */
static const char *
key_value(const ReplShape *s, int k, char **texts, char **fallback)
{
	const char *v = texts != NULL ? texts[s->keys[k]] : NULL;

	if (v == NULL && fallback != NULL)
		v = fallback[s->keys[k]];
	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("dbsync: an iLog entry of layout %d lacks a key column", s->layout)));
	return v;
}

/* The key of an image (by attribute index) as the row map keys it (allocated to size: one per entry). */
char *
repl_key_of(const ReplShape *s, char **texts, char **fallback)
{
	size_t		len = 0;
	char	   *key;
	char	   *p;

	for (int k = 0; k < s->nkeys; k++)
		len += strlen(key_value(s, k, texts, fallback)) + 1;
	p = key = palloc(Max(len, 1));
	for (int k = 0; k < s->nkeys; k++)
	{
		const char *v = key_value(s, k, texts, fallback);
		size_t		n = strlen(v);

		if (k > 0)
			*p++ = '\t';
		memcpy(p, v, n);
		p += n;
	}
	*p = '\0';
	return key;
}

/* positive_keys_only: the one key column's value is above zero. */
bool
repl_key_positive(const char *key)
{
	if (key[0] == '-' || strcmp(key, "\\N") == 0)
		return false;
	for (const char *p = key; *p && *p != 'e' && *p != 'E'; p++)
		if (*p >= '1' && *p <= '9')
			return true;
	return false;
}

static ReplRow *
row_find(ReplTable *t, char *key)
{
	RowSlot    *slot = hash_search(t->rows, &key, HASH_FIND, NULL);

	return slot ? slot->row : NULL;
}

static void
row_map(ReplTable *t, ReplRow *row)
{
	bool		found;
	RowSlot    *slot = hash_search(t->rows, &row->key, HASH_ENTER, &found);

	slot->key = row->key;
	slot->row = row;
}

static ReplRow *
row_new(ReplTable *t, char *key, bool inserted)
{
	ReplRow    *row = palloc0(sizeof(ReplRow));

	row->key = key;
	row->orig = inserted ? NULL : key;
	row->exists = true;
	row->full = inserted;
	row->vals = palloc0(sizeof(char *) * Max(t->shape->ncols, 1));
	if (t->last)
		t->last->next = row;
	else
		t->first = row;
	t->last = row;
	t->nrows++;
	row_map(t, row);
	return row;
}

/* Copies the values into the batch (the entries are freed after each read). */
static void
merge_values(const ReplShape *s, ReplRow *row, char **texts)
{
	for (int c = 0; c < s->ncols; c++)
		if (texts[s->atts[c]] != NULL)
			row->vals[c] = pstrdup(texts[s->atts[c]]);
}

bool
repl_batch_add(ReplSync *rs, const ReplEntry *e)
{
	ReplTable  *t = &rs->tables[e->table];
	const ReplShape *s = e->shape;
	MemoryContext old;
	ReplRow    *row;
	char	   *key;

	Assert(e->op != ILOG_TRUNCATE);
	if (rs->entries_in_batch > 0)
	{
		/* a batch holds one shape per table */
		if (t->shape != NULL && t->shape != s)
			return false;
	}
	rs->entries_in_batch++;

	old = MemoryContextSwitchTo(rs->batch_cxt);
	if (t->rows == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(char *);
		ctl.entrysize = sizeof(RowSlot);
		ctl.hash = row_key_hash;
		ctl.match = row_key_match;
		ctl.hcxt = rs->batch_cxt;
		t->rows = hash_create("dbsync replication rows", 1024, &ctl,
							  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	}
	t->shape = (ReplShape *) s;

	if (e->op == ILOG_INSERT)
	{
		key = repl_key_of(s, e->new, NULL);
		if (!rs->positive_keys_only || repl_key_positive(key))
		{
			row = row_new(t, key, true);
			merge_values(s, row, e->new);
			row->ord = ++touch_counter;
			rs->stats.inserts++;
		}
	}
	else if (e->op == ILOG_DELETE)
	{
		key = repl_key_of(s, e->old, NULL);
		if (!rs->positive_keys_only || repl_key_positive(key))
		{
			row = row_find(t, key);
			if (row == NULL)
				row = row_new(t, key, false);
			row->exists = false;
			row->ord = ++touch_counter;
			rs->stats.deletes++;
		}
	}
	else
	{
		char	   *before = repl_key_of(s, e->old, NULL);
		char	   *after = repl_key_of(s, e->new, e->old);
		bool		before_ok = !rs->positive_keys_only || repl_key_positive(before);
		bool		after_ok = !rs->positive_keys_only || repl_key_positive(after);

		/* positive_keys_only: a row leaving the positive keys is deleted; one entering them is not known whole */
		if (before_ok)
		{
			row = row_find(t, before);
			if (row == NULL)
				row = row_new(t, before, false);
			row->ord = ++touch_counter;
			rs->stats.updates++;
			if (!after_ok)
				row->exists = false;
			else
			{
				merge_values(s, row, e->new);
				if (strcmp(before, after) != 0)
				{
					(void) hash_search(t->rows, &before, HASH_REMOVE, NULL);
					row->key = after;
					row_map(t, row);
				}
			}
		}
	}
	MemoryContextSwitchTo(old);
	return true;
}

/* Appends a COPY field and its separator. */
static void
field(StringInfo buf, const char *value, bool last)
{
	appendStringInfoString(buf, value != NULL ? value : "\\N");
	appendStringInfoChar(buf, last ? '\n' : '\t');
}

static const char *
stage_name(int table, int32 layout)
{
	return psprintf("pg_temp.dbsync_stage_%d_%d", table, layout);
}

/* The column of the shape that holds key column k. */
int
repl_key_col(const ReplShape *s, int k)
{
	for (int c = 0; c < s->ncols; c++)
		if (s->atts[c] == s->keys[k])
			return c;
	elog(ERROR, "dbsync: the key of layout %d is not logged", s->layout);
	return -1;
}

/* Creates the table's staging table in the target transaction, once per shape. */
static void
stage_ensure(ReplSync *rs, int ti)
{
	ReplTable  *t = &rs->tables[ti];
	ReplShape  *s = t->shape;
	StringInfoData sql;
	MemoryContext old;

	if (list_member_int(t->stages, s->layout))
		return;
	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TEMP TABLE dbsync_stage_%d_%d ON COMMIT DROP AS SELECT "
					 "NULL::integer AS \"dbsync#ord\", NULL::\"char\" AS \"dbsync#kind\", "
					 "NULL::boolean[] AS \"dbsync#mask\"", ti, s->layout);
	for (int k = 0; k < s->nkeys; k++)
		appendStringInfo(&sql, ", t.%s AS \"dbsync#key%d\"", s->names[repl_key_col(s, k)], k + 1);
	for (int c = 0; c < s->ncols; c++)
		appendStringInfo(&sql, ", t.%s", s->names[c]);
	appendStringInfo(&sql, " FROM ONLY %s t WITH NO DATA", t->name);
	(void) pg_target_exec(rs->conn, sql.data, NULL);
	old = MemoryContextSwitchTo(rs->sync_cxt);
	t->stages = lappend_int(t->stages, s->layout);
	MemoryContextSwitchTo(old);
}

/* The table's row states as COPY data for its staging table; counts them by kind. */
static void
stage_data(ReplSync *rs, int ti, StringInfo data, StageCounts *n)
{
	ReplTable  *t = &rs->tables[ti];
	ReplShape  *s = t->shape;
	int			ord = 0;

	memset(n, 0, sizeof(StageCounts));
	initStringInfo(data);
	for (ReplRow *row = t->first; row != NULL; row = row->next)
	{
		char		kind;

		if (!row->exists)
		{
			if (row->orig == NULL)
				continue;		/* inserted and deleted within the batch */
			kind = 'D';
			n->del++;
		}
		else if (row->full)
		{
			kind = 'F';
			n->full++;
		}
		else
		{
			kind = 'U';
			n->upd++;
			if (strcmp(row->orig, row->key) != 0)
				n->moved = true;
		}
		appendStringInfo(data, "%d\t%c\t", ++ord, kind);
		if (kind == 'U')
		{
			appendStringInfoChar(data, '{');
			for (int c = 0; c < s->ncols; c++)
				appendStringInfoString(data, c == 0 ? (row->vals[c] ? "t" : "f") : (row->vals[c] ? ",t" : ",f"));
			appendStringInfoString(data, "}\t");
		}
		else
			appendStringInfoString(data, "\\N\t");
		/* the key on the target (a tab-separated list already), or nulls */
		if (kind == 'F')
			for (int k = 0; k < s->nkeys; k++)
				appendStringInfoString(data, "\\N\t");
		else
			appendStringInfo(data, "%s\t", row->orig);
		for (int c = 0; c < s->ncols; c++)
			field(data, kind == 'D' ? NULL : row->vals[c], c == s->ncols - 1);
	}
}

/* COPYs the table's data into its staging table. */
static void
stage_copy(ReplSync *rs, int ti, StringInfo data)
{
	ReplShape  *s = rs->tables[ti].shape;
	StringInfoData sql;

	stage_ensure(rs, ti);
	initStringInfo(&sql);
	appendStringInfo(&sql, "COPY %s (\"dbsync#ord\", \"dbsync#kind\", \"dbsync#mask\"", stage_name(ti, s->layout));
	for (int k = 0; k < s->nkeys; k++)
		appendStringInfo(&sql, ", \"dbsync#key%d\"", k + 1);
	for (int c = 0; c < s->ncols; c++)
		appendStringInfo(&sql, ", %s", s->names[c]);
	appendStringInfoString(&sql, ") FROM STDIN");
	pg_target_copy(rs->conn, sql.data, data);
}

/* WHERE clause matching a target row to the staged key. */
static void
key_match(StringInfo sql, const ReplShape *s)
{
	for (int k = 0; k < s->nkeys; k++)
		appendStringInfo(sql, " AND t.%s = s.\"dbsync#key%d\"", s->names[repl_key_col(s, k)], k + 1);
}

/*
 * Whether the table's updates may run in key order on the target: no unique
 * index or exclusion constraint there could see a value move from one row to
 * another (only ones on key columns, whose values a batch without key
 * changes keeps). Otherwise they run in the order the rows were first
 * changed, which applies a chain of moves in the order it was made. Asked
 * once per table and sync.
 */
static bool
updates_sortable(ReplSync *rs, int ti)
{
	ReplTable  *t = &rs->tables[ti];
	ReplShape  *s = t->shape;
	StringInfoData sql;
	char	   *value;

	if (t->update_order == 0)
	{
		initStringInfo(&sql);
		appendStringInfoString(&sql, "SELECT c.relkind = 'r' AND NOT c.relhassubclass AND NOT EXISTS ("
							   "SELECT FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid "
							   "AND (i.indisunique OR i.indisexclusion) AND (i.indisexclusion OR i.indpred IS NOT NULL "
							   "OR EXISTS (SELECT FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) k(a) "
							   "WHERE k.a NOT IN (SELECT a.attnum FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid "
							   "AND pg_catalog.quote_ident(a.attname) = ANY (ARRAY[");
		for (int k = 0; k < s->nkeys; k++)
			appendStringInfo(&sql, "%s%s", k > 0 ? ", " : "", quote_literal_cstr(s->names[repl_key_col(s, k)]));
		appendStringInfo(&sql, "]::pg_catalog.text[]))))) FROM pg_catalog.pg_class c WHERE c.oid = %s::pg_catalog.regclass",
						 quote_literal_cstr(t->name));
		(void) pg_target_exec(rs->conn, sql.data, &value);
		t->update_order = (value != NULL && strcmp(value, "t") == 0) ? 1 : -1;
	}
	return t->update_order > 0;
}

/* The staged rows as "s", in key order when sorted (the target then reads its rows and index in order). */
static void
staged(StringInfo sql, ReplSync *rs, int ti, bool sorted)
{
	ReplShape  *s = rs->tables[ti].shape;

	if (!sorted)
	{
		appendStringInfo(sql, "%s s", stage_name(ti, s->layout));
		return;
	}
	appendStringInfo(sql, "(SELECT * FROM %s ORDER BY ", stage_name(ti, s->layout));
	for (int k = 0; k < s->nkeys; k++)
		appendStringInfo(sql, "%s\"dbsync#key%d\"", k > 0 ? ", " : "", k + 1);
	appendStringInfoString(sql, ") s");
}

/* In key order: a delete cannot conflict with another. */
static void
delete_sql(StringInfo sql, ReplSync *rs, int ti)
{
	ReplTable  *t = &rs->tables[ti];

	appendStringInfo(sql, "DELETE FROM %s t USING ", t->name);
	staged(sql, rs, ti, true);
	appendStringInfoString(sql, " WHERE s.\"dbsync#kind\" = 'D'");
	key_match(sql, t->shape);
	appendStringInfoString(sql, ";\n");
}

static void
update_sql(StringInfo sql, ReplSync *rs, int ti, bool sorted)
{
	ReplTable  *t = &rs->tables[ti];
	ReplShape  *s = t->shape;

	appendStringInfo(sql, "UPDATE %s t SET ", t->name);
	for (int c = 0; c < s->ncols; c++)
		appendStringInfo(sql, "%s%s = CASE WHEN s.\"dbsync#mask\"[%d] THEN s.%s ELSE t.%s END",
						 c > 0 ? ", " : "", s->names[c], c + 1, s->names[c], s->names[c]);
	appendStringInfoString(sql, " FROM ");
	staged(sql, rs, ti, sorted);
	appendStringInfoString(sql, " WHERE s.\"dbsync#kind\" = 'U'");
	key_match(sql, s);
	appendStringInfoString(sql, ";\n");
}

void
repl_append_on_conflict(StringInfo sql, const ReplShape *s)
{
	bool		any = false;

	appendStringInfoString(sql, " ON CONFLICT (");
	for (int k = 0; k < s->nkeys; k++)
		appendStringInfo(sql, "%s%s", k > 0 ? ", " : "", s->names[repl_key_col(s, k)]);
	appendStringInfoString(sql, ") DO ");
	for (int c = 0; c < s->ncols; c++)
	{
		bool		is_key = false;

		for (int k = 0; k < s->nkeys; k++)
			if (s->atts[c] == s->keys[k])
				is_key = true;
		if (is_key)
			continue;
		appendStringInfo(sql, "%s%s = EXCLUDED.%s", any ? ", " : "UPDATE SET ", s->names[c], s->names[c]);
		any = true;
	}
	if (!any)
		appendStringInfoString(sql, "NOTHING");
}

static void
upsert_sql(StringInfo sql, ReplSync *rs, int ti)
{
	ReplTable  *t = &rs->tables[ti];
	ReplShape  *s = t->shape;

	appendStringInfo(sql, "INSERT INTO %s AS t (", t->name);
	for (int c = 0; c < s->ncols; c++)
		appendStringInfo(sql, "%s%s", c > 0 ? ", " : "", s->names[c]);
	/* (identity columns GENERATED ALWAYS on the target take the source's values) */
	appendStringInfoString(sql, ") OVERRIDING SYSTEM VALUE SELECT ");
	for (int c = 0; c < s->ncols; c++)
		appendStringInfo(sql, "%ss.%s", c > 0 ? ", " : "", s->names[c]);
	appendStringInfo(sql, " FROM %s s WHERE s.\"dbsync#kind\" = 'F' ORDER BY s.\"dbsync#ord\"",
					 stage_name(ti, s->layout));
	repl_append_on_conflict(sql, s);
	appendStringInfoString(sql, ";\n");
}

/*
 * Stages the batch and sends its statements without waiting for them: the
 * caller reads and folds the next batch while the target applies this one.
 * Their results are collected (errors raised, rows counted) by
 * repl_batch_finish, before anything else is sent on the connection.
 */
void
repl_batch_apply(ReplSync *rs)
{
	int			n = rs->ntables;
	StageCounts *counts;
	bool	   *sorted;
	StringInfoData *data;
	StringInfoData sql;
	MemoryContext old;

	if (rs->entries_in_batch == 0)
		return;
	old = MemoryContextSwitchTo(rs->batch_cxt);
	counts = palloc0(sizeof(StageCounts) * n);
	sorted = palloc0(sizeof(bool) * n);
	data = palloc0(sizeof(StringInfoData) * n);
	/* built before waiting, so that it overlaps the target's work on the previous batch */
	for (int i = 0; i < n; i++)
		if (rs->tables[i].nrows > 0)
			stage_data(rs, i, &data[i], &counts[i]);
	repl_batch_finish(rs);
	for (int i = 0; i < n; i++)
	{
		if (counts[i].del + counts[i].upd + counts[i].full > 0)
			stage_copy(rs, i, &data[i]);
		sorted[i] = counts[i].upd > 0 && !counts[i].moved && updates_sortable(rs, i);
	}

	initStringInfo(&sql);
	/* deletes: tables that reference others first */
	for (int r = n - 1; r >= 0; r--)
		if (counts[rs->by_rank[r]].del > 0)
			delete_sql(&sql, rs, rs->by_rank[r]);
	/* updates and upserts: referenced tables first */
	for (int r = 0; r < n; r++)
	{
		int			i = rs->by_rank[r];

		if (counts[i].upd > 0)
			update_sql(&sql, rs, i, sorted[i]);
		if (counts[i].full > 0)
			upsert_sql(&sql, rs, i);
	}
	for (int i = 0; i < n; i++)
		if (counts[i].del + counts[i].upd + counts[i].full > 0)
			appendStringInfo(&sql, "TRUNCATE %s;\n", stage_name(i, rs->tables[i].shape->layout));
	if (sql.len > 0)
		pg_target_send(rs->conn, sql.data);
	MemoryContextSwitchTo(old);
	repl_batch_reset(rs);
}

/* Waits for the statements of the batch sent last, if any: their errors are raised here. */
void
repl_batch_finish(ReplSync *rs)
{
	if (rs->conn != NULL)
		rs->stats.target_entries += pg_target_finish(rs->conn);
}

void
repl_apply_truncate(ReplSync *rs, const ReplEntry *e)
{
	ReplTable  *t = &rs->tables[e->table];
	const char *name = e->partition ? e->partition : t->name;
	char	   *sql;

	repl_batch_finish(rs);
	if (rs->positive_keys_only)
	{
		if (t->key_column == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("dbsync: %s no longer has a key of one column, which positive_keys_only needs", t->name)));
		sql = psprintf("DELETE FROM %s WHERE %s > 0", name, t->key_column);
	}
	else
		sql = psprintf("TRUNCATE %s", name);
	rs->stats.target_entries += pg_target_exec(rs->conn, sql, NULL);
	rs->stats.deletes++;
}
