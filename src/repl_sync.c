/*
 * repl_sync.c: one sync of a replication config, target by target, and its
 * results in the shape of the DevOps API (see repl.h for the protocol).
 *
 * A target's failure (unreachable, timed out, a missing table or column, a
 * rejected row) is its result with success=false; the other targets still
 * sync. A cancel or a terminate ends the whole sync.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ilog.h"
#include "repl.h"

/* Entries read from the log per step. */
#define REPL_READ_LIMIT 10000

/* The target's own record of what it applied, created by the first sync. */
#define APPLIED_TABLE_SQL \
	"CREATE TABLE IF NOT EXISTS dbsync_replica.applied (" \
	" stream uuid PRIMARY KEY," \
	" source text NOT NULL," \
	" config text NOT NULL," \
	" version bigint NOT NULL," \
	" applied_at timestamptz NOT NULL DEFAULT pg_catalog.now())"

typedef struct TargetResult
{
	char	   *server;
	char	   *config_name;
	int64		start_version;
	int64		end_version;
	bool		success;
	char	   *error;
	ReplStats	stats;
	long		ms;
} TargetResult;

static void
count_xid(ReplSync *rs, int64 xid)
{
	bool		found;

	/* a transaction's entries mostly follow each other */
	if (xid == rs->last_xid)
		return;
	rs->last_xid = xid;
	(void) hash_search(rs->xids, &xid, HASH_ENTER, &found);
	if (!found)
		rs->stats.transactions++;
}

/* Opens the target's transaction and locks the stream's row: returns the version it applied. */
static int64
target_begin(ReplSync *rs, const char *source)
{
	char	   *value;
	const char *params[4];

	(void) pg_target_exec(rs->conn, "BEGIN ISOLATION LEVEL READ COMMITTED", NULL);
	(void) pg_target_exec(rs->conn, "SELECT pg_catalog.to_regnamespace('dbsync_replica') IS NOT NULL", &value);
	if (strcmp(value, "t") != 0)
		(void) pg_target_exec(rs->conn, "CREATE SCHEMA IF NOT EXISTS dbsync_replica", NULL);
	(void) pg_target_exec(rs->conn, "SELECT pg_catalog.to_regclass('dbsync_replica.applied') IS NOT NULL", &value);
	if (strcmp(value, "t") != 0)
		(void) pg_target_exec(rs->conn, APPLIED_TABLE_SQL, NULL);
	params[0] = rs->stream;
	params[1] = source;
	params[2] = rs->config_name;
	params[3] = psprintf(INT64_FORMAT, rs->start_version);
	(void) pg_target_exec_params(rs->conn,
								 "INSERT INTO dbsync_replica.applied (stream, source, config, version) "
								 "VALUES ($1, $2, $3, $4) ON CONFLICT (stream) DO NOTHING", 4, params);
	/* the lock makes a second sync of this stream wait, then see what this one applied */
	value = pg_target_exec_params(rs->conn,
								  "SELECT version FROM dbsync_replica.applied WHERE stream = $1 FOR UPDATE",
								  1, params);
	if (value == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("target \"%s\": dbsync_replica.applied has no row for this config", rs->server)));
	return pg_strtoint64(value);
}

/* Applies the entries after the target's version, below the horizon; commits with the new version. */
static void
sync_target(TxnScope *tx, ReplSync *rs, const char *source)
{
	DbsyncServer *srv;
	bool		superuser;
	int64		horizon;
	int64		end;
	int64		after;
	const char *params[3];

	repl_source_load(tx, rs, &srv, &superuser);
	rs->conn = pg_target_connect(srv, superuser);
	rs->applied_before = rs->applied_after = after = target_begin(rs, source);
	horizon = repl_source_horizon(tx);
	end = repl_source_cut(tx, rs, after, horizon);

	for (;;)
	{
		List	   *entries;
		ListCell   *lc;

		MemoryContextReset(rs->read_cxt);
		entries = repl_source_read(tx, rs, after, end + 1, REPL_READ_LIMIT);
		foreach(lc, entries)
		{
			ReplEntry  *e = lfirst(lc);

			count_xid(rs, e->xid);
			if (e->op == ILOG_TRUNCATE)
			{
				repl_batch_apply(rs);
				repl_strict_flush(rs);
				repl_apply_truncate(rs, e);
			}
			else if (rs->strict)
				repl_strict_add(rs, e);
			else
			{
				if (repl_batch_full(rs))
					repl_batch_apply(rs);
				if (!repl_batch_add(rs, e))
				{
					repl_batch_apply(rs);
					(void) repl_batch_add(rs, e);
				}
			}
			after = e->version;
		}
		if (list_length(entries) < REPL_READ_LIMIT)
			break;
	}
	repl_batch_apply(rs);
	repl_strict_flush(rs);
	repl_batch_finish(rs);

	rs->applied_after = end;
	params[0] = rs->stream;
	params[1] = psprintf(INT64_FORMAT, rs->applied_after);
	(void) pg_target_exec_params(rs->conn,
								 "UPDATE dbsync_replica.applied SET version = $2, applied_at = pg_catalog.now() "
								 "WHERE stream = $1", 2, params);
	(void) pg_target_exec(rs->conn, "COMMIT", NULL);
	pg_target_close(rs->conn);
	rs->conn = NULL;
}

