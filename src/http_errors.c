/*
 * http_errors.c: turns failed transfers and unexpected HTTP statuses into
 * ERRORs a DBA understands. Messages name the server and the URL path, never
 * the host's credentials, a token or a query string (which may carry a key).
 */
#include "postgres.h"

#include <errno.h>

#include "http_internal.h"

const char *
dbsync_http_reason(long status)
{
	switch (status)
	{
		case 400: return "Bad Request";
		case 401: return "Unauthorized";
		case 402: return "Payment Required";
		case 403: return "Forbidden";
		case 404: return "Not Found";
		case 405: return "Method Not Allowed";
		case 406: return "Not Acceptable";
		case 408: return "Request Timeout";
		case 409: return "Conflict";
		case 410: return "Gone";
		case 413: return "Payload Too Large";
		case 415: return "Unsupported Media Type";
		case 422: return "Unprocessable Entity";
		case 429: return "Too Many Requests";
		case 500: return "Internal Server Error";
		case 501: return "Not Implemented";
		case 502: return "Bad Gateway";
		case 503: return "Service Unavailable";
		case 504: return "Gateway Timeout";
		default: return "";
	}
}

static int
status_sqlstate(long status)
{
	switch (status)
	{
		case 401:
			return ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		case 403:
			return ERRCODE_INSUFFICIENT_PRIVILEGE;
		case 404:
		case 410:
			return ERRCODE_UNDEFINED_OBJECT;
		default:
			return ERRCODE_FDW_ERROR;
	}
}

static const char *
status_hint(long status, const char *server)
{
	switch (status)
	{
		case 401:
			return psprintf("Check the user and password options of your user mapping for server \"%s\".", server);
		case 403:
			return "The remote account lacks the right or the licence for this request.";
		case 429:
			return "The remote system is rate limiting: try again later.";
		default:
			if (status >= 500)
				return "The remote system failed to answer the request: try again later, or ask its administrator.";
			return NULL;
	}
}

void
dbsync_http_status_error(const DbsyncHttpRequest *req, long status,
						 const char *remote_message, const char *hint)
{
	const char *reason = dbsync_http_reason(status);

	if (hint == NULL)
		hint = status_hint(status, req->server_name);

	ereport(ERROR,
			(errcode(status_sqlstate(status)),
			 errmsg("server \"%s\" answered %s %s with HTTP %ld%s%s",
					req->server_name, req->method, req->path, status,
					reason[0] ? " " : "", reason),
			 remote_message ? errdetail("The server said: %s", remote_message) : 0,
			 hint ? errhint("%s", hint) : 0));
	pg_unreachable();
}

static bool
is_tls_error(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_ISSUER_ERROR:
		case CURLE_SSL_CRL_BADFILE:
		case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		case CURLE_SSL_INVALIDCERTSTATUS:
			return true;
		default:
			return false;
	}
}

void
dbsync_http_transport_error(const DbsyncHttpRequest *req, CURLcode rc,
							const HttpTransfer *t, CURL *easy)
{
	const char *server = req->server_name;
	curl_off_t	sent_at = 0;

	if (t->too_large || rc == CURLE_FILESIZE_EXCEEDED)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("reply of server \"%s\" to %s %s is larger than its max_response_size of %zu bytes",
						server, req->method, req->path, req->max_response_size),
				 errhint("Ask for less (a smaller limit), or raise the server's max_response_size option.")));
	if (t->out_of_memory)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while receiving the reply of server \"%s\" to %s %s",
						server, req->method, req->path)));
	if (t->failed_stream != NULL)
		t->failed_stream->throw_error(t->failed_stream);

	if (is_tls_error(rc))
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not establish a secure connection to server \"%s\"", server),
				 errdetail("%s", t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc)),
				 errhint("Give the server's CA certificate in the ca_file option; verify_tls 'false' turns checking off, which is unsafe.")));

	switch (rc)
	{
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_CONNECT:
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("could not connect to server \"%s\" for %s %s", server, req->method, req->path),
					 errdetail("%s.", curl_easy_strerror(rc)),
					 errhint("Check the server's url option and that the remote system is running.")));
			break;
		case CURLE_OPERATION_TIMEDOUT:
			/* A reused connection reports no connect time; the request was sent if it has a pretransfer time. */
			curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &sent_at);
			if (sent_at == 0)
				ereport(ERROR,
						(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
						 errmsg("could not connect to server \"%s\" within %d ms", server, req->connect_timeout_ms),
						 errhint("Check the server's url option, or raise its connect_timeout option.")));
			if (req->timeout_ms == 0)
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("transfer of %s %s with server \"%s\" made no progress for %d s",
								req->method, req->path, server, Max(1, req->stall_ms / 1000)),
						 errhint("Raise the server's timeout option, or check the remote system.")));
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("server \"%s\" did not answer %s %s within %d ms", server, req->method, req->path, req->timeout_ms),
					 errhint("Raise the server's timeout option, or check the remote system.")));
			break;
		case CURLE_PARTIAL_FILE:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("reply of server \"%s\" to %s %s was truncated", server, req->method, req->path),
					 errdetail("The connection closed after %lld bytes, before the announced end of the reply.",
							   (long long) t->received)));
			break;
		case CURLE_GOT_NOTHING:
		case CURLE_RECV_ERROR:
		case CURLE_SEND_ERROR:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("connection to server \"%s\" was lost during %s %s", server, req->method, req->path),
					 errdetail("%s.", curl_easy_strerror(rc))));
			break;
		case CURLE_TOO_MANY_REDIRECTS:
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("server \"%s\" redirected %s %s more than %d times", server, req->method, req->path,
							DBSYNC_HTTP_MAX_REDIRECTS)));
			break;
		case CURLE_UNSUPPORTED_PROTOCOL:
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("server \"%s\" redirected %s %s to a URL that is not http or https", server, req->method, req->path)));
			break;
		default:
			break;
	}
	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("request %s %s to server \"%s\" failed", req->method, req->path, server),
			 errdetail("%s%s%s", curl_easy_strerror(rc), t->errbuf[0] ? ": " : "", t->errbuf)));
	pg_unreachable();
}
