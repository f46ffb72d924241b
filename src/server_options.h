/*
 * server_options.h: what dbsync knows about a remote system, read from its
 * foreign server and the current user's user mapping.
 */
#ifndef DBSYNC_SERVER_OPTIONS_H
#define DBSYNC_SERVER_OPTIONS_H

#include "nodes/pg_list.h"

typedef struct DbsyncServer
{
	Oid			serverid;
	Oid			userid;			/* the role whose user mapping was read */
	char	   *name;
	char	   *api;			/* flexi, odoo_upgrade, octoplant, postgres */
	char	   *url;			/* base URL without a trailing slash; NULL for postgres */
	bool		verify_tls;
	char	   *ca_file;		/* NULL: the system's CA store */
	int			connect_timeout_ms;
	int			timeout_ms;
	int			max_response_size;
	char	   *user;			/* from the user mapping; may be NULL */
	char	   *password;		/* secret: never put it in a message */
	List	   *server_options; /* every option, as DefElems */
	List	   *mapping_options;
} DbsyncServer;

/* Looks up a dbsync server of the given api for the current user; ERROR if unusable. */
extern DbsyncServer *dbsync_server_get(const char *name, const char *api);

/* The same for another role (a job's owner, in the worker). */
extern DbsyncServer *dbsync_server_get_as(Oid role, const char *name, const char *api);

/* Value of an option in a DefElem list, or NULL. */
extern const char *dbsync_option_value(List *options, const char *name);

/* Shared by the validator and the lookup: parsing of option values (ERROR when invalid). */
extern int	dbsync_parse_duration_option(const char *name, const char *value);
extern int	dbsync_parse_size_option(const char *name, const char *value);
extern bool dbsync_parse_bool_option(const char *name, const char *value);

#endif
