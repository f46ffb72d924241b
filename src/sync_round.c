/*
 * sync_round.c: one round of a subscription, as the Changes API documents
 * the synchronisation of an external system:
 *
 *   initial load: read the global version, load every record of the
 *   subscription's evidences, remember that version as the cursor;
 *   then rounds: read the log from the cursor until next is "none"; for each
 *   page fetch the records it touches, and commit the page's changes, those
 *   records and the new cursor together.
 *
 * Network calls happen between steps (bg_txn.h), never inside one: in the
 * worker no transaction waits on the remote system and a crash repeats at
 * most the page in flight. One runner per subscription: an advisory lock,
 * taken without waiting, by the worker and by dbsync_changes_pull alike.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/memutils.h"

#include "flexi.h"
#include "sync.h"

/* Advisory lock key space of dbsync's subscriptions ("dbsy"). */
#define SYNC_LOCK_SPACE 0x64627379

static bool
lock_subscription(TxnScope *tx, int32 id, bool release)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, SYNC_LOCK_SPACE, (uint32) id, 2);
	if (release)
		return LockRelease(&tag, ExclusiveLock, true);
	/* The worker keeps it across its steps; from SQL it lasts the caller's transaction. */
	return LockAcquire(&tag, ExclusiveLock, tx->own, true) != LOCKACQUIRE_NOT_AVAIL;
}

/* The server of the subscription, read with the rights and user mapping of its owner. */
static DbsyncServer *
subscription_server(SyncSubscription *sub, bool as_owner)
{
	if (!as_owner)
		return dbsync_server_get(sub->server, "flexi");
	return dbsync_server_get_as(sub->owner, sub->server, "flexi");
}

/* Initial load: returns false when the page limit stopped it before the end. */
static bool
initial_load(TxnScope *tx, SyncSubscription *sub, DbsyncServer *srv, int max_pages, SyncRoundResult *res)
{
	if (!sub->has_cursor)
	{
		/* The version first: whatever changes during the load is applied again afterwards. */
		int64		gv = flexi_global_version(srv);
		List	   *evidences = sub->evidences ? sub->evidences : flexi_fetch_evidence_list(srv);

		txn_begin(tx);
		store_load_started(sub->id, gv, evidences);
		txn_commit(tx);
		sub->has_cursor = true;
		sub->cursor = gv;
		sub->load_evidences = evidences;
		sub->load_after_id = 0;
		res->has_remote = true;
		res->remote = gv;
	}

	while (sub->load_evidences != NIL)
	{
		const char *evidence = linitial(sub->load_evidences);
		FlexiRecordList *list;
		List	   *remaining = sub->load_evidences;
		int64		after_id = sub->load_after_id;

		if (max_pages > 0 && res->pages >= max_pages)
			return false;
		CHECK_FOR_INTERRUPTS();

		list = flexi_fetch_records_after(srv, evidence, sub->load_after_id, sub->page_size);
		if (list->nrecords > 0)
			after_id = list->records[list->nrecords - 1].id;
		if (list->nrecords < sub->page_size)
		{
			remaining = list_delete_first(list_copy(sub->load_evidences));
			after_id = 0;
		}

		txn_begin(tx);
		/*
		 * Loaded records reflect the log below the cursor: stamped one below it,
		 * so that a change read later at the cursor's own version is newer.
		 */
		store_load_page(sub->id, evidence, list, sub->cursor - 1, remaining, after_id);
		txn_commit(tx);

		sub->load_evidences = remaining;
		sub->load_after_id = after_id;
		res->pages++;
		res->records += list->nrecords;
	}
	sub->loading = false;
	return true;
}

static int
compare_page_records(const void *a, const void *b)
{
	const PageRecord *x = (const PageRecord *) a;
	const PageRecord *y = (const PageRecord *) b;
	int			c = strcmp(x->evidence, y->evidence);

	if (c != 0)
		return c;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->version < y->version ? -1 : (x->version > y->version ? 1 : 0);
}

/* One entry per record the page touches: its last operation, at its last version. */
static PageRecord *
page_records(FlexiChangePage *page, int *n)
{
	PageRecord *all = palloc(sizeof(PageRecord) * Max(page->nchanges, 1));
	int			out = 0;

	for (int i = 0; i < page->nchanges; i++)
	{
		all[i].evidence = page->changes[i].evidence;
		all[i].id = page->changes[i].record_id;
		all[i].version = page->changes[i].version;
		all[i].deleted = strcmp(page->changes[i].operation, "delete") == 0;
		all[i].json = NULL;
		all[i].external_ids = page->changes[i].external_ids;
	}
	qsort(all, page->nchanges, sizeof(PageRecord), compare_page_records);
	for (int i = 0; i < page->nchanges; i++)
	{
		bool		last_of_record = (i + 1 == page->nchanges ||
									  strcmp(all[i].evidence, all[i + 1].evidence) != 0 ||
									  all[i].id != all[i + 1].id);

		if (last_of_record)
			all[out++] = all[i];
	}
	*n = out;
	return all;
}

