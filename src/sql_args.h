/*
 * sql_args.h: small conversions shared by the C functions called from SQL.
 */
#ifndef DBSYNC_SQL_ARGS_H
#define DBSYNC_SQL_ARGS_H

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

/* Argument n as a C string, NULL for SQL NULL. */
static inline char *
dbsync_text_arg(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/* A JSON text (from a remote reply) as a jsonb Datum. */
static inline Datum
dbsync_jsonb_datum(const char *json)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
}

#endif
