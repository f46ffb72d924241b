/*
 * worker_shmem.c: the shared memory where the launcher and the runners meet.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

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

/* Asks the launcher to start the database's runner now (no-op without a launcher). */
void
dbsync_wake_database(const char *dbname)
{
	Latch	   *latch = NULL;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < DBSYNC_MAX_DATABASES; i++)
		if (strcmp(shared->db[i].name, dbname) == 0)
			shared->db[i].wake = true;
	latch = shared->launcher_latch;
	SpinLockRelease(&shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
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
