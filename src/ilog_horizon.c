/*
 * ilog_horizon.c: what a reader of the iLog may return without ever
 * missing an entry.
 *
 * Versions come from a sequence, so they are taken in one order and
 * committed in another. Each backend publishes, in shared memory, the first
 * version its open transaction took (a sentinel of 1 just before taking
 * it). A reader first reads the sequence: any version taken after that is
 * at least S, its last value + 1. The horizon is the smallest of S and every
 * published first version of the database. All entries below the horizon
 * belong to transactions that have ended, and the slot of a transaction is
 * cleared only after its commit became visible, so a snapshot taken after
 * computing the horizon sees every committed one: returning versions below
 * the horizon, in order, never skips one that appears later.
 */
#include "postgres.h"

#include "access/twophase.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/fmgrprotos.h"

#include "ilog.h"

typedef struct HorizonSlot
{
	pg_atomic_uint32 db;
	pg_atomic_uint64 first;		/* 0: no open transaction wrote the log */
} HorizonSlot;

static HorizonSlot *slots = NULL;
static int	nslots = 0;
static bool published = false;
static bool exit_hook_set = false;

static void clear_at_exit(int code, Datum arg);

static int
slot_count(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

Size
ilog_horizon_shmem_size(void)
{
	return mul_size(slot_count(), sizeof(HorizonSlot));
}

/* Called with AddinShmemInitLock held. */
void
ilog_horizon_shmem_init(void)
{
	bool		found;

	nslots = slot_count();
	slots = ShmemInitStruct("dbsync ilog horizon", ilog_horizon_shmem_size(), &found);
	if (!found)
		for (int i = 0; i < nslots; i++)
		{
			pg_atomic_init_u32(&slots[i].db, InvalidOid);
			pg_atomic_init_u64(&slots[i].first, 0);
		}
}

static HorizonSlot *
my_slot(void)
{
	if (slots == NULL || MyProc == NULL || MyProc->pgprocno >= nslots)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dbsync: changes to tracked tables need dbsync in shared_preload_libraries"),
				 errhint("Add dbsync to shared_preload_libraries and restart the server.")));
	return &slots[MyProc->pgprocno];
}

void
ilog_horizon_begin(void)
{
	HorizonSlot *s = my_slot();

	if (!exit_hook_set)
	{
		before_shmem_exit(clear_at_exit, (Datum) 0);
		exit_hook_set = true;
	}
	pg_atomic_write_u32(&s->db, MyDatabaseId);
	pg_write_barrier();
	pg_atomic_write_u64(&s->first, 1);
	pg_memory_barrier();
	published = true;
}

void
ilog_horizon_first(int64 version)
{
	pg_atomic_write_u64(&my_slot()->first, (uint64) version);
}

static void
horizon_clear(void)
{
	if (!published)
		return;
	pg_atomic_write_u64(&slots[MyProc->pgprocno].first, 0);
	published = false;
}

/*
 * A bound every version taken from now on is at least: the sequence's last
 * value + 1 (or its last value when none was taken yet). Read, not taken, so
 * read-only transactions can read the log.
 */
static int64
versions_taken_below(Oid seqoid)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		last;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(seqoid);
	fcinfo->args[0].isnull = false;
	last = pg_sequence_last_value(fcinfo);
	if (fcinfo->isnull)
		return 1;				/* no version taken yet: the first is 1 */
	return DatumGetInt64(last) + 1;
}

int64
ilog_horizon_compute(Oid seqoid)
{
	int64		horizon;

	(void) my_slot();
	horizon = versions_taken_below(seqoid);
	pg_memory_barrier();
	for (int i = 0; i < nslots; i++)
	{
		uint64		first = pg_atomic_read_u64(&slots[i].first);

		if (first == 0)
			continue;
		pg_read_barrier();
		if (pg_atomic_read_u32(&slots[i].db) != MyDatabaseId)
			continue;
		if ((int64) first < horizon)
			horizon = (int64) first;
	}
	return horizon;
}

static void
xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (ilog_trigger_xact_logged())
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("dbsync: a transaction that changed tracked tables cannot be prepared")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/* runs after the commit became visible: now readers may pass it */
			horizon_clear();
			ilog_trigger_xact_end();
			ilog_store_xact_end();
			ilog_layout_xact_end(true);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			horizon_clear();
			ilog_trigger_xact_end();
			ilog_store_xact_end();
			ilog_layout_xact_end(false);
			break;
		default:
			break;
	}
}

static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		ilog_trigger_subxact_abort(mySubid);
		ilog_layout_subxact_abort(mySubid);
	}
}

static void
clear_at_exit(int code, Datum arg)
{
	horizon_clear();
}

void
ilog_xact_callbacks_init(void)
{
	RegisterXactCallback(xact_callback, NULL);
	RegisterSubXactCallback(subxact_callback, NULL);
}
