/*
 * http_internal.h: what the transfer loop (http.c) and the error mapping
 * (http_errors.c) share. Not for API clients.
 */
#ifndef DBSYNC_HTTP_INTERNAL_H
#define DBSYNC_HTTP_INTERNAL_H

#include <curl/curl.h>

#include "http.h"

#define DBSYNC_HTTP_MAX_REDIRECTS 5
#define DBSYNC_HTTP_RECV_BUFFER (128L * 1024)

/* State of one transfer, filled by libcurl's callbacks. */
typedef struct HttpTransfer
{
	const DbsyncHttpRequest *req;
	CURL	   *easy;
	MemoryContext cxt;			/* where the body buffer lives */
	char	   *buf;
	size_t		len;
	size_t		cap;
	int64		received;
	bool		too_large;
	bool		out_of_memory;
	DbsyncStream *failed_stream;	/* a stream that failed, to raise its error */
	char		errbuf[CURL_ERROR_SIZE];
} HttpTransfer;

/* Raises the ERROR for a failed transfer. */
extern void dbsync_http_transport_error(const DbsyncHttpRequest *req, CURLcode rc,
										const HttpTransfer *t, CURL *easy) pg_attribute_noreturn();

#endif
