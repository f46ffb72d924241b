/*
 * worker.h: dbsync's background workers.
 *
 * A launcher (started by shared_preload_libraries) starts job runners for
 * each database named in dbsync.databases whenever that database has a job
 * due: one, and more (up to dbsync.max_runners) while every runner is busy
 * and jobs wait. Runners claim jobs of dbsync.job with SKIP LOCKED and exit
 * when the next one is far off, so no runner stays connected to an idle
 * database (DROP DATABASE is not held up) and a dropped extension or
 * database just means nothing to run. A transaction that adds jobs wakes
 * them at commit. They meet in a small shared memory area.
 */
#ifndef DBSYNC_WORKER_H
#define DBSYNC_WORKER_H

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/spin.h"

#define DBSYNC_MAX_DATABASES 16
#define DBSYNC_MAX_RUNNERS 8

typedef struct DbsyncRunnerSlot
{
	pid_t		pid;			/* 0: free */
	bool		busy;			/* running a job */
} DbsyncRunnerSlot;

typedef struct DbsyncDatabaseSlot
{
	char		name[NAMEDATALEN];	/* empty: slot unused */
	bool		wake;			/* new work was added: start a runner now */
	TimestampTz next_due;		/* when its runner should run next (0: now) */
	DbsyncRunnerSlot runner[DBSYNC_MAX_RUNNERS];
} DbsyncDatabaseSlot;

typedef struct DbsyncShared
{
	slock_t		mutex;
	Latch	   *launcher_latch; /* NULL while no launcher runs */
	DbsyncDatabaseSlot db[DBSYNC_MAX_DATABASES];
} DbsyncShared;

/* Settings (dbsync.c). */
extern char *dbsync_databases;
extern int	dbsync_naptime_s;
extern int	dbsync_max_backoff_s;
extern int	dbsync_upgrade_poll_interval_s;
extern char *dbsync_upgrade_download_dir;
extern int	dbsync_export_poll_interval_ms;
extern char *dbsync_export_download_dir;
extern int	dbsync_max_runners;
extern int	dbsync_job_history_s;
extern int	dbsync_map_batch_size;

/* worker_shmem.c */
extern void dbsync_shmem_init_hooks(void);
extern DbsyncShared *dbsync_shared(void);
extern bool dbsync_wake_database(const char *dbname);
extern bool dbsync_database_served(const char *dbname);
extern void dbsync_set_next_due(int slot, TimestampTz due);
extern bool dbsync_claim_runner_slot(int slot);
extern void dbsync_runner_set_busy(int slot, bool busy);
extern void dbsync_runner_counts(int slot, const pid_t *extra, int nextra, int *alive, int *idle);
extern void dbsync_request_runner(int slot);

/* job_wake.c */
extern bool dbsync_am_runner;
extern bool dbsync_wake_at_commit(void);

/* extension_version.c */
extern char *dbsync_installed_version(void);

/* worker_launcher.c */
extern void dbsync_register_launcher(void);
PGDLLEXPORT void dbsync_launcher_main(Datum arg);

/* job_runner.c */
PGDLLEXPORT void dbsync_runner_main(Datum arg);

#endif
