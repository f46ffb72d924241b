/*
 * worker_shmem.c: the shared memory where the launcher and the runners meet.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "storage/shmem.h"

#include "ilog.h"
#include "worker.h"

static DbsyncShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(DbsyncShared)));
	RequestAddinShmemSpace(MAXALIGN(ilog_horizon_shmem_size()));
}

static void
shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("dbsync", sizeof(DbsyncShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(DbsyncShared));
		SpinLockInit(&shared->mutex);
	}
	ilog_horizon_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
dbsync_shmem_init_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;
}

/* NULL when dbsync is not in shared_preload_libraries. */
DbsyncShared *
dbsync_shared(void)
{
	return shared;
}

/*
 * Asks the launcher to start the database's runner now; false when no
 * worker serves the database (not preloaded, or not in dbsync.databases).
 */
bool
dbsync_wake_database(const char *dbname)
{
	Latch	   *latch = NULL;
	bool		served = false;

	if (shared == NULL)
		return false;
	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < DBSYNC_MAX_DATABASES; i++)
		if (strcmp(shared->db[i].name, dbname) == 0)
		{
			shared->db[i].wake = true;
			served = true;
		}
	latch = shared->launcher_latch;
	SpinLockRelease(&shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
	return served;
}

void
dbsync_set_next_due(int slot, TimestampTz due)
{
	if (shared == NULL || slot < 0 || slot >= DBSYNC_MAX_DATABASES)
		return;
	SpinLockAcquire(&shared->mutex);
	shared->db[slot].next_due = due;
	SpinLockRelease(&shared->mutex);
}

static void
release_runner_slot(int code, Datum arg)
{
	int			slot = DatumGetInt32(arg);

	SpinLockAcquire(&shared->mutex);
	if (shared->db[slot].runner_pid == MyProcPid)
		shared->db[slot].runner_pid = 0;
	SpinLockRelease(&shared->mutex);
}

/*
 * A runner registers as its database's runner; false when another live one
 * is (a restarted launcher does not know the runners of its predecessor).
 */
bool
dbsync_claim_runner_slot(int slot)
{
	pid_t		other;

	SpinLockAcquire(&shared->mutex);
	other = shared->db[slot].runner_pid;
	SpinLockRelease(&shared->mutex);
	if (other != 0 && other != MyProcPid && BackendPidGetProc(other) != NULL)
		return false;

	SpinLockAcquire(&shared->mutex);
	shared->db[slot].runner_pid = MyProcPid;
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(release_runner_slot, Int32GetDatum(slot));
	return true;
}

/* Whether a live runner holds the slot. */
bool
dbsync_runner_running(int slot)
{
	pid_t		pid;

	SpinLockAcquire(&shared->mutex);
	pid = shared->db[slot].runner_pid;
	SpinLockRelease(&shared->mutex);
	return pid != 0 && BackendPidGetProc(pid) != NULL;
}
