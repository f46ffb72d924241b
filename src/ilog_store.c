/*
 * ilog_store.c: writing rows to the log's own tables.
 *
 * The trigger inserts straight into the day's partition, with no executor
 * and no permission check: writers of tracked tables have no rights on the
 * log, and the partitioned parent is never locked by a writer, so creating
 * or dropping a day's partition never waits for (or blocks) them. Only
 * plain-column indexes are maintained, which is what the log has.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "nodes/execnodes.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "ilog.h"

Oid
ilog_namespace(void)
{
	Oid			nsp = get_namespace_oid("dbsync", true);

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dbsync: schema \"dbsync\" is missing"),
				 errhint("Tracked tables need the dbsync extension in their database.")));
	return nsp;
}

Oid
ilog_relation(const char *name)
{
	return get_relname_relid(name, ilog_namespace());
}

/*
 * The indexes of a log table, read once per transaction: none can be added
 * while the transaction holds its RowExclusiveLock on the table.
 */
typedef struct StoreTarget
{
	Oid			relid;
	int			nindexes;
	Oid		   *indexes;
	IndexInfo **infos;
} StoreTarget;

#define MAX_TARGETS 4
static StoreTarget *targets = NULL;	/* in TopTransactionContext */
static int	ntargets = 0;

void
ilog_store_xact_end(void)
{
	targets = NULL;
	ntargets = 0;
}

static StoreTarget *
store_target(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	StoreTarget *t;
	List	   *list;
	ListCell   *lc;
	MemoryContext old;

	for (int i = 0; i < ntargets; i++)
		if (targets[i].relid == relid)
			return &targets[i];
	if (targets == NULL)
		targets = MemoryContextAllocZero(TopTransactionContext, sizeof(StoreTarget) * MAX_TARGETS);
	if (ntargets == MAX_TARGETS)
		ntargets = 0;			/* a transaction spanning days: start over */
	t = &targets[ntargets++];
	old = MemoryContextSwitchTo(TopTransactionContext);
	t->relid = relid;
	list = RelationGetIndexList(rel);
	t->nindexes = list_length(list);
	t->indexes = palloc(sizeof(Oid) * Max(t->nindexes, 1));
	t->infos = palloc(sizeof(IndexInfo *) * Max(t->nindexes, 1));
	foreach(lc, list)
	{
		int			i = foreach_current_index(lc);
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);

		t->indexes[i] = lfirst_oid(lc);
		t->infos[i] = BuildIndexInfo(index);
		if (t->infos[i]->ii_Expressions != NIL || t->infos[i]->ii_Predicate != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("dbsync: index \"%s\" on the iLog has expressions or a predicate",
							RelationGetRelationName(index)),
					 errhint("The iLog keeps plain-column indexes only; drop that index.")));
		index_close(index, NoLock);
	}
	MemoryContextSwitchTo(old);
	return t;
}

void
ilog_store_row(Oid relid, int natts, Datum *values, bool *nulls)
{
	Relation	rel = table_open(relid, RowExclusiveLock);
	HeapTuple	tup;
	StoreTarget *target;

	if (RelationGetDescr(rel)->natts != natts)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dbsync: \"%s\" does not have the columns of the iLog", RelationGetRelationName(rel))));
	tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	heap_insert(rel, tup, GetCurrentCommandId(true), 0, NULL);

	target = store_target(rel);
	for (int i = 0; i < target->nindexes; i++)
	{
		Relation	index = index_open(target->indexes[i], RowExclusiveLock);
		IndexInfo  *info = target->infos[i];
		Datum		ivalues[INDEX_MAX_KEYS];
		bool		inulls[INDEX_MAX_KEYS];

		for (int k = 0; k < info->ii_NumIndexAttrs; k++)
		{
			AttrNumber	attnum = info->ii_IndexAttrNumbers[k];

			ivalues[k] = values[attnum - 1];
			inulls[k] = nulls[attnum - 1];
		}
		index_insert(index, ivalues, inulls, &tup->t_self, rel, UNIQUE_CHECK_NO, false, info);
		index_close(index, NoLock);
	}
	heap_freetuple(tup);
	table_close(rel, NoLock);
}
