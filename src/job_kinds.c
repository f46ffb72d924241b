/*
 * job_kinds.c: the jobs of the connector layer (map_apply, checkpoint_retry)
 * and of the queue itself (call, noop, job_purge). The connector's work is
 * all local: each round is one transaction, run with the rights of the job's
 * owner, in which the applied rows, their bindings and the mappings' cursors
 * commit together.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "bg_txn.h"
#include "jobs.h"
#include "worker.h"

/* A map_apply job yields to the other jobs after this long. */
#define MAP_APPLY_SLICE_MS 10000

typedef struct OwnerScope
{
	Oid			saved_user;
	int			saved_context;
} OwnerScope;

/* Within a step: from here on, statements run with the rights of the job's owner. */
static void
become_owner(const DbsyncJob *job, OwnerScope *scope)
{
	GetUserIdAndSecContext(&scope->saved_user, &scope->saved_context);
	SetUserIdAndSecContext(job->owner, scope->saved_context | SECURITY_LOCAL_USERID_CHANGE);
}

static void
restore_user(const OwnerScope *scope)
{
	SetUserIdAndSecContext(scope->saved_user, scope->saved_context);
}

/* One-row, one-column query as text (kept in the step's caller context). */
static char *
query_text(TxnScope *tx, const char *sql, int nargs, Oid *types, Datum *values)
{
	char	   *out;

	if (SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "dbsync: query failed: %s", sql);
	out = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return out ? MemoryContextStrdup(tx->work_cxt, out) : NULL;
}

/* Rounds of the subscription's apply until nothing is left or its time slice ends. */
void
run_map_apply(TxnScope *tx, const DbsyncJob *job)
{
	TimestampTz start = GetCurrentTimestamp();
	int			rounds = 0;
	bool		more = true;
	char	   *round = NULL;

	while (more)
	{
		OwnerScope scope;

		CHECK_FOR_INTERRUPTS();
		txn_begin(tx);
		become_owner(job, &scope);
		round = query_text(tx, "SELECT r::text, (r->>'more')::boolean FROM dbsync.map_apply_round($1, $2) r", 2,
						   (Oid[]) {INT4OID, INT4OID},
						   (Datum[]) {Int32GetDatum(job->subscription_id), Int32GetDatum(dbsync_map_batch_size)});
		more = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &(bool) {false}));
		restore_user(&scope);
		rounds++;
		if (!more || TimestampDifferenceExceeds(start, GetCurrentTimestamp(), MAP_APPLY_SLICE_MS))
		{
			char	   *result = psprintf("{\"rounds\": %d, \"last_round\": %s}", rounds, round);

			/* Done; what is left goes to a new pending job, behind the others. */
			jobs_finish_ok(job, 0, result);
			if (more && SPI_execute_with_args("SELECT dbsync.map_schedule($1)", 1, (Oid[]) {INT4OID},
											  (Datum[]) {Int32GetDatum(job->subscription_id)}, NULL, false, 0)
				!= SPI_OK_SELECT)
				elog(ERROR, "dbsync: could not schedule the rest of the apply");
			more = false;
		}
		txn_commit(tx);
	}
}

/* Every open checkpoint of the subscription, tried again. */
void
run_checkpoint_retry(TxnScope *tx, const DbsyncJob *job)
{
	OwnerScope	scope;
	char	   *result;

	txn_begin(tx);
	become_owner(job, &scope);
	result = query_text(tx, "SELECT dbsync.checkpoint_retry_all($1)::text", 1, (Oid[]) {INT4OID},
						(Datum[]) {Int32GetDatum(job->subscription_id)});
	restore_user(&scope);
	jobs_finish_ok(job, 0, psprintf("{\"outcomes\": %s}", result));
	txn_commit(tx);
}

/* A SQL function f(jsonb) called with the job's arguments, as the job's owner. */
void
run_call(TxnScope *tx, const DbsyncJob *job)
{
	OwnerScope	scope;
	char	   *fn;
	char	   *returned;
	char	   *result;

	txn_begin(tx);
	fn = query_text(tx, "SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname) FROM pg_proc p "
					"JOIN pg_namespace n ON n.oid = p.pronamespace "
					"WHERE p.oid = to_regprocedure($1::jsonb->>'function')", 1, (Oid[]) {TEXTOID},
					(Datum[]) {CStringGetTextDatum(job->args)});
	if (fn == NULL)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION),
						errmsg("the function of call job " INT64_FORMAT " does not exist", job->id)));
	become_owner(job, &scope);
	returned = query_text(tx, psprintf("SELECT to_jsonb(%s($1::jsonb))::text", fn), 1, (Oid[]) {TEXTOID},
						  (Datum[]) {CStringGetTextDatum(job->args)});
	restore_user(&scope);
	result = query_text(tx, "SELECT jsonb_build_object('returned', $1::jsonb)::text", 1, (Oid[]) {TEXTOID},
						(Datum[]) {returned ? CStringGetTextDatum(returned) : CStringGetTextDatum("null")});
	jobs_finish_ok(job, 0, result);
	txn_commit(tx);
}

void
run_noop(TxnScope *tx, const DbsyncJob *job)
{
	txn_begin(tx);
	jobs_finish_ok(job, 0, "{}");
	txn_commit(tx);
}

/* Finished one-off jobs older than dbsync.job_history go. */
void
run_job_purge(TxnScope *tx, const DbsyncJob *job)
{
	char	   *removed;

	txn_begin(tx);
	removed = query_text(tx, "SELECT dbsync.job_purge(make_interval(secs => $1))", 1, (Oid[]) {INT4OID},
						 (Datum[]) {Int32GetDatum(dbsync_job_history_s)});
	jobs_finish_ok(job, 0, psprintf("{\"removed\": %s}", removed));
	txn_commit(tx);
}
