/*
 * http.h: the one HTTP client of dbsync (libcurl).
 *
 * One curl handle per backend is reused so connections stay alive between
 * calls. A request is cancellable within a tenth of a second (statement
 * timeout, pg_cancel_backend, pg_terminate_backend, SIGTERM in a worker) and
 * bounded by its connect and total timeouts. Transport failures raise an ERROR
 * that names the server and the URL path, never a credential; HTTP statuses
 * are returned to the API client, which knows what they mean.
 */
#ifndef DBSYNC_HTTP_H
#define DBSYNC_HTTP_H

#include "server_options.h"

/*
 * A body streamed to or from somewhere else than memory (a file, a large
 * object). Its functions run inside libcurl, so they must not raise an
 * ERROR: they return false and keep what went wrong, which throw_error
 * raises once libcurl has returned.
 */
typedef struct DbsyncStream DbsyncStream;
struct DbsyncStream
{
	bool		(*read) (DbsyncStream *s, char *buf, size_t max, size_t *n);	/* source; *n = 0 at the end */
	bool		(*write) (DbsyncStream *s, const char *buf, size_t n);	/* sink */
	bool		(*rewind) (DbsyncStream *s);	/* source, for a resend after a redirect */
	void		(*throw_error) (DbsyncStream *s) pg_attribute_noreturn();
	int64		length;			/* source: bytes it will give */
};

typedef struct DbsyncHttpRequest
{
	const char *method;			/* GET, PUT, POST, DELETE */
	const char *server_name;	/* for messages */
	char	   *url;			/* absolute URL, query string included */
	char	   *path;			/* URL path for messages: no host, no query */

	/* authentication: Basic when user is set, Bearer when bearer is set */
	const char *user;
	const char *password;
	const char *bearer;

	const char *accept;			/* Accept header, or NULL */

	/* body to send: in memory, or streamed */
	const char *content_type;
	const char *body;
	size_t		body_len;
	DbsyncStream *body_stream;	/* NULL: none */

	/* where the reply body goes: memory (capped), or a stream (no cap) */
	DbsyncStream *reply_stream; /* NULL: memory */

	int			connect_timeout_ms;
	int			timeout_ms;		/* 0: no total limit (long streams)... */
	int			stall_ms;		/* ...but no progress for this long is a timeout */
	size_t		max_response_size;
	bool		verify_tls;
	const char *ca_file;
} DbsyncHttpRequest;

typedef struct DbsyncHttpResponse
{
	long		status;
	char	   *body;			/* NUL-terminated; empty when streamed */
	size_t		body_len;
	int64		bytes_received; /* body bytes, in memory or streamed */
	char	   *content_type;	/* NULL when the server sent none */
} DbsyncHttpResponse;

/*
 * Prepares a request to the server's base URL + path_and_query (which must
 * start with '/' and be URL-encoded already), with the server's settings and
 * the user mapping's Basic credentials.
 */
extern void dbsync_http_request_init(DbsyncHttpRequest *req, const DbsyncServer *srv,
									 const char *method, const char *path_and_query);

/*
 * The same for an absolute URL the remote system gave (a download link);
 * `shown` is what messages call it (such links can carry a key).
 */
extern void dbsync_http_request_init_url(DbsyncHttpRequest *req, const DbsyncServer *srv,
										 const char *method, const char *url, const char *shown);

/* Sends the request and waits for the whole reply; ERROR on any transport failure. */
extern void dbsync_http_perform(const DbsyncHttpRequest *req, DbsyncHttpResponse *resp);

/* Appends s to buf URL-encoded (for path segments and query values). */
struct StringInfoData;
extern void dbsync_http_append_escaped(struct StringInfoData *buf, const char *s);

/*
 * Raises the ERROR for an HTTP status the API client did not handle itself:
 * SQLSTATE by status (401 -> 28000, 403 -> 42501, 404 -> 42704, others HV000),
 * the remote system's own message (if any) in the DETAIL.
 */
extern void dbsync_http_status_error(const DbsyncHttpRequest *req, long status,
									 const char *remote_message, const char *hint) pg_attribute_noreturn();

/* The reason phrase of an HTTP status ("Not Found"), or "" when unknown. */
extern const char *dbsync_http_reason(long status);

#endif
