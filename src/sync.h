/*
 * sync.h: continuous sync of an ABRA Flexi change log into staging
 * (dbsync.change, dbsync.record), following the Changes API's method: an
 * initial load of every record at a known global version, then rounds that
 * read the log from the remembered version onwards.
 */
#ifndef DBSYNC_SYNC_H
#define DBSYNC_SYNC_H

#include "bg_txn.h"
#include "flexi.h"

typedef struct SyncSubscription
{
	int32		id;
	char	   *server;
	List	   *evidences;		/* NIL: all */
	bool		enabled;
	int			page_size;
	Oid			owner;
	bool		loading;		/* phase 'load' */
	bool		has_cursor;
	int64		cursor;
	List	   *load_evidences; /* evidences the load still has to read */
	int64		load_after_id;
} SyncSubscription;

typedef struct SyncRoundResult
{
	const char *outcome;		/* done, more (page limit reached), busy (another runner) */
	const char *phase;
	int			pages;
	int64		changes;
	int64		records;
	int64		missing;		/* changed records the server no longer had */
	bool		has_cursor;
	int64		cursor;
	bool		has_remote;
	int64		remote;
} SyncRoundResult;

/* One record's final state in a page: the last operation and its version. */
typedef struct PageRecord
{
	const char *evidence;
	int64		id;
	int64		version;
	bool		deleted;
	const char *json;			/* fetched payload, or NULL */
	List	   *external_ids;	/* of the change it comes from (NIL for a loaded record) */
} PageRecord;

/* sync_round.c */
extern void sync_round_run(TxnScope *tx, int32 subscription_id, bool as_owner, int max_pages,
						   SyncRoundResult *res);

/* sync_store.c: each call is one statement inside an open step. */
extern bool store_read_subscription(int32 id, SyncSubscription *sub);
extern bool store_find_subscription(const char *server, int32 *id);
extern void store_round_started(int32 id);
extern void store_load_started(int32 id, int64 global_version, List *evidences);
extern void store_load_page(int32 id, const char *evidence, FlexiRecordList *list, int64 version,
							List *remaining, int64 after_id);
extern void store_changes_page(int32 id, FlexiChangePage *page, PageRecord *records, int nrecords,
							   int64 new_cursor, bool move_cursor);
extern void store_cursor(int32 id, int64 cursor, int64 remote_version);
extern void store_round_succeeded(int32 id, const char *server, int64 changes, int64 cursor);
extern void store_round_failed(int32 id, const char *error);

#endif
