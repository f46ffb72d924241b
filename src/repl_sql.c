/*
 * repl_sql.c: the C functions behind the replication SQL API.
 */
#include "postgres.h"

#include "fmgr.h"

#include "bg_txn.h"
#include "ilog.h"
#include "repl.h"
#include "sql_args.h"

PG_FUNCTION_INFO_V1(dbsync_replication_run);
PG_FUNCTION_INFO_V1(dbsync_ilog_horizon);

/* dbsync.replication_run(config_key): one sync of every target, in the caller's transaction. */
Datum
dbsync_replication_run(PG_FUNCTION_ARGS)
{
	TxnScope	tx;
	int			failures;
	char	   *first_error;
	char	   *json;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("dbsync: a replication config key must not be null")));
	txn_scope_init(&tx, false);
	json = repl_run_config(&tx, PG_GETARG_INT64(0), &failures, &first_error);
	PG_RETURN_DATUM(dbsync_jsonb_datum(json));
}

/* dbsync.ilog_horizon(): every version below it is committed or rolled back. */
Datum
dbsync_ilog_horizon(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(ilog_horizon_compute(ilog_relation("ilog_version_seq")));
}
