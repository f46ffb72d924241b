/*
 * worker_shmem.c: the shared memory where the launcher and the runners meet.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
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

/* Sets a live runner's latch. */
static void
wake_runner(pid_t pid)
{
	PGPROC	   *proc = pid != 0 ? BackendPidGetProc(pid) : NULL;

	if (proc != NULL)
		SetLatch(&proc->procLatch);
}

/*
 * Tells the launcher and the database's runners that it has new work; false
 * when no worker serves the database (not preloaded, or not in dbsync.databases).
 */
bool
dbsync_wake_database(const char *dbname)
{
	Latch	   *latch = NULL;
	bool		served = false;
	pid_t		pids[DBSYNC_MAX_RUNNERS * DBSYNC_MAX_DATABASES];
	int			npids = 0;

	if (shared == NULL)
		return false;
	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < DBSYNC_MAX_DATABASES; i++)
		if (strcmp(shared->db[i].name, dbname) == 0)
		{
			shared->db[i].wake = true;
			served = true;
			for (int r = 0; r < DBSYNC_MAX_RUNNERS; r++)
				if (shared->db[i].runner[r].pid != 0 && !shared->db[i].runner[r].busy)
					pids[npids++] = shared->db[i].runner[r].pid;
		}
	latch = shared->launcher_latch;
	SpinLockRelease(&shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
	for (int i = 0; i < npids; i++)
		wake_runner(pids[i]);
	return served;
}

/* Whether a worker serves the database, without waking anyone. */
bool
dbsync_database_served(const char *dbname)
{
	bool		served = false;

	if (shared == NULL)
		return false;
	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < DBSYNC_MAX_DATABASES; i++)
		if (strcmp(shared->db[i].name, dbname) == 0)
			served = true;
	SpinLockRelease(&shared->mutex);
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
	for (int r = 0; r < DBSYNC_MAX_RUNNERS; r++)
		if (shared->db[slot].runner[r].pid == MyProcPid)
		{
			shared->db[slot].runner[r].pid = 0;
			shared->db[slot].runner[r].busy = false;
		}
	SpinLockRelease(&shared->mutex);
}

/*
 * A runner registers among its database's runners; false when
 * dbsync.max_runners live ones are there already (a restarted launcher does
 * not know the runners of its predecessor).
 */
bool
dbsync_claim_runner_slot(int slot)
{
	pid_t		pids[DBSYNC_MAX_RUNNERS];
	int			limit = Min(dbsync_max_runners, DBSYNC_MAX_RUNNERS);
	int			chosen = -1;

	SpinLockAcquire(&shared->mutex);
	for (int r = 0; r < DBSYNC_MAX_RUNNERS; r++)
		pids[r] = shared->db[slot].runner[r].pid;
	SpinLockRelease(&shared->mutex);
	/* BackendPidGetProc takes a lock: not under the spinlock. */
	for (int r = 0; r < limit && chosen < 0; r++)
		if (pids[r] == 0 || BackendPidGetProc(pids[r]) == NULL)
			chosen = r;
	if (chosen < 0)
		return false;

	SpinLockAcquire(&shared->mutex);
	if (shared->db[slot].runner[chosen].pid == pids[chosen])
	{
		shared->db[slot].runner[chosen].pid = MyProcPid;
		shared->db[slot].runner[chosen].busy = false;
	}
	else
		chosen = -1;			/* another runner took it meanwhile */
	SpinLockRelease(&shared->mutex);
	if (chosen < 0)
		return false;
	before_shmem_exit(release_runner_slot, Int32GetDatum(slot));
	return true;
}

void
dbsync_runner_set_busy(int slot, bool busy)
{
	SpinLockAcquire(&shared->mutex);
	for (int r = 0; r < DBSYNC_MAX_RUNNERS; r++)
		if (shared->db[slot].runner[r].pid == MyProcPid)
			shared->db[slot].runner[r].busy = busy;
	SpinLockRelease(&shared->mutex);
}

/*
 * How many runners of the database live and how many of them wait for work.
 * extra: runners the launcher started that may not have registered yet
 * (counted as alive and idle unless registered).
 */
void
dbsync_runner_counts(int slot, const pid_t *extra, int nextra, int *alive, int *idle)
{
	DbsyncRunnerSlot runners[DBSYNC_MAX_RUNNERS];

	SpinLockAcquire(&shared->mutex);
	memcpy(runners, shared->db[slot].runner, sizeof(runners));
	SpinLockRelease(&shared->mutex);
	*alive = 0;
	*idle = 0;
	for (int r = 0; r < DBSYNC_MAX_RUNNERS; r++)
		if (runners[r].pid != 0 && BackendPidGetProc(runners[r].pid) != NULL)
		{
			(*alive)++;
			if (!runners[r].busy)
				(*idle)++;
		}
	for (int e = 0; e < nextra; e++)
	{
		bool		registered = false;

		for (int r = 0; r < DBSYNC_MAX_RUNNERS; r++)
			if (runners[r].pid != 0 && runners[r].pid == extra[e])
				registered = true;
		if (!registered)
		{
			(*alive)++;
			(*idle)++;
		}
	}
}

/* A busy runner saw more jobs due: the launcher starts another if the limit allows. */
void
dbsync_request_runner(int slot)
{
	Latch	   *latch;

	SpinLockAcquire(&shared->mutex);
	shared->db[slot].wake = true;
	latch = shared->launcher_latch;
	SpinLockRelease(&shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}
