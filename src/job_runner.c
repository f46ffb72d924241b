/*
 * job_runner.c: runs the due jobs of one database, then exits (see worker.h).
 *
 * Each job runs in steps (bg_txn.h). An ERROR in a job aborts the step in
 * flight, is logged and recorded on the job (which backs off), and the
 * runner goes on; SIGTERM ends the runner at once, even during a request,
 * and a job it leaves 'running' is repaired by the next runner.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "bg_txn.h"
#include "jobs.h"
#include "repl.h"
#include "sync.h"
#include "worker.h"

/* A job runs at most this many pages before it yields to the others. */
#define PAGES_PER_JOB_RUN 100
/* A runner waits for a job due this soon instead of exiting. */
#define WAIT_FOR_DUE_MS 1000
/* How soon a job whose subscription was busy tries again. */
#define BUSY_RETRY_MS 1000

/*
 * Whether the database has dbsync, at the version this build is for, with its job queue. A database
 * still at another version gets a WARNING each time a runner looks (every dbsync.naptime) and no job
 * runs there until ALTER EXTENSION dbsync UPDATE.
 */
static bool
extension_ready(const char *dbname)
{
	bool		ready;
	Oid			nsp;
	char	   *version;

	StartTransactionCommand();
	nsp = get_namespace_oid("dbsync", true);
	version = dbsync_installed_version();
	ready = version != NULL && OidIsValid(nsp) && OidIsValid(get_relname_relid("job", nsp));
	if (ready && strcmp(version, DBSYNC_VERSION) != 0)
	{
		ereport(WARNING,
				(errmsg("dbsync: database \"%s\" has dbsync %s installed, but this build is %s: its jobs do not run",
						dbname, version, DBSYNC_VERSION),
				 errhint("Run ALTER EXTENSION dbsync UPDATE in that database.")));
		ready = false;
	}
	CommitTransactionCommand();
	return ready;
}

static void
run_changes_pull(TxnScope *tx, const DbsyncJob *job)
{
	SyncRoundResult res;
	char	   *result;

	sync_round_run(tx, job->subscription_id, true, PAGES_PER_JOB_RUN, &res);
	result = psprintf("{\"outcome\": \"%s\", \"pages\": %d, \"changes\": " INT64_FORMAT
					  ", \"records\": " INT64_FORMAT ", \"records_missing\": " INT64_FORMAT "}",
					  res.outcome, res.pages, res.changes, res.records, res.missing);
	txn_begin(tx);
	jobs_finish_ok(job, strcmp(res.outcome, "busy") == 0 ? BUSY_RETRY_MS
				   : strcmp(res.outcome, "more") == 0 ? 1 : 0, result);
	txn_commit(tx);
}

