/*
 * jobs.c: statements on the job queue (see jobs.h).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "bg_txn.h"
#include "jobs.h"
#include "worker.h"

/* Jobs of disabled subscriptions wait. */
#define ELIGIBLE \
	"j.state = 'pending' AND (j.subscription_id IS NULL OR EXISTS " \
	"(SELECT FROM dbsync.subscription s WHERE s.id = j.subscription_id AND s.enabled))"

bool
jobs_claim_next(DbsyncJob *job)
{
	static SPIPlanPtr p;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	if (txn_execute(txn_plan(&p,
							  "UPDATE dbsync.job SET state = 'running', runner_pid = pg_backend_pid(), "
							  "started_at = now() WHERE id = (SELECT j.id FROM dbsync.job j WHERE " ELIGIBLE
							  " AND j.run_at <= now() ORDER BY j.priority, j.run_at, j.id LIMIT 1 FOR UPDATE SKIP LOCKED) "
							  "RETURNING id, kind, subscription_id, owner, args::text",
							  0, NULL), NULL, NULL, false) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim a job");
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	job->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	job->kind = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
	d = SPI_getbinval(tup, desc, 3, &isnull);
	job->has_subscription = !isnull;
	job->subscription_id = isnull ? 0 : DatumGetInt32(d);
	job->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
	job->args = TextDatumGetCString(SPI_getbinval(tup, desc, 5, &isnull));
	return true;
}

void
jobs_finish_ok(const DbsyncJob *job, int retry_ms, const char *result_json)
{
	static SPIPlanPtr p;
	Oid			types[3] = {INT8OID, INT4OID, TEXTOID};
	Datum		values[3] = {Int64GetDatum(job->id), Int32GetDatum(retry_ms), CStringGetTextDatum(result_json)};

	if (txn_execute(txn_plan(&p,
							  "UPDATE dbsync.job SET state = CASE WHEN repeat_every IS NULL AND $2 = 0 "
							  "THEN 'done' ELSE 'pending' END, "
							  "run_at = CASE WHEN $2 > 0 THEN now() + $2 * interval '1 millisecond' "
							  "WHEN repeat_every IS NOT NULL THEN now() + repeat_every ELSE run_at END, "
							  "attempts = 0, runner_pid = NULL, finished_at = clock_timestamp(), last_error = NULL, "
							  "result = $3::jsonb WHERE id = $1",
							  3, types), values, NULL, false) != SPI_OK_UPDATE)
		elog(ERROR, "could not finish job " INT64_FORMAT, job->id);
}

void
jobs_finish_final(const DbsyncJob *job, const char *result_json, bool gave_up)
{
	static SPIPlanPtr p;
	Oid			types[3] = {INT8OID, TEXTOID, BOOLOID};
	Datum		values[3] = {Int64GetDatum(job->id), CStringGetTextDatum(result_json), BoolGetDatum(gave_up)};

	if (txn_execute(txn_plan(&p,
							 "UPDATE dbsync.job SET state = CASE WHEN $3 THEN 'failed' ELSE 'done' END, attempts = 0, "
							 "runner_pid = NULL, finished_at = clock_timestamp(), "
							 "last_error = CASE WHEN $3 THEN $2::jsonb->>'error' END, result = $2::jsonb WHERE id = $1",
							 3, types), values, NULL, false) != SPI_OK_UPDATE)
		elog(ERROR, "could not finish job " INT64_FORMAT, job->id);
}

void
jobs_finish_error(const DbsyncJob *job, const char *error)
{
	static SPIPlanPtr p;
	Oid			types[3] = {INT8OID, TEXTOID, INT4OID};
	Datum		values[3] = {Int64GetDatum(job->id), CStringGetTextDatum(error), Int32GetDatum(dbsync_max_backoff_s)};

	/* Retry after min(interval, 10 s) doubled per failure, at most dbsync.max_backoff. */
	if (txn_execute(txn_plan(&p,
							  "UPDATE dbsync.job SET attempts = attempts + 1, runner_pid = NULL, "
							  "finished_at = clock_timestamp(), last_error = $2, "
							  "state = CASE WHEN repeat_every IS NULL AND attempts + 1 >= max_attempts "
							  "THEN 'failed' ELSE 'pending' END, "
							  "run_at = now() + least(least(coalesce(repeat_every, interval '10 seconds'), "
							  "interval '10 seconds') * power(2, least(attempts, 30)), $3 * interval '1 second') "
							  "WHERE id = $1",
							  3, types), values, NULL, false) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the failure of job " INT64_FORMAT, job->id);
}

uint64
jobs_repair(void)
{
	static SPIPlanPtr p;
	static SPIPlanPtr drop_dup;

	/*
	 * Interrupted applies of a subscription that has a pending one, or
	 * another interrupted one with a higher id: the one kept covers them
	 * (one pending apply per subscription).
	 */
	if (txn_execute(txn_plan(&drop_dup, "DELETE FROM dbsync.job j WHERE j.kind = 'map_apply' AND j.state = 'running' "
							 "AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = j.runner_pid) "
							 "AND EXISTS (SELECT FROM dbsync.job o WHERE o.kind = 'map_apply' "
							 "AND o.subscription_id = j.subscription_id AND (o.state = 'pending' OR "
							 "(o.state = 'running' AND o.id > j.id AND NOT EXISTS "
							 "(SELECT FROM pg_stat_activity a2 WHERE a2.pid = o.runner_pid))))", 0, NULL),
					NULL, NULL, false) != SPI_OK_DELETE)
		elog(ERROR, "could not repair interrupted jobs");

	if (txn_execute(txn_plan(&p, "UPDATE dbsync.job SET state = 'pending', runner_pid = NULL, run_at = now(), "
							 "last_error = 'the job runner stopped during this job; it runs again' "
							 "WHERE state = 'running' AND (runner_pid IS NULL OR NOT EXISTS "
							 "(SELECT FROM pg_stat_activity a WHERE a.pid = runner_pid))", 0, NULL),
					NULL, NULL, false) != SPI_OK_UPDATE)
		elog(ERROR, "could not repair interrupted jobs");
	return SPI_processed;
}

bool
jobs_more_due_now(void)
{
	static SPIPlanPtr p;

	if (txn_execute(txn_plan(&p, "SELECT FROM dbsync.job j WHERE " ELIGIBLE " AND j.run_at <= now() LIMIT 1",
							 0, NULL), NULL, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "could not read the job queue");
	return SPI_processed > 0;
}

bool
jobs_next_due(TimestampTz *due)
{
	static SPIPlanPtr p;
	bool		isnull;
	Datum		d;

	if (txn_execute(txn_plan(&p, "SELECT min(j.run_at) FROM dbsync.job j WHERE " ELIGIBLE, 0, NULL),
					NULL, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "could not read the job queue");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return false;
	*due = DatumGetTimestampTz(d);
	return true;
}
