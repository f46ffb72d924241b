/*
 * dbsync.c: module entry point and settings.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "dbsync.h"

PG_MODULE_MAGIC;

int			dbsync_connect_timeout_ms = 10000;
int			dbsync_timeout_ms = 60000;
int			dbsync_max_response_size = 64 * 1024 * 1024;

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

	MarkGUCPrefixReserved("dbsync");
}
