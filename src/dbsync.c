/*
 * dbsync.c: module entry point and settings.
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "dbsync.h"
#include "ilog.h"
#include "worker.h"

PG_MODULE_MAGIC;

int			dbsync_connect_timeout_ms = 10000;
int			dbsync_timeout_ms = 60000;
int			dbsync_max_response_size = 64 * 1024 * 1024;
char	   *dbsync_databases = NULL;
int			dbsync_naptime_s = 60;
int			dbsync_max_backoff_s = 3600;
int			dbsync_upgrade_poll_interval_s = 60;
char	   *dbsync_upgrade_download_dir = NULL;
int			dbsync_export_poll_interval_ms = 10000;
char	   *dbsync_export_download_dir = NULL;
int			dbsync_max_runners = 2;
int			dbsync_job_history_s = 7 * 24 * 3600;
int			dbsync_map_batch_size = 10000;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("dbsync.connect_timeout",
							"Time allowed to connect to a remote server that sets no connect_timeout option.",
							NULL,
							&dbsync_connect_timeout_ms,
							10000, 1, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("dbsync.timeout",
							"Time allowed for a whole request to a remote server that sets no timeout option.",
							NULL,
							&dbsync_timeout_ms,
							60000, 1, 24 * 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("dbsync.max_response_size",
							"Largest reply body kept in memory from a server that sets no max_response_size option.",
							NULL,
							&dbsync_max_response_size,
							64 * 1024 * 1024, 1024, MaxAllocSize,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomStringVariable("dbsync.databases",
							   "Databases whose dbsync jobs the background worker runs (comma-separated).",
							   NULL,
							   &dbsync_databases,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("dbsync.naptime",
							"Longest time the worker leaves a database unchecked.",
							NULL,
							&dbsync_naptime_s,
							60, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("dbsync.max_backoff",
							"Longest wait before a failing job is tried again.",
							NULL,
							&dbsync_max_backoff_s,
							3600, 1, 7 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("dbsync.upgrade_poll_interval",
							"How often the worker asks the Odoo upgrade service about a processed request.",
							NULL,
							&dbsync_upgrade_poll_interval_s,
							60, 1, 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("dbsync.upgrade_download_dir",
							   "Directory where the worker downloads upgraded dumps that were asked for (empty: none).",
							   NULL,
							   &dbsync_upgrade_download_dir,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("dbsync.export_poll_interval",
							"How often the worker, and dbsync_export_wait, ask the octoplant service about an unfinished export order.",
							NULL,
							&dbsync_export_poll_interval_ms,
							10000, 100, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("dbsync.export_download_dir",
							   "Directory where the worker downloads the ZIPs of export orders that were asked for (empty: none).",
							   NULL,
							   &dbsync_export_download_dir,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("dbsync.max_runners",
							"Most job runners working at once for one database.",
							"Each is a background worker: max_worker_processes must leave room for them.",
							&dbsync_max_runners,
							2, 1, DBSYNC_MAX_RUNNERS,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("dbsync.job_history",
							"How long finished one-off jobs stay in dbsync.job.",
							NULL,
							&dbsync_job_history_s,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("dbsync.map_batch_size",
							"Staged records the worker applies to mapped tables per transaction.",
							NULL,
							&dbsync_map_batch_size,
							10000, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("dbsync");

	/* The iLog's horizon follows every transaction's end. */
	ilog_xact_callbacks_init();

	/* The worker needs shared memory and a launcher: only when preloaded. */
	if (process_shared_preload_libraries_in_progress)
	{
		dbsync_shmem_init_hooks();
		dbsync_register_launcher();
	}
}
