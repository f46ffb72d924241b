/*
 * server_options.c: reads a dbsync foreign server and the current user's user
 * mapping into a DbsyncServer, checking that the caller may use them.
 */
#include "postgres.h"

#include "access/reloptions.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "dbsync.h"
#include "server_options.h"

const char *
dbsync_option_value(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, name) == 0)
			return defGetString(def);
	}
	return NULL;
}

int
dbsync_parse_duration_option(const char *name, const char *value)
{
	int			ms;
	const char *hint = NULL;

	if (!parse_int(value, &ms, GUC_UNIT_MS, &hint) || ms <= 0 || ms > 24 * 3600 * 1000)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
				 errhint("Give a duration from 1ms to 24h, such as '500ms', '30s' or '2min'; a bare number means milliseconds.")));
	return ms;
}

int
dbsync_parse_size_option(const char *name, const char *value)
{
	int			bytes;
	const char *hint = NULL;

	if (!parse_int(value, &bytes, GUC_UNIT_BYTE, &hint) || bytes < 1024 || (Size) bytes > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
				 errhint("Give a size from 1kB to 1GB, such as '512kB' or '64MB'; a bare number means bytes.")));
	return bytes;
}

bool
dbsync_parse_bool_option(const char *name, const char *value)
{
	bool		result;

	if (!parse_bool(value, &result))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
				 errhint("Use true or false.")));
	return result;
}

/* Finds the user mapping of the current user on the server, else PUBLIC's. */
static bool
user_mapping_options(Oid serverid, List **options)
{
	Oid			roles[2] = {GetUserId(), InvalidOid};

	for (int i = 0; i < 2; i++)
	{
		HeapTuple	tp;
		Datum		datum;
		bool		isnull;

		tp = SearchSysCache2(USERMAPPINGUSERSERVER,
							 ObjectIdGetDatum(roles[i]),
							 ObjectIdGetDatum(serverid));
		if (!HeapTupleIsValid(tp))
			continue;
		datum = SysCacheGetAttr(USERMAPPINGUSERSERVER, tp,
								Anum_pg_user_mapping_umoptions, &isnull);
		*options = isnull ? NIL : untransformRelOptions(datum);
		ReleaseSysCache(tp);
		return true;
	}
	return false;
}

DbsyncServer *
dbsync_server_get(const char *name, const char *api)
{
	ForeignServer *fs;
	ForeignDataWrapper *fdw;
	DbsyncServer *srv;
	AclResult	aclresult;
	const char *value;
	List	   *mapping;

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("server name must not be null")));

	fs = GetForeignServerByName(name, true);
	if (fs == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("server \"%s\" does not exist", name),
				 errhint("Create it with CREATE SERVER %s FOREIGN DATA WRAPPER dbsync OPTIONS (api '%s', ...).",
						 quote_identifier(name), api)));

	fdw = GetForeignDataWrapper(fs->fdwid);
	if (strcmp(fdw->fdwname, "dbsync") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" is not a dbsync server", name),
				 errdetail("It uses foreign-data wrapper \"%s\".", fdw->fdwname)));

	aclresult = pg_foreign_server_aclcheck(fs->serverid, GetUserId(), ACL_USAGE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FOREIGN_SERVER, fs->servername);

	srv = palloc0(sizeof(DbsyncServer));
	srv->serverid = fs->serverid;
	srv->userid = GetUserId();
	srv->name = pstrdup(fs->servername);
	srv->server_options = fs->options;
	srv->api = pstrdup(dbsync_option_value(fs->options, "api"));

	if (strcmp(srv->api, api) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" is an api '%s' server, not api '%s'", name, srv->api, api)));

	if (!user_mapping_options(fs->serverid, &mapping))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no user mapping for role \"%s\" on server \"%s\"",
						GetUserNameFromId(GetUserId(), false), name),
				 errhint("Create one with CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (...).",
						 quote_identifier(name))));
	srv->mapping_options = mapping;
	srv->user = (char *) dbsync_option_value(mapping, "user");
	srv->password = (char *) dbsync_option_value(mapping, "password");

	value = dbsync_option_value(fs->options, "url");
	if (value != NULL)
	{
		size_t		len = strlen(value);

		srv->url = pstrdup(value);
		while (len > 0 && srv->url[len - 1] == '/')
			srv->url[--len] = '\0';
	}

	value = dbsync_option_value(fs->options, "verify_tls");
	srv->verify_tls = value ? dbsync_parse_bool_option("verify_tls", value) : true;
	value = dbsync_option_value(fs->options, "ca_file");
	srv->ca_file = value ? pstrdup(value) : NULL;
	value = dbsync_option_value(fs->options, "connect_timeout");
	srv->connect_timeout_ms = value ? dbsync_parse_duration_option("connect_timeout", value) : dbsync_connect_timeout_ms;
	value = dbsync_option_value(fs->options, "timeout");
	srv->timeout_ms = value ? dbsync_parse_duration_option("timeout", value) : dbsync_timeout_ms;
	value = dbsync_option_value(fs->options, "max_response_size");
	srv->max_response_size = value ? dbsync_parse_size_option("max_response_size", value) : dbsync_max_response_size;

	return srv;
}

DbsyncServer *
dbsync_server_get_as(Oid role, const char *name, const char *api)
{
	Oid			saved_user;
	int			saved_context;
	DbsyncServer *volatile srv = NULL;

	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(role, saved_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		srv = dbsync_server_get(name, api);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_user, saved_context);
	}
	PG_END_TRY();
	return srv;
}
