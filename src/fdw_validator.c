/*
 * fdw_validator.c: the validator of the dbsync foreign-data wrapper.
 *
 * Remote systems are foreign servers (api, url and connection settings) and
 * credentials are user mappings, which PostgreSQL hides from other roles. The
 * validator knows each api's options, refuses unknown or missing ones, and
 * checks values (only http and https URLs, without credentials in them).
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/reloptions.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "server_options.h"

typedef enum OptionCheck
{
	CHECK_TEXT,
	CHECK_API,
	CHECK_URL,
	CHECK_BOOL,
	CHECK_DURATION,
	CHECK_SIZE,
	CHECK_COMPANY,
	CHECK_PORT,
	CHECK_EMAIL,
	CHECK_ABSPATH,
	CHECK_SSLMODE
} OptionCheck;

typedef struct ApiOption
{
	const char *apis;			/* space-separated apis the option is for */
	const char *name;
	bool		required;
	OptionCheck check;
} ApiOption;

#define HTTP_APIS "flexi odoo_upgrade octoplant"
#define ALL_APIS "flexi odoo_upgrade octoplant postgres"

static const ApiOption server_options[] = {
	{ALL_APIS, "api", true, CHECK_API},
	{HTTP_APIS, "url", true, CHECK_URL},
	{HTTP_APIS, "verify_tls", false, CHECK_BOOL},
	{HTTP_APIS, "ca_file", false, CHECK_ABSPATH},
	{ALL_APIS, "connect_timeout", false, CHECK_DURATION},
	{ALL_APIS, "timeout", false, CHECK_DURATION},
	{HTTP_APIS, "max_response_size", false, CHECK_SIZE},
	{"flexi", "company", true, CHECK_COMPANY},
	{"octoplant", "client_id", false, CHECK_TEXT},
	{"octoplant", "client_secret", false, CHECK_TEXT},
	{"postgres", "host", false, CHECK_TEXT},
	{"postgres", "port", false, CHECK_PORT},
	{"postgres", "dbname", true, CHECK_TEXT},
	{"postgres", "sslmode", false, CHECK_SSLMODE},
	{"postgres", "sslrootcert", false, CHECK_ABSPATH},
};

/* A user mapping does not know its server's api: it takes any api's credentials. */
static const ApiOption mapping_options[] = {
	{ALL_APIS, "user", false, CHECK_TEXT},
	{ALL_APIS, "password", false, CHECK_TEXT},
	{ALL_APIS, "contract", false, CHECK_TEXT},
	{ALL_APIS, "email", false, CHECK_EMAIL},
	{ALL_APIS, "client_id", false, CHECK_TEXT}, /* octoplant: a site's own OAuth2 client, kept out of */
	{ALL_APIS, "client_secret", false, CHECK_TEXT},	/* pg_foreign_server, which every role can read */
};

static bool
api_has_option(const ApiOption *opt, const char *api)
{
	const char *p = opt->apis;
	size_t		len = strlen(api);

	while ((p = strstr(p, api)) != NULL)
	{
		bool		starts = (p == opt->apis || p[-1] == ' ');
		bool		ends = (p[len] == '\0' || p[len] == ' ');

		if (starts && ends)
			return true;
		p += len;
	}
	return false;
}

static char *
option_names(const ApiOption *table, int n, const char *api)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
	{
		if (api != NULL && !api_has_option(&table[i], api))
			continue;
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", table[i].name);
	}
	return buf.data;
}

static void
check_url(const char *value)
{
	CURLU	   *u = curl_url();
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *user = NULL;
	char	   *fragment = NULL;
	const char *problem = NULL;

	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));

	rc = curl_url_set(u, CURLUPART_URL, value, CURLU_NON_SUPPORT_SCHEME);
	if (rc != CURLUE_OK)
		problem = "it is not a valid URL";
	else
	{
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
		curl_url_get(u, CURLUPART_HOST, &host, 0);
		curl_url_get(u, CURLUPART_USER, &user, 0);
		curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0);
		if (scheme == NULL || (pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0))
			problem = "only http and https URLs are allowed";
		else if (host == NULL || host[0] == '\0')
			problem = "the URL has no host";
		else if (user != NULL)
			problem = "credentials do not belong in the URL";
		else if (fragment != NULL)
			problem = "the URL has a fragment";
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(fragment);
	curl_url_cleanup(u);

	/* The value is not echoed: a URL given with credentials would leak them. */
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"url\": %s", problem),
				 errhint("Give the server's base address, such as 'https://erp.example.com:5434'; put credentials in a user mapping.")));
}