/* The iLog's upkeep: partitions ahead, entries past their tables' max days purged. */
static void
run_ilog_maintain(TxnScope *tx, const DbsyncJob *job)
{
	char	   *result;

	txn_begin(tx);
	if (SPI_execute("SELECT dbsync.ilog_maintain()::text", false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "dbsync: dbsync.ilog_maintain() failed");
	result = MemoryContextStrdup(tx->work_cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	jobs_finish_ok(job, 0, result);
	txn_commit(tx);
}

/* A replication config's sync; a failed target makes the job back off, with the first error. */
static void
run_replication_sync(TxnScope *tx, const DbsyncJob *job)
{
	int64		config_key;
	int			failures;
	char	   *first_error;
	char	   *result;

	txn_begin(tx);
	if (SPI_execute_with_args("SELECT ($1::jsonb->>'config')::bigint", 1, (Oid[]) {TEXTOID},
							  (Datum[]) {CStringGetTextDatum(job->args)}, NULL, true, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "dbsync: could not read the arguments of job " INT64_FORMAT, job->id);
	config_key = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &(bool) {false}));
	txn_commit(tx);

	result = repl_run_config(tx, config_key, &failures, &first_error);
	txn_begin(tx);
	if (failures == 0)
		jobs_finish_ok(job, 0, result);
	else
		jobs_finish_error(job, first_error);
	txn_commit(tx);
}

/* Records a failed job; if even that fails (extension dropped), the runner stops. */
static void
record_failure(TxnScope *tx, const DbsyncJob *job, const char *message)
{
	PG_TRY();
	{
		txn_begin(tx);
		jobs_finish_error(job, message);
		if (job->has_subscription)
			store_round_failed(job->subscription_id, message);
		txn_commit(tx);
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
		txn_abort_after_error(tx);
		ereport(LOG, (errmsg("dbsync job runner stops: it could not record the failure of job " INT64_FORMAT,
							 job->id)));
		proc_exit(0);
	}
	PG_END_TRY();
}

/* A recurring job that follows something remote: one run, then what its outcome says. */
static void
finish_recurring(TxnScope *tx, const DbsyncJob *job, RecurringJobFn run)
{
	char	   *result = NULL;
	JobOutcome	outcome = run(tx, job, &result);

	txn_begin(tx);
	if (outcome == JOB_AGAIN)
		jobs_finish_ok(job, 0, result);
	else
		jobs_finish_final(job, result, outcome == JOB_GAVE_UP);
	txn_commit(tx);
}

static void
run_job(MemoryContext job_cxt, const DbsyncJob *job)
{
	TxnScope	tx;

	txn_scope_init(&tx, true);
	pgstat_report_activity(STATE_RUNNING, psprintf("dbsync job " INT64_FORMAT ": %s", job->id, job->kind));
	PG_TRY();
	{
		if (strcmp(job->kind, "changes_pull") == 0 && job->has_subscription)
			run_changes_pull(&tx, job);
		else if (strcmp(job->kind, "upgrade_poll") == 0)
			finish_recurring(&tx, job, run_upgrade_poll);
		else if (strcmp(job->kind, "export_poll") == 0)
			finish_recurring(&tx, job, run_export_poll);
		else if (strcmp(job->kind, "ilog_maintain") == 0)
			run_ilog_maintain(&tx, job);
		else if (strcmp(job->kind, "replication_sync") == 0)
			run_replication_sync(&tx, job);
		else if (strcmp(job->kind, "map_apply") == 0 && job->has_subscription)
			run_map_apply(&tx, job);
		else if (strcmp(job->kind, "checkpoint_retry") == 0 && job->has_subscription)
			run_checkpoint_retry(&tx, job);
		else if (strcmp(job->kind, "call") == 0)
			run_call(&tx, job);
		else if (strcmp(job->kind, "noop") == 0)
			run_noop(&tx, job);
		else if (strcmp(job->kind, "job_purge") == 0)
			run_job_purge(&tx, job);
		else
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("dbsync job " INT64_FORMAT " has unknown kind \"%s\"", job->id, job->kind)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* Log it as any failed statement would be, then keep it for the job's row. */
		EmitErrorReport();
		MemoryContextSwitchTo(job_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		tx.work_cxt = job_cxt;
		txn_abort_after_error(&tx);
		LockReleaseAll(USER_LOCKMETHOD, true);
		record_failure(&tx, job, edata->message);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* After a claim: if more jobs are due, every runner is busy and the limit allows, one more starts. */
static void
ask_for_help(int slot)
{
	int			alive;
	int			idle;

	dbsync_runner_counts(slot, NULL, 0, &alive, &idle);
	if (idle == 0 && alive < dbsync_max_runners && jobs_more_due_now())
		dbsync_request_runner(slot);
}

/* Exits, telling the launcher when to start the next runner (at most dbsync.naptime away). */
static void
runner_exit(int slot, TimestampTz next_due)
{
	TimestampTz latest = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), dbsync_naptime_s * 1000L);

	dbsync_set_next_due(slot, Min(next_due, latest));
	proc_exit(0);
}

void
dbsync_runner_main(Datum arg)
{
	int			slot = DatumGetInt32(arg);
	char		dbname[NAMEDATALEN];
	MemoryContext job_cxt;
	TxnScope	tx;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	strlcpy(dbname, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	if (!dbsync_claim_runner_slot(slot))
		proc_exit(0);			/* the database has its runners already */
	dbsync_am_runner = true;
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	pgstat_report_appname("dbsync job runner");

	if (!extension_ready(dbname))
		runner_exit(slot, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), dbsync_naptime_s * 1000L));

	job_cxt = AllocSetContextCreate(TopMemoryContext, "dbsync job", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(job_cxt);
	txn_scope_init(&tx, true);

	txn_begin(&tx);
	{
		uint64		repaired = jobs_repair();

		if (repaired > 0)
			ereport(LOG, (errmsg("dbsync: %llu job(s) interrupted by a stopped runner will run again",
								 (unsigned long long) repaired)));
	}
	txn_commit(&tx);

	for (;;)
	{
		DbsyncJob	job;
		bool		claimed;
		TimestampTz due = 0;
		bool		has_due = false;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(job_cxt);
		MemoryContextSwitchTo(job_cxt);
		tx.work_cxt = job_cxt;

		txn_begin(&tx);
		claimed = jobs_claim_next(&job);
		if (!claimed)
			has_due = jobs_next_due(&due);
		else
		{
			dbsync_runner_set_busy(slot, true);
			ask_for_help(slot);
		}
		txn_commit(&tx);

		if (claimed)
		{
			run_job(job_cxt, &job);
			dbsync_runner_set_busy(slot, false);
			continue;
		}
		if (has_due)
		{
			long		wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), due);

			if (wait_ms <= WAIT_FOR_DUE_MS)
			{
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 Max(wait_ms, 1), PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
				continue;
			}
			runner_exit(slot, due);
		}
		runner_exit(slot, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), dbsync_naptime_s * 1000L));
	}
}
