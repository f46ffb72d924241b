/*
 * pg_target.h: a libpq connection to a target PostgreSQL database, made from
 * a dbsync foreign server of api 'postgres' and the user mapping of the role
 * that runs the work (the way postgres_fdw connects).
 *
 * Every wait on the target is cancellable (a cancel or a terminate of this
 * backend ends it at once) and bounded by the server's timeout option. An
 * error is an ERROR that names the server, never its credentials; the
 * connection is closed first, which makes the target roll back what was
 * not committed.
 */
#ifndef DBSYNC_PG_TARGET_H
#define DBSYNC_PG_TARGET_H

#include "lib/stringinfo.h"

#include "server_options.h"

typedef struct PgTarget PgTarget;

/* Connects (search_path pinned, ISO dates, UTC) as srv's user mapping says; superuser: the role's status. */
extern PgTarget *pg_target_connect(const DbsyncServer *srv, bool superuser);

/* Runs one or more statements; returns the rows they touched, or the first row's first value in *value. */
extern uint64 pg_target_exec(PgTarget *t, const char *sql, char **value);

/* Runs one statement with text parameters; returns its first row's first value (NULL when none). */
extern char *pg_target_exec_params(PgTarget *t, const char *sql, int nparams, const char *const *params);

/*
 * Sends one or more statements without waiting for them: the caller works
 * meanwhile, and pg_target_finish collects the results. Until then no other
 * statement may be sent on the connection.
 */
extern void pg_target_send(PgTarget *t, const char *sql);

/* Waits for what pg_target_send sent: returns the rows it touched (0 when nothing is pending). */
extern uint64 pg_target_finish(PgTarget *t);

/* COPY ... FROM STDIN with the given text-format data. */
extern void pg_target_copy(PgTarget *t, const char *copy_sql, const StringInfo data);

/* Closes the connection (safe on NULL and twice). */
extern void pg_target_close(PgTarget *t);

#endif
