/*
 * worker_launcher.c: starts a job runner for each database of dbsync.databases
 * when it has work due (see worker.h).
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "worker.h"

/* The runners this launcher started, per database. */
static BackgroundWorkerHandle *runners[DBSYNC_MAX_DATABASES][DBSYNC_MAX_RUNNERS];

void
dbsync_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "dbsync");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "dbsync_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "dbsync launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "dbsync launcher");
	RegisterBackgroundWorker(&bgw);
}

/* Makes the shared slots match dbsync.databases; a database keeps its slot while listed. */
static void
sync_slots(void)
{
	DbsyncShared *sh = dbsync_shared();
	char	   *raw = pstrdup(dbsync_databases);
	List	   *names = NIL;
	bool		listed[DBSYNC_MAX_DATABASES] = {false};
	ListCell   *lc;

	if (!SplitIdentifierString(raw, ',', &names))
	{
		ereport(LOG,
				(errmsg("dbsync: invalid dbsync.databases \"%s\"; expected a comma-separated list of database names",
						dbsync_databases)));
		names = NIL;
	}

	SpinLockAcquire(&sh->mutex);
	foreach(lc, names)
	{
		const char *name = lfirst(lc);
		int			free_slot = -1;
		int			found = -1;

		for (int i = 0; i < DBSYNC_MAX_DATABASES; i++)
		{
			if (strcmp(sh->db[i].name, name) == 0)
				found = i;
			else if (sh->db[i].name[0] == '\0' && free_slot < 0)
				free_slot = i;
		}
		if (found < 0 && free_slot >= 0)
		{
			found = free_slot;
			strlcpy(sh->db[found].name, name, NAMEDATALEN);
			sh->db[found].next_due = 0;
			sh->db[found].wake = true;
			memset(sh->db[found].runner, 0, sizeof(sh->db[found].runner));
		}
		if (found >= 0)
			listed[found] = true;
	}
	for (int i = 0; i < DBSYNC_MAX_DATABASES; i++)
		if (!listed[i])
			sh->db[i].name[0] = '\0';
	SpinLockRelease(&sh->mutex);
	if (list_length(names) > DBSYNC_MAX_DATABASES)
		ereport(LOG, (errmsg("dbsync: only the first %d databases of dbsync.databases are served",
							 DBSYNC_MAX_DATABASES)));
}

/* A scan of the shared catalog pg_database: the launcher has no database for index lookups. */
static bool
database_exists(const char *name)
{
	bool		exists = false;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!exists && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		exists = strcmp(NameStr(db->datname), name) == 0 && db->datallowconn;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return exists;
}

/*
 * Counts the database's runners; *free_handle: where a new runner's handle
 * goes (-1: none free).
 */
static void
count_runners(int slot, int *alive, int *idle, int *free_handle)
{
	pid_t		starting[DBSYNC_MAX_RUNNERS];
	int			nstarting = 0;

	*free_handle = -1;
	for (int r = 0; r < DBSYNC_MAX_RUNNERS; r++)
	{
		pid_t		pid = 0;
		BgwHandleStatus st = runners[slot][r] != NULL ?
			GetBackgroundWorkerPid(runners[slot][r], &pid) : BGWH_STOPPED;

		if (st == BGWH_STARTED || st == BGWH_NOT_YET_STARTED)
			starting[nstarting++] = st == BGWH_STARTED ? pid : -1;
		else if (*free_handle < 0)
			*free_handle = r;
	}
	dbsync_runner_counts(slot, starting, nstarting, alive, idle);
}

static void
start_runner(int slot, int handle, const char *dbname)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "dbsync");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "dbsync_runner_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "dbsync job runner for %s", dbname);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "dbsync job runner");
	bgw.bgw_main_arg = Int32GetDatum(slot);
	strlcpy(bgw.bgw_extra, dbname, BGW_EXTRALEN);
	bgw.bgw_notify_pid = MyProcPid;

	if (runners[slot][handle] != NULL)
		pfree(runners[slot][handle]);
	runners[slot][handle] = NULL;
	if (!RegisterDynamicBackgroundWorker(&bgw, &runners[slot][handle]))
		ereport(LOG,
				(errmsg("dbsync: could not start a job runner for database \"%s\"", dbname),
				 errhint("Raise max_worker_processes.")));
}

/*
 * Starts the runners that are due: one when a database has work and no
 * runner, another while all of its runners are busy and it has more work
 * (up to dbsync.max_runners). Returns how long to sleep (ms).
 */
static long
start_due_runners(void)
{
	DbsyncShared *sh = dbsync_shared();
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = dbsync_naptime_s * 1000L;

	for (int i = 0; i < DBSYNC_MAX_DATABASES; i++)
	{
		char		name[NAMEDATALEN];
		bool		wake;
		TimestampTz next_due;
		int			alive;
		int			idle;
		int			free_handle;

		SpinLockAcquire(&sh->mutex);
		strlcpy(name, sh->db[i].name, NAMEDATALEN);
		next_due = sh->db[i].next_due;
		wake = sh->db[i].wake;
		SpinLockRelease(&sh->mutex);
		if (name[0] == '\0')
			continue;

		count_runners(i, &alive, &idle, &free_handle);
		if (alive > 0)
		{
			/*
			 * An idle runner finds due work itself; while all are busy, a
			 * wake or a job coming due starts another. While one is idle
			 * the wake stays set: should that runner be exiting, the next
			 * one starts.
			 */
			if ((wake || next_due <= now) && idle == 0 && alive < dbsync_max_runners && free_handle >= 0)
			{
				SpinLockAcquire(&sh->mutex);
				sh->db[i].wake = false;
				sh->db[i].next_due = TimestampTzPlusMilliseconds(now, dbsync_naptime_s * 1000L);
				SpinLockRelease(&sh->mutex);
				start_runner(i, free_handle, name);
			}
			else if (next_due > now)
				sleep_ms = Min(sleep_ms, Max(10, TimestampDifferenceMilliseconds(now, next_due)));
			continue;
		}
		if (wake || next_due <= now)
		{
			SpinLockAcquire(&sh->mutex);
			sh->db[i].wake = false;
			/* The runner sets the real time when it exits; this is the fallback. */
			sh->db[i].next_due = TimestampTzPlusMilliseconds(now, dbsync_naptime_s * 1000L);
			SpinLockRelease(&sh->mutex);
			if (database_exists(name) && free_handle >= 0)
				start_runner(i, free_handle, name);
		}
		else
			sleep_ms = Min(sleep_ms, Max(10, TimestampDifferenceMilliseconds(now, next_due)));
	}
	return sleep_ms;
}

static void
forget_launcher(int code, Datum arg)
{
	DbsyncShared *sh = dbsync_shared();

	SpinLockAcquire(&sh->mutex);
	sh->launcher_latch = NULL;
	SpinLockRelease(&sh->mutex);
}

void
dbsync_launcher_main(Datum arg)
{
	DbsyncShared *sh = dbsync_shared();

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* No database: the launcher only reads the shared catalog pg_database. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	SpinLockAcquire(&sh->mutex);
	sh->launcher_latch = MyLatch;
	SpinLockRelease(&sh->mutex);
	before_shmem_exit(forget_launcher, (Datum) 0);

	sync_slots();
	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			sync_slots();
		}
		sleep_ms = start_due_runners();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
