/*
 * pg_target.c: libpq to a target database (see pg_target.h).
 *
 * The connection is non-blocking and every wait goes through the backend's
 * latch, so a cancel, a terminate or postmaster death ends it at once; a wait
 * longer than the server's timeout is an error. On any error the connection
 * is closed before the ERROR is raised: the target rolls back whatever the
 * open transaction did, which is what makes a failed sync leave nothing.
 */
#include "postgres.h"

#include <libpq-fe.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "pg_target.h"

struct PgTarget
{
	PGconn	   *conn;
	char	   *server;			/* the foreign server's name, for messages */
	int			timeout_ms;		/* longest wait for the target */
	bool		pending;		/* pg_target_send's statements not collected yet */
};

/* Session settings that make the values dbsync sends read the same everywhere. */
#define TARGET_SESSION_OPTIONS \
	"-c search_path=pg_catalog -c datestyle=ISO,YMD -c intervalstyle=postgres " \
	"-c timezone=UTC -c extra_float_digits=3 -c client_encoding=UTF8"

static void pg_attribute_noreturn()
target_fail(PgTarget *t, int sqlstate, const char *what)
{
	char	   *msg = pstrdup(t->conn ? PQerrorMessage(t->conn) : "");
	size_t		len = strlen(msg);

	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		msg[--len] = '\0';
	/* libpq's messages span lines: keep one line */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	pg_target_close(t);
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("target \"%s\": %s%s%s", t->server, what, len > 0 ? ": " : "", msg)));
}

/* Waits until the socket is ready for what libpq wants, or the deadline passes. */
static void
target_wait(PgTarget *t, int events, TimestampTz deadline, const char *doing)
{
	long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
	int			rc;

	if (remaining <= 0)
	{
		pg_target_close(t);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("target \"%s\" did not answer within %d ms while %s", t->server, t->timeout_ms, doing),
				 errhint("The server's timeout option sets how long dbsync waits for the target.")));
	}
	rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | events,
						   PQsocket(t->conn), remaining, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

static TimestampTz
deadline_from_now(int ms)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
}

PgTarget *
pg_target_connect(const DbsyncServer *srv, bool superuser)
{
	PgTarget   *t = palloc0(sizeof(PgTarget));
	const char *keys[12];
	const char *values[12];
	int			n = 0;
	const char *opt;
	TimestampTz deadline;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;

	t->server = pstrdup(srv->name);
	t->timeout_ms = srv->timeout_ms;

	/* like postgres_fdw: a role that is not superuser must bring a password, and the target must ask for it */
	if (!superuser && (srv->password == NULL || srv->password[0] == '\0'))
		ereport(ERROR,
				(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
				 errmsg("target \"%s\": a password is required", srv->name),
				 errdetail("Roles that are not superusers must give a password in their user mapping.")));

#define ADD_PARAM(k, v) do { if ((v) != NULL) { keys[n] = (k); values[n] = (v); n++; } } while (0)
	ADD_PARAM("host", dbsync_option_value(srv->server_options, "host"));
	ADD_PARAM("port", dbsync_option_value(srv->server_options, "port"));
	ADD_PARAM("dbname", dbsync_option_value(srv->server_options, "dbname"));
	opt = dbsync_option_value(srv->server_options, "sslmode");
	ADD_PARAM("sslmode", opt ? opt : "verify-full");
	ADD_PARAM("sslrootcert", dbsync_option_value(srv->server_options, "sslrootcert"));
	ADD_PARAM("user", srv->user);
	ADD_PARAM("password", srv->password);
	ADD_PARAM("application_name", "dbsync replication");
	ADD_PARAM("options", TARGET_SESSION_OPTIONS);
	keys[n] = NULL;
	values[n] = NULL;
#undef ADD_PARAM

	t->conn = PQconnectStartParams(keys, values, false);
	if (t->conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("target \"%s\": out of memory while connecting", srv->name)));
	if (PQstatus(t->conn) == CONNECTION_BAD)
		target_fail(t, ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION, "could not connect");

	deadline = deadline_from_now(srv->connect_timeout_ms);
	while (st != PGRES_POLLING_OK)
	{
		if (st == PGRES_POLLING_FAILED)
			target_fail(t, ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION, "could not connect");
		if (TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline) <= 0)
		{
			pg_target_close(t);
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("target \"%s\": could not connect within %d ms", srv->name, srv->connect_timeout_ms)));
		}
		target_wait(t, st == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE, deadline,
					"connecting");
		st = PQconnectPoll(t->conn);
	}

	if (!superuser && !PQconnectionUsedPassword(t->conn))
	{
		pg_target_close(t);
		ereport(ERROR,
				(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
				 errmsg("target \"%s\": a password is required", srv->name),
				 errdetail("The target did not ask for the password; roles that are not superusers may only "
						   "connect with password authentication.")));
	}
	if (PQsetnonblocking(t->conn, 1) != 0)
		target_fail(t, ERRCODE_CONNECTION_FAILURE, "could not set the connection non-blocking");
	return t;
}