static int
compare_ids(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/*
 * Fetches the records that still exist after the page, in batches per
 * evidence. One the server no longer has (deleted by a later change) keeps
 * no payload here and is counted as missing.
 */
static void
fetch_page_records(DbsyncServer *srv, PageRecord *records, int n, SyncRoundResult *res)
{
	int			start = 0;

	/* records are sorted by evidence, then id */
	while (start < n)
	{
		int			end = start;
		int64	   *ids = palloc(sizeof(int64) * FLEXI_MAX_IDS_PER_REQUEST);
		int			nids = 0;

		while (end < n && strcmp(records[end].evidence, records[start].evidence) == 0)
			end++;
		for (int i = start; i < end; i++)
		{
			if (!records[i].deleted)
				ids[nids++] = records[i].id;
			if (nids > 0 && (nids == FLEXI_MAX_IDS_PER_REQUEST || i + 1 == end))
			{
				FlexiRecordList *list;
				int			j = start;

				CHECK_FOR_INTERRUPTS();
				list = flexi_fetch_records_by_id(srv, records[start].evidence, ids, nids);
				qsort(list->records, list->nrecords, sizeof(FlexiRecord), compare_ids);
				/* Match fetched records to the page's, both in id order. */
				for (int k = 0; k < list->nrecords; k++)
				{
					while (j < end && records[j].id < list->records[k].id)
						j++;
					if (j < end && records[j].id == list->records[k].id && !records[j].deleted)
						records[j].json = list->records[k].json;
				}
				nids = 0;
			}
		}
		for (int i = start; i < end; i++)
			if (!records[i].deleted && records[i].json == NULL)
				res->missing++;
			else
				res->records++;
		start = end;
	}
}

/* Keeps only what can be stored: records without a payload are left for their delete. */
static int
storable_records(PageRecord *records, int n)
{
	int			out = 0;

	for (int i = 0; i < n; i++)
		if (records[i].deleted || records[i].json != NULL)
			records[out++] = records[i];
	return out;
}

static void
check_page(SyncSubscription *sub, FlexiChangePage *page)
{
	int64		prev = sub->cursor - 1;

	for (int i = 0; i < page->nchanges; i++)
	{
		int64		v = page->changes[i].version;

		if (v <= prev)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("server \"%s\" sent version " INT64_FORMAT " after " INT64_FORMAT
							" while reading from version " INT64_FORMAT,
							sub->server, v, prev, sub->cursor),
					 errdetail("Versions of the change log must rise from the requested start; the page was not stored.")));
		prev = v;
	}
	if (page->has_next && page->next_version <= prev)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("server \"%s\" sent next " INT64_FORMAT ", not past version " INT64_FORMAT,
						sub->server, page->next_version, prev),
				 errdetail("The page was not stored.")));
}

/* Differential rounds: returns false when the page limit stopped it before "none". */
static bool
read_changes(TxnScope *tx, SyncSubscription *sub, DbsyncServer *srv, int max_pages, SyncRoundResult *res)
{
	for (;;)
	{
		FlexiChangePage *page;
		PageRecord *records;
		int			nrecords;
		int64		new_cursor;
		MemoryContext page_cxt;
		MemoryContext old;

		if (max_pages > 0 && res->pages >= max_pages)
			return false;
		CHECK_FOR_INTERRUPTS();

		/* Each page's data lives only as long as the page. */
		page_cxt = AllocSetContextCreate(tx->work_cxt, "dbsync page", ALLOCSET_DEFAULT_SIZES);
		old = MemoryContextSwitchTo(page_cxt);
		tx->work_cxt = page_cxt;

		page = flexi_fetch_changes(srv, true, sub->cursor, sub->page_size, sub->evidences);
		check_page(sub, page);
		records = page_records(page, &nrecords);
		fetch_page_records(srv, records, nrecords, res);
		nrecords = storable_records(records, nrecords);
		if (page->has_next)
			new_cursor = page->next_version;
		else if (page->nchanges > 0)
			new_cursor = page->changes[page->nchanges - 1].version + 1;
		else
			new_cursor = sub->cursor;

		/*
		 * The worker moves the cursor with each page. Inside one caller's
		 * transaction the cursor moves once, at the end: updating its row per
		 * page would leave a chain of row versions that every later page
		 * walks.
		 */
		txn_begin(tx);
		store_changes_page(sub->id, page, records, nrecords, new_cursor, tx->own);
		txn_commit(tx);

		tx->work_cxt = old;
		MemoryContextSwitchTo(old);

		sub->cursor = new_cursor;
		res->pages++;
		res->changes += page->nchanges;
		res->has_remote = true;
		res->remote = page->global_version;
		MemoryContextDelete(page_cxt);

		if (!page->has_next)
			return true;
	}
}

void
sync_round_run(TxnScope *tx, int32 subscription_id, bool as_owner, int max_pages, SyncRoundResult *res)
{
	SyncSubscription sub;
	DbsyncServer *srv;
	bool		finished;
	bool		locked;

	memset(res, 0, sizeof(*res));
	res->outcome = "busy";

	/* Lock first, then read: the state read is the state of the last runner's commit. */
	txn_begin(tx);
	locked = lock_subscription(tx, subscription_id, false);
	if (!store_read_subscription(subscription_id, &sub))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription %d does not exist", subscription_id)));
	res->phase = sub.loading ? "load" : "sync";
	res->has_cursor = sub.has_cursor;
	res->cursor = sub.cursor;
	if (!locked)
	{
		/* Another runner has it: report what it last committed, do nothing. */
		txn_commit(tx);
		return;
	}
	store_round_started(subscription_id);
	srv = subscription_server(&sub, as_owner);
	txn_commit(tx);

	/* On an ERROR the worker aborts the step and drops its session lock (job_runner.c). */
	finished = true;
	if (sub.loading)
		finished = initial_load(tx, &sub, srv, max_pages, res);
	if (finished)
		finished = read_changes(tx, &sub, srv, max_pages, res);

	txn_begin(tx);
	if (!tx->own && res->has_remote && !sub.loading)
		store_cursor(sub.id, sub.cursor, res->remote);
	store_round_succeeded(sub.id, sub.server, res->changes, sub.cursor);
	if (tx->own)
		lock_subscription(tx, subscription_id, true);
	txn_commit(tx);

	res->outcome = finished ? "done" : "more";
	res->phase = sub.loading ? "load" : "sync";
	res->has_cursor = sub.has_cursor;
	res->cursor = sub.cursor;
}
