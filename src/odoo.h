/*
 * odoo.h: the Odoo database upgrade API v1 (create, upload, process, status,
 * download), as the upgrade service documents it.
 */
#ifndef DBSYNC_ODOO_H
#define DBSYNC_ODOO_H

#include "http.h"
#include "server_options.h"

/*
 * Calls /database/v1/<method> with form fields (name, value pairs; NULL
 * values left out) or, for upload, a streamed body with the fields in the
 * query string. Returns the reply's "request" object as JSON text (NULL when
 * the reply has none). The reply's failures become one ERROR; `secret` (the
 * request's key) is never shown in it.
 */
extern char *odoo_call(const DbsyncServer *srv, const char *method, List *fields,
					   DbsyncStream *body, const char *secret);

/* Downloads a link of the status reply into a stream; `shown` names it in messages. */
extern void odoo_download(const DbsyncServer *srv, const char *url, const char *shown,
						  DbsyncStream *sink);

/* The same as a transfer.h TransferFn, its arg an OdooDump. */
typedef struct OdooDump
{
	const DbsyncServer *srv;
	const char *url;
	const char *shown;
} OdooDump;
extern void odoo_fetch_dump(void *arg, DbsyncStream *sink);

#endif
