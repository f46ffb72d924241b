/*
 * repl.h: replication of what the iLog recorded to target PostgreSQL
 * databases (named configs of dbsync.replication_config).
 *
 * A sync of one target: open a transaction on the target and lock its
 * stream's row in dbsync_replica.applied (the version it has applied); read
 * the entries after it, below the iLog horizon, in version order
 * (repl_source.c); fold each key's changes into its final state and apply
 * them table by table through COPY into a staging table and set-based
 * statements (repl_batch.c); set the applied version and commit, all in that
 * one target transaction (repl_sync.c). A failure anywhere before the commit
 * leaves the target as it was, and the next sync starts again from the
 * version the target recorded: nothing lost, nothing applied twice.
 */
#ifndef DBSYNC_REPL_H
#define DBSYNC_REPL_H

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"

#include "bg_txn.h"
#include "pg_target.h"

/* A table shape (iLog layout) as replication needs it. */
typedef struct ReplShape
{
	int32		layout;
	int			natts;			/* attributes in the entries' images */
	int			ncols;			/* the logged, live ones */
	int		   *atts;			/* attribute index of each column */
	char	  **names;			/* quoted column names */
	int			nkeys;
	int		   *keys;			/* attribute index of each key column */
} ReplShape;

/* One iLog entry, its values already in COPY text form (escaped; "\N" for null). */
typedef struct ReplEntry
{
	int64		version;
	int64		xid;
	int			table;			/* index in the config's tables */
	char		op;				/* I, U, D, T */
	ReplShape  *shape;			/* NULL for TRUNCATE */
	char	  **old;			/* by attribute index; NULL when not in the image */
	char	  **new;
	char	   *partition;		/* TRUNCATE of one partition: its qualified name */
} ReplEntry;

typedef struct ReplRow ReplRow;

/* A replicated table: its identity, and the batch of row states being collected. */
typedef struct ReplTable
{
	Oid			relid;
	char	   *name;			/* qualified and quoted; the same on the target */
	int			rank;			/* parents before the tables that reference them */
	char	   *key_column;		/* quoted, when the key is one column (positive_keys_only) */
	ReplShape  *shape;			/* of the batch; NULL when empty */
	HTAB	   *rows;			/* current key -> ReplRow */
	ReplRow    *first;
	ReplRow    *last;
	int			nrows;
	List	   *stages;			/* layouts with a staging table in the target transaction */
	int			update_order;	/* on the target: 1 updates may run in key order, -1 not, 0 not asked yet */
} ReplTable;

typedef struct ReplStats
{
	int64		inserts;
	int64		updates;
	int64		deletes;
	int64		transactions;
	int64		target_entries;
} ReplStats;

/* One sync of one target. */
typedef struct ReplSync
{
	/* the config */
	int64		config_key;
	char	   *config_name;
	bool		positive_keys_only;
	Oid			owner;
	int			ntables;
	ReplTable  *tables;
	int		   *by_rank;		/* table indexes, parents first */
	/* the target */
	int64		target_key;
	char	   *server;
	char	   *stream;			/* uuid of this config-to-target stream */
	int64		start_version;	/* where a stream new to the target begins */
	bool		strict;			/* one statement per entry, in version order (repl_strict.c) */
	PgTarget   *conn;
	/* progress */
	int64		applied_before;
	int64		applied_after;
	ReplStats	stats;
	HTAB	   *xids;			/* source transactions seen */
	int64		last_xid;		/* the last one counted */
	int			entries_in_batch;
	StringInfoData strict_sql;	/* strict mode: statements not yet sent */
	int			strict_count;
	List	   *shapes;			/* the shape of each layout seen (repl_source.c) */
	MemoryContext sync_cxt;		/* lives as long as the sync */
	MemoryContext read_cxt;		/* the entries of one read */
	MemoryContext batch_cxt;	/* the row states of one batch */
} ReplSync;

/* repl_source.c: the source side, each call one step of tx. */
extern void repl_source_load(TxnScope *tx, ReplSync *rs, DbsyncServer **srv, bool *superuser);
extern int64 repl_source_horizon(TxnScope *tx);
/* The last version the sync delivers: below the horizon, between transactions. */
extern int64 repl_source_cut(TxnScope *tx, ReplSync *rs, int64 after, int64 horizon);
/* Reads and decodes up to limit entries with after < version < below, in version order. */
extern List *repl_source_read(TxnScope *tx, ReplSync *rs, int64 after, int64 below, int limit);
extern char *repl_copy_escape(const char *value);

/* repl_sync.c: syncs every target of a config; returns the results as a JSON array. */
extern char *repl_run_config(TxnScope *tx, int64 config_key, int *failures, char **first_error);

/* repl_batch.c: folding entries into row states, and applying them on the target. */
extern void repl_batch_reset(ReplSync *rs);
/* Adds one entry; false when the batch must be applied first (then add it again). */
extern bool repl_batch_add(ReplSync *rs, const ReplEntry *e);
/* Stages the batch and sends its statements; repl_batch_finish waits for them. */
extern void repl_batch_apply(ReplSync *rs);
extern void repl_batch_finish(ReplSync *rs);
extern void repl_apply_truncate(ReplSync *rs, const ReplEntry *e);
extern bool repl_batch_full(const ReplSync *rs);

/* repl_strict.c: the fallback when folded changes break a target constraint. */
extern void repl_strict_add(ReplSync *rs, const ReplEntry *e);
extern void repl_strict_flush(ReplSync *rs);

/* repl_batch.c, shared with repl_strict.c */
extern char *repl_key_of(const ReplShape *s, char **texts, char **fallback);
extern bool repl_key_positive(const char *key);
extern int	repl_key_col(const ReplShape *s, int k);
extern void repl_append_on_conflict(StringInfo sql, const ReplShape *s);

#endif
