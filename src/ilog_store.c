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

void
ilog_store_row(Oid relid, int natts, Datum *values, bool *nulls)
{
	Relation	rel = table_open(relid, RowExclusiveLock);
	HeapTuple	tup;
	List	   *indexes;
	ListCell   *lc;

	if (RelationGetDescr(rel)->natts != natts)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dbsync: \"%s\" does not have the columns of the iLog", RelationGetRelationName(rel))));
	tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	heap_insert(rel, tup, GetCurrentCommandId(true), 0, NULL);

	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *info = BuildIndexInfo(index);
		Datum		ivalues[INDEX_MAX_KEYS];
		bool		inulls[INDEX_MAX_KEYS];

		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("dbsync: index \"%s\" on the iLog has expressions or a predicate",
							RelationGetRelationName(index)),
					 errhint("The iLog keeps plain-column indexes only; drop that index.")));
		for (int k = 0; k < info->ii_NumIndexAttrs; k++)
		{
			AttrNumber	attnum = info->ii_IndexAttrNumbers[k];

			ivalues[k] = values[attnum - 1];
			inulls[k] = nulls[attnum - 1];
		}
		index_insert(index, ivalues, inulls, &tup->t_self, rel, UNIQUE_CHECK_NO, false, info);
		index_close(index, NoLock);
	}
	list_free(indexes);
	heap_freetuple(tup);
	table_close(rel, NoLock);
}
