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

/* What a run of a recurring job says of it. */
typedef enum JobOutcome
{
	JOB_AGAIN,					/* pending again at its next repetition */
	JOB_ENDED,					/* done: what it followed has ended */
	JOB_GAVE_UP					/* failed for good: retrying cannot help (result_json has "error") */
} JobOutcome;

/* Ends a recurring job too: done, or failed for good when gave_up. */
extern void jobs_finish_final(const DbsyncJob *job, const char *result_json, bool gave_up);

/* Recurring jobs that follow a remote request: one poll per run, *result the job's result JSON. */
struct TxnScope;
typedef JobOutcome (*RecurringJobFn) (struct TxnScope *tx, const DbsyncJob *job, char **result);
extern JobOutcome run_upgrade_poll(struct TxnScope *tx, const DbsyncJob *job, char **result);	/* upgrade_jobs.c */
extern JobOutcome run_export_poll(struct TxnScope *tx, const DbsyncJob *job, char **result);	/* export_jobs.c */

/* Failure: pending again after an exponential backoff, or failed for good. */
extern void jobs_finish_error(const DbsyncJob *job, const char *error);

/* Jobs left running by a runner that died: pending again. Returns how many. */
extern uint64 jobs_repair(void);

/* Whether another job is due now (after a claim). */
extern bool jobs_more_due_now(void);

/* The kinds of the connector layer and the queue itself (job_kinds.c). */
extern void run_map_apply(struct TxnScope *tx, const DbsyncJob *job);
extern void run_checkpoint_retry(struct TxnScope *tx, const DbsyncJob *job);
extern void run_call(struct TxnScope *tx, const DbsyncJob *job);
extern void run_noop(struct TxnScope *tx, const DbsyncJob *job);
extern void run_job_purge(struct TxnScope *tx, const DbsyncJob *job);

/* When the next job is due; false when none is pending. */
extern bool jobs_next_due(TimestampTz *due);

#endif
