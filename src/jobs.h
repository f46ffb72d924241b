/*
 * jobs.h: the job queue (dbsync.job) as the runner sees it. Each call is one
 * statement inside an open step (bg_txn.h).
 */
#ifndef DBSYNC_JOBS_H
#define DBSYNC_JOBS_H

#include "datatype/timestamp.h"

typedef struct DbsyncJob
{
	int64		id;
	char	   *kind;
	bool		has_subscription;
	int32		subscription_id;
	Oid			owner;
	char	   *args;			/* JSON text */
} DbsyncJob;

/* Takes the next due job (of an enabled subscription, if any) and marks it running. */
extern bool jobs_claim_next(DbsyncJob *job);

/* Success: done, or pending again (after retry_ms when > 0, else at its next repetition). */
extern void jobs_finish_ok(const DbsyncJob *job, int retry_ms, const char *result_json);

/* Success that ends a recurring job too. */
extern void jobs_finish_final(const DbsyncJob *job, const char *result_json);

/* Failure: pending again after an exponential backoff, or failed for good. */
extern void jobs_finish_error(const DbsyncJob *job, const char *error);

/* Jobs left running by a runner that died: pending again. Returns how many. */
extern uint64 jobs_repair(void);

/* When the next job is due; false when none is pending. */
extern bool jobs_next_due(TimestampTz *due);

#endif