static void
repl_sync_init(ReplSync *rs, TxnScope *tx, int64 target_key, bool strict)
{
	HASHCTL		ctl;

	memset(rs, 0, sizeof(ReplSync));
	rs->target_key = target_key;
	rs->strict = strict;
	rs->sync_cxt = AllocSetContextCreate(tx->work_cxt, "dbsync replication", ALLOCSET_DEFAULT_SIZES);
	rs->read_cxt = AllocSetContextCreate(rs->sync_cxt, "dbsync replication read", ALLOCSET_DEFAULT_SIZES);
	rs->batch_cxt = AllocSetContextCreate(rs->sync_cxt, "dbsync replication batch", ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64);
	ctl.hcxt = rs->sync_cxt;
	rs->xids = hash_create("dbsync replication xids", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	initStringInfo(&rs->strict_sql);
}

/* Whether an error must end the whole sync rather than one target's part of it. */
static bool
ends_everything(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_QUERY_CANCELED || sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
		sqlerrcode == ERRCODE_OUT_OF_MEMORY;
}

/* One attempt at one target; false with *error (and *sqlstate) when it failed. */
static bool
attempt(TxnScope *tx, int64 target_key, bool strict, const char *source, TargetResult *res,
		char **error, int *sqlstate)
{
	ReplSync   *volatile rs = palloc(sizeof(ReplSync));
	TxnPart		part;
	bool		ok = false;

	repl_sync_init(rs, tx, target_key, strict);
	txn_part_begin(tx, &part);
	PG_TRY();
	{
		sync_target(tx, rs, source);
		txn_part_end(tx, &part);
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(tx->work_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		pg_target_close(rs->conn);
		txn_part_abort(tx, &part);
		if (ends_everything(edata->sqlerrcode))
			ReThrowError(edata);
		*error = edata->message;
		*sqlstate = edata->sqlerrcode;
	}
	PG_END_TRY();

	if (rs->server != NULL)
		res->server = rs->server;
	if (rs->config_name != NULL)
		res->config_name = rs->config_name;
	if (rs->server != NULL)
	{
		res->start_version = rs->applied_before;
		res->end_version = ok ? rs->applied_after : rs->applied_before;
	}
	if (ok)
		res->stats = rs->stats;
	return ok;
}

static void
json_key(StringInfo buf, const char *key, bool first)
{
	if (!first)
		appendStringInfoString(buf, ", ");
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
}

static void
result_json(StringInfo buf, const TargetResult *r, const char *source)
{
	appendStringInfoChar(buf, '{');
	json_key(buf, "targetDatabase", true);
	escape_json(buf, r->server);
	json_key(buf, "executionTime", false);
	appendStringInfo(buf, "%ld", r->ms);
	json_key(buf, "configName", false);
	escape_json(buf, r->config_name);
	json_key(buf, "endVersion", false);
	appendStringInfo(buf, INT64_FORMAT, r->end_version);
	json_key(buf, "updateVersions", false);
	if (r->success && r->end_version > r->start_version)
		appendStringInfo(buf, "[" INT64_FORMAT "]", r->end_version);
	else
		appendStringInfoString(buf, "[]");
	json_key(buf, "success", false);
	appendStringInfoString(buf, r->success ? "true" : "false");
	json_key(buf, "startVersion", false);
	appendStringInfo(buf, INT64_FORMAT, r->start_version);
	json_key(buf, "sourceDatabase", false);
	escape_json(buf, source);
	json_key(buf, "errorMessage", false);
	escape_json(buf, r->error ? r->error : "");
	json_key(buf, "stats", false);
	appendStringInfo(buf, "{\"numDeletes\": " INT64_FORMAT ", \"numUpdates\": " INT64_FORMAT
					 ", \"numTransactionLogs\": " INT64_FORMAT ", \"numTargetEntries\": " INT64_FORMAT
					 ", \"numInserts\": " INT64_FORMAT "}}",
					 r->stats.deletes, r->stats.updates, r->stats.transactions, r->stats.target_entries,
					 r->stats.inserts);
}

/* Keeps the outcome on the source: delivered version, last result and error. */
static void
record_result(TxnScope *tx, int64 target_key, const TargetResult *r, const char *json)
{
	static SPIPlanPtr plan;
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', r->error ? ' ' : 'n', ' '};

	txn_begin(tx);
	values[0] = Int64GetDatum(target_key);
	values[1] = Int64GetDatum(r->end_version);
	values[2] = BoolGetDatum(r->success);
	values[3] = r->error ? CStringGetTextDatum(r->error) : (Datum) 0;
	values[4] = CStringGetTextDatum(json);
	/* on success, the target's own record: lower than before if the target was restored from a backup */
	if (txn_execute(txn_plan(&plan,
							 "UPDATE dbsync.replication_target SET "
							 "delivered_version = CASE WHEN $3 THEN $2 ELSE delivered_version END, "
							 "last_sync_at = now(), last_success = $3, last_error = $4, last_result = $5::jsonb "
							 "WHERE key = $1",
							 5, (Oid[]) {INT8OID, INT8OID, BOOLOID, TEXTOID, TEXTOID}),
					values, nulls, false) != SPI_OK_UPDATE)
		elog(ERROR, "dbsync: could not record a replication result");
	txn_commit(tx);
}

char *
repl_run_config(TxnScope *tx, int64 config_key, int *failures, char **first_error)
{
	static SPIPlanPtr plan;
	Datum		key = Int64GetDatum(config_key);
	int64	   *targets;
	char	  **servers;
	int64	   *res_start;		/* the delivered version known here, for a target that fails early */
	int			ntargets;
	char	   *config_name;
	char	   *source;
	StringInfoData out;

	txn_begin(tx);
	if (txn_execute(txn_plan(&plan,
							 "SELECT c.name, t.key, t.server, t.delivered_version FROM dbsync.replication_config c "
							 "LEFT JOIN dbsync.replication_target t ON t.config_key = c.key "
							 "WHERE c.key = $1 ORDER BY t.key", 1, (Oid[]) {INT8OID}),
					&key, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "dbsync: could not read replication config " INT64_FORMAT, config_key);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("dbsync: replication config " INT64_FORMAT " does not exist", config_key)));
	config_name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	targets = palloc(sizeof(int64) * SPI_processed);
	res_start = palloc(sizeof(int64) * SPI_processed);
	servers = palloc(sizeof(char *) * SPI_processed);
	ntargets = 0;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		char	   *k = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);

		if (k == NULL)
			continue;
		servers[ntargets] = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 3);
		res_start[ntargets] = pg_strtoint64(SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 4));
		targets[ntargets++] = pg_strtoint64(k);
	}
	source = get_database_name(MyDatabaseId);
	txn_commit(tx);

	*failures = 0;
	*first_error = NULL;
	initStringInfo(&out);
	appendStringInfoChar(&out, '[');
	for (int i = 0; i < ntargets; i++)
	{
		TargetResult res = {0};
		TimestampTz start = GetCurrentTimestamp();
		StringInfoData json;
		char	   *error = NULL;
		int			sqlstate = 0;

		res.server = servers[i];
		res.config_name = config_name;
		res.start_version = res.end_version = res_start[i];
		res.success = attempt(tx, targets[i], false, source, &res, &error, &sqlstate);
		if (!res.success && ERRCODE_TO_CATEGORY(sqlstate) == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION)
		{
			/* folded changes broke a constraint: apply them in the order they were made */
			ereport(LOG,
					(errmsg("dbsync: replication config \"%s\" to \"%s\" runs again in strict order: %s",
							config_name, res.server, error)));
			error = NULL;
			res.success = attempt(tx, targets[i], true, source, &res, &error, &sqlstate);
		}
		res.error = error;
		res.ms = (long) (TimestampDifferenceMilliseconds(start, GetCurrentTimestamp()));
		initStringInfo(&json);
		result_json(&json, &res, source);
		record_result(tx, targets[i], &res, json.data);
		if (!res.success)
		{
			(*failures)++;
			if (*first_error == NULL)
				*first_error = error;
		}
		appendStringInfo(&out, "%s%s", i > 0 ? ", " : "", json.data);
	}
	appendStringInfoChar(&out, ']');
	return out.data;
}