static void
check_value(const char *name, const char *value, OptionCheck check)
{
	switch (check)
	{
		case CHECK_TEXT:
			if (value[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("option \"%s\" must not be empty", name)));
			break;
		case CHECK_API:
			if (strcmp(value, "flexi") != 0 && strcmp(value, "odoo_upgrade") != 0 &&
				strcmp(value, "octoplant") != 0 && strcmp(value, "postgres") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"api\": \"%s\"", value),
						 errhint("Valid values are: flexi, odoo_upgrade, octoplant, postgres.")));
			break;
		case CHECK_URL:
			check_url(value);
			break;
		case CHECK_BOOL:
			dbsync_parse_bool_option(name, value);
			break;
		case CHECK_DURATION:
			dbsync_parse_duration_option(name, value);
			break;
		case CHECK_SIZE:
			dbsync_parse_size_option(name, value);
			break;
		case CHECK_COMPANY:
			if (value[0] == '\0' || strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != strlen(value))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"company\": \"%s\"", value),
						 errhint("Give the company's database identifier as it appears in ABRA Flexi URLs (/c/<company>/...): letters, digits, '_', '.' and '-'.")));
			break;
		case CHECK_PORT:
			{
				int			port;
				const char *hint = NULL;

				if (!parse_int(value, &port, 0, &hint) || port < 1 || port > 65535)
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("invalid value for option \"port\": \"%s\"", value),
							 errhint("Give a TCP port from 1 to 65535.")));
				break;
			}
		case CHECK_EMAIL:
			{
				const char *at = strchr(value, '@');

				if (at == NULL || at == value || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
					strpbrk(value, " \t\r\n,;<>") != NULL)
					ereport(ERROR,
							(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
							 errmsg("invalid value for option \"email\": \"%s\"", value),
							 errhint("Give one e-mail address, such as 'dba@example.com'.")));
				break;
			}
		case CHECK_SSLMODE:
			if (strcmp(value, "disable") != 0 && strcmp(value, "allow") != 0 && strcmp(value, "prefer") != 0 &&
				strcmp(value, "require") != 0 && strcmp(value, "verify-ca") != 0 &&
				strcmp(value, "verify-full") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"sslmode\": \"%s\"", value),
						 errhint("Valid values are: disable, allow, prefer, require, verify-ca, verify-full (the default).")));
			break;
		case CHECK_ABSPATH:
			if (!is_absolute_path(value))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
						 errhint("Give an absolute path of a file the server can read.")));
			break;
	}
}

static void
validate_server(List *options)
{
	const char *api = dbsync_option_value(options, "api");
	int			n = lengthof(server_options);
	ListCell   *lc;

	if (api == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("a dbsync server needs the option \"api\""),
				 errhint("Valid values are: flexi, odoo_upgrade, octoplant, postgres.")));
	check_value("api", api, CHECK_API);

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const ApiOption *found = NULL;

		for (int i = 0; i < n; i++)
			if (strcmp(server_options[i].name, def->defname) == 0 &&
				api_has_option(&server_options[i], api))
				found = &server_options[i];
		if (found == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\" for an api '%s' server", def->defname, api),
					 errhint("Valid options are: %s.", option_names(server_options, n, api))));
		check_value(def->defname, defGetString(def), found->check);
	}

	for (int i = 0; i < n; i++)
		if (server_options[i].required && api_has_option(&server_options[i], api) &&
			dbsync_option_value(options, server_options[i].name) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
					 errmsg("an api '%s' server needs the option \"%s\"", api, server_options[i].name)));
}

static void
validate_user_mapping(List *options)
{
	int			n = lengthof(mapping_options);
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const ApiOption *found = NULL;

		for (int i = 0; i < n; i++)
			if (strcmp(mapping_options[i].name, def->defname) == 0)
				found = &mapping_options[i];
		if (found == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\" for a dbsync user mapping", def->defname),
					 errhint("Valid options are: %s.", option_names(mapping_options, n, NULL))));
		check_value(def->defname, defGetString(def), found->check);
	}
}

PG_FUNCTION_INFO_V1(dbsync_fdw_validator);

Datum
dbsync_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);

	if (catalog == ForeignServerRelationId)
		validate_server(options);
	else if (catalog == UserMappingRelationId)
		validate_user_mapping(options);
	else if (options != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\"", ((DefElem *) linitial(options))->defname),
				 errhint("The dbsync foreign-data wrapper takes options on servers and user mappings only.")));

	PG_RETURN_VOID();
}