/* Sends what libpq has queued. */
static void
target_flush(PgTarget *t, TimestampTz deadline)
{
	for (;;)
	{
		int			rc = PQflush(t->conn);

		if (rc == 0)
			return;
		if (rc < 0)
			target_fail(t, ERRCODE_CONNECTION_FAILURE, "connection lost");
		target_wait(t, WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE, deadline, "sending");
		if (PQconsumeInput(t->conn) == 0)
			target_fail(t, ERRCODE_CONNECTION_FAILURE, "connection lost");
	}
}

/* The next result, waiting as needed; NULL when the command is complete. */
static PGresult *
target_result(PgTarget *t, TimestampTz deadline)
{
	while (PQisBusy(t->conn))
	{
		target_wait(t, WL_SOCKET_READABLE, deadline, "waiting for a result");
		if (PQconsumeInput(t->conn) == 0)
			target_fail(t, ERRCODE_CONNECTION_FAILURE, "connection lost");
	}
	return PQgetResult(t->conn);
}

/* Raises a statement's error as the target reported it (SQLSTATE, message, detail, hint). */
static void pg_attribute_noreturn()
target_statement_error(PgTarget *t, PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	char	   *primary = pstrdup(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
								  PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : PQerrorMessage(t->conn));
	const char *d = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	const char *h = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	char	   *detail = d ? pstrdup(d) : NULL;
	char	   *hint = h ? pstrdup(h) : NULL;
	int			code = ERRCODE_FDW_ERROR;

	if (state != NULL && strlen(state) == 5)
		code = MAKE_SQLSTATE(state[0], state[1], state[2], state[3], state[4]);
	PQclear(res);
	pg_target_close(t);
	ereport(ERROR,
			(errcode(code),
			 errmsg("target \"%s\": %s", t->server, primary),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
}

/* Reads every result of the command; the first error is raised after the command ends. */
static uint64
target_collect(PgTarget *t, TimestampTz deadline, char **value)
{
	PGresult   *res;
	PGresult   *error = NULL;
	uint64		touched = 0;

	if (value != NULL)
		*value = NULL;
	while ((res = target_result(t, deadline)) != NULL)
	{
		ExecStatusType st = PQresultStatus(res);

		if (st == PGRES_FATAL_ERROR && error == NULL)
		{
			error = res;
			continue;
		}
		if (st == PGRES_TUPLES_OK && value != NULL && *value == NULL && PQntuples(res) > 0 &&
			PQnfields(res) > 0 && !PQgetisnull(res, 0, 0))
			*value = pstrdup(PQgetvalue(res, 0, 0));
		if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		{
			const char *n = PQcmdTuples(res);

			if (n != NULL && n[0] != '\0')
				touched += strtoull(n, NULL, 10);
		}
		PQclear(res);
	}
	if (error != NULL)
		target_statement_error(t, error);
	if (PQstatus(t->conn) == CONNECTION_BAD)
		target_fail(t, ERRCODE_CONNECTION_FAILURE, "connection lost");
	return touched;
}

/* A statement sent while another's results are outstanding would mix up their results. */
static void
target_idle(PgTarget *t)
{
	if (t->pending)
		elog(ERROR, "dbsync: target \"%s\": a statement was sent before the previous one's results were read",
			 t->server);
}

uint64
pg_target_exec(PgTarget *t, const char *sql, char **value)
{
	TimestampTz deadline = deadline_from_now(t->timeout_ms);

	target_idle(t);
	if (!PQsendQuery(t->conn, sql))
		target_fail(t, ERRCODE_CONNECTION_FAILURE, "could not send a statement");
	target_flush(t, deadline);
	return target_collect(t, deadline, value);
}

char *
pg_target_exec_params(PgTarget *t, const char *sql, int nparams, const char *const *params)
{
	TimestampTz deadline = deadline_from_now(t->timeout_ms);
	char	   *value;

	target_idle(t);
	if (!PQsendQueryParams(t->conn, sql, nparams, NULL, params, NULL, NULL, 0))
		target_fail(t, ERRCODE_CONNECTION_FAILURE, "could not send a statement");
	target_flush(t, deadline);
	(void) target_collect(t, deadline, &value);
	return value;
}

void
pg_target_send(PgTarget *t, const char *sql)
{
	target_idle(t);
	if (!PQsendQuery(t->conn, sql))
		target_fail(t, ERRCODE_CONNECTION_FAILURE, "could not send a statement");
	target_flush(t, deadline_from_now(t->timeout_ms));
	t->pending = true;
}

/*
 * The timeout counts from here, not from the send: it bounds how long the
 * caller stalls on the target, and the target worked while the caller did.
 */
uint64
pg_target_finish(PgTarget *t)
{
	if (!t->pending)
		return 0;
	t->pending = false;
	return target_collect(t, deadline_from_now(t->timeout_ms), NULL);
}

void
pg_target_copy(PgTarget *t, const char *copy_sql, const StringInfo data)
{
	TimestampTz deadline = deadline_from_now(t->timeout_ms);
	PGresult   *res;
	int			sent = 0;

	target_idle(t);
	if (!PQsendQuery(t->conn, copy_sql))
		target_fail(t, ERRCODE_CONNECTION_FAILURE, "could not send a statement");
	target_flush(t, deadline);
	res = target_result(t, deadline);
	if (res == NULL)
		target_fail(t, ERRCODE_CONNECTION_FAILURE, "connection lost");
	if (PQresultStatus(res) != PGRES_COPY_IN)
	{
		if (PQresultStatus(res) == PGRES_FATAL_ERROR)
		{
			/* drain what follows the error, then raise it */
			PGresult   *more;

			while ((more = target_result(t, deadline)) != NULL)
				PQclear(more);
			target_statement_error(t, res);
		}
		PQclear(res);
		target_fail(t, ERRCODE_PROTOCOL_VIOLATION, "COPY did not start");
	}
	PQclear(res);

	while (sent < data->len)
	{
		int			chunk = Min(data->len - sent, 1024 * 1024);
		int			rc = PQputCopyData(t->conn, data->data + sent, chunk);

		if (rc < 0)
			target_fail(t, ERRCODE_CONNECTION_FAILURE, "connection lost during COPY");
		if (rc == 0)
		{
			/* libpq's buffer is full: let the target read */
			target_wait(t, WL_SOCKET_WRITEABLE, deadline, "sending COPY data");
			if (PQflush(t->conn) < 0)
				target_fail(t, ERRCODE_CONNECTION_FAILURE, "connection lost during COPY");
			continue;
		}
		sent += chunk;
		deadline = deadline_from_now(t->timeout_ms);	/* the timeout is for a stall, not the whole COPY */
	}
	for (;;)
	{
		int			rc = PQputCopyEnd(t->conn, NULL);

		if (rc < 0)
			target_fail(t, ERRCODE_CONNECTION_FAILURE, "connection lost during COPY");
		if (rc == 1)
			break;
		target_wait(t, WL_SOCKET_WRITEABLE, deadline, "ending COPY");
	}
	target_flush(t, deadline);
	(void) target_collect(t, deadline, NULL);
}

void
pg_target_close(PgTarget *t)
{
	if (t != NULL && t->conn != NULL)
	{
		PQfinish(t->conn);
		t->conn = NULL;
	}
}
