/*
 * http.c: the transfer loop of dbsync's HTTP client (libcurl multi interface).
 *
 * The multi interface lets the backend wake every 100 ms while waiting, so a
 * cancel or terminate request is served promptly; the curl handle is detached
 * before the ERROR propagates, and the next request starts clean. Callbacks run
 * inside libcurl and therefore never raise an ERROR: they set a flag that is
 * turned into one once curl has returned.
 */
#include "postgres.h"

#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/pmsignal.h"
#include "utils/memutils.h"

#include "dbsync.h"
#include "http.h"
#include "http_internal.h"

/* Kept for the life of the backend: the multi handle owns the connection pool. */
static CURLM *multi = NULL;
static CURL *easy = NULL;
static bool easy_attached = false;

static void
ensure_handles(void)
{
	if (multi != NULL)
		return;
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	easy = curl_easy_init();
	multi = curl_multi_init();

	/*
	 * A backend that syncs builds and frees about a megabyte per page of
	 * changes; with glibc's default trim threshold it gives those pages back to
	 * the kernel after every call and faults them in again on the next (a
	 * third of the CPU of a page, measured). Keep up to 8 MB of freed heap in
	 * such backends; allocations over 4 MB still come from and return to mmap.
	 */
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
	if (easy == NULL || multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while initializing libcurl")));
}

static void
detach_handle(void)
{
	if (easy_attached)
	{
		curl_multi_remove_handle(multi, easy);
		easy_attached = false;
	}
}

/* Stores a piece of the reply body in memory (capped) or writes it to the sink file. */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpTransfer *t = (HttpTransfer *) arg;
	size_t		n = size * nmemb;

	t->received += n;
	if (t->req->reply_stream != NULL)
	{
		if (!t->req->reply_stream->write(t->req->reply_stream, data, n))
		{
			t->failed_stream = t->req->reply_stream;
			return 0;
		}
		return n;
	}

	if (t->len + n > t->req->max_response_size)
	{
		t->too_large = true;
		return 0;
	}
	if (t->len + n + 1 > t->cap)
	{
		size_t		newcap = Max(Max(t->cap * 2, 8192), t->len + n + 1);
		curl_off_t	announced = -1;
		char	   *nb;

		/* The first piece: room for the whole announced body at once. */
		if (t->buf == NULL &&
			curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK &&
			announced > 0 && (size_t) announced <= t->req->max_response_size)
			newcap = Max(newcap, (size_t) announced + 1);

		newcap = Min(newcap, t->req->max_response_size + 1);
		nb = MemoryContextAllocExtended(t->cxt, newcap, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
		if (nb == NULL)
		{
			t->out_of_memory = true;
			return 0;
		}
		if (t->len > 0)
			memcpy(nb, t->buf, t->len);
		if (t->buf != NULL)
			pfree(t->buf);
		t->buf = nb;
		t->cap = newcap;
	}
	memcpy(t->buf + t->len, data, n);
	t->len += n;
	return n;
}

/* Streams the request body. */
static size_t
on_send(char *out, size_t size, size_t nitems, void *arg)
{
	HttpTransfer *t = (HttpTransfer *) arg;
	size_t		n = 0;

	if (!t->req->body_stream->read(t->req->body_stream, out, size * nitems, &n))
	{
		t->failed_stream = t->req->body_stream;
		return CURL_READFUNC_ABORT;
	}
	return n;
}

/* Starts the body again when curl must resend it (after a redirect). */
static int
on_seek(void *arg, curl_off_t offset, int origin)
{
	HttpTransfer *t = (HttpTransfer *) arg;
	DbsyncStream *s = t->req->body_stream;

	if (offset != 0 || origin != SEEK_SET || s->rewind == NULL || !s->rewind(s))
		return CURL_SEEKFUNC_CANTSEEK;
	return CURL_SEEKFUNC_OK;
}

void
dbsync_http_request_init(DbsyncHttpRequest *req, const DbsyncServer *srv,
						 const char *method, const char *path_and_query)
{
	const char *q = strchr(path_and_query, '?');

	Assert(path_and_query[0] == '/');
	memset(req, 0, sizeof(*req));
	req->method = method;
	req->server_name = srv->name;
	req->url = psprintf("%s%s", srv->url, path_and_query);
	req->path = q ? pnstrdup(path_and_query, q - path_and_query) : pstrdup(path_and_query);
	req->user = srv->user;
	req->password = srv->password;
	req->connect_timeout_ms = srv->connect_timeout_ms;
	req->timeout_ms = srv->timeout_ms;
	req->stall_ms = srv->timeout_ms;
	req->max_response_size = srv->max_response_size;
	req->verify_tls = srv->verify_tls;
	req->ca_file = srv->ca_file;
}

void
dbsync_http_request_init_url(DbsyncHttpRequest *req, const DbsyncServer *srv,
							 const char *method, const char *url, const char *shown)
{
	dbsync_http_request_init(req, srv, method, "/");
	req->url = pstrdup(url);
	req->path = pstrdup(shown);
	/* A link from the remote system gets none of the server's credentials. */
	req->user = NULL;
	req->password = NULL;
}

void
dbsync_http_append_escaped(StringInfo buf, const char *s)
{
	char	   *escaped = curl_easy_escape(NULL, s, 0);

	if (escaped == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	appendStringInfoString(buf, escaped);
	curl_free(escaped);
}

static struct curl_slist *
add_header(struct curl_slist *list, const char *header)
{
	struct curl_slist *next = curl_slist_append(list, header);

	if (next == NULL)
	{
		curl_slist_free_all(list);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	return next;
}

static struct curl_slist *
configure(const DbsyncHttpRequest *req, HttpTransfer *t)
{
	struct curl_slist *headers = NULL;
	bool		has_body = (req->body != NULL || req->body_stream != NULL);

	curl_easy_reset(easy);
	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(easy, CURLOPT_MAXREDIRS, (long) DBSYNC_HTTP_MAX_REDIRECTS);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, DBSYNC_USER_AGENT);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	/* Large reads: a page of 1000 changes (150 kB) in two or three recv calls. */
	curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, DBSYNC_HTTP_RECV_BUFFER);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) req->connect_timeout_ms);
	if (req->timeout_ms > 0)
		curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) req->timeout_ms);
	else
	{
		/* A long stream has no total limit, but one that stops moving times out. */
		curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, (long) Max(1, req->stall_ms / 1000));
	}
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, req->verify_tls ? 1L : 0L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, req->verify_tls ? 2L : 0L);
	if (req->ca_file != NULL)
		curl_easy_setopt(easy, CURLOPT_CAINFO, req->ca_file);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
	if (req->reply_stream == NULL)
		curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) req->max_response_size);

	if (req->user != NULL)
	{
		curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		curl_easy_setopt(easy, CURLOPT_USERNAME, req->user);
		curl_easy_setopt(easy, CURLOPT_PASSWORD, req->password ? req->password : "");
	}

	if (strcmp(req->method, "GET") == 0)
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	else if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0 || has_body)
	{
		/* POST mechanics carry the body; CUSTOMREQUEST names another method. */
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		if (strcmp(req->method, "POST") != 0)
			curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
		if (req->body_stream != NULL)
		{
			curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_send);
			curl_easy_setopt(easy, CURLOPT_READDATA, t);
			curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, on_seek);
			curl_easy_setopt(easy, CURLOPT_SEEKDATA, t);
			curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_stream->length);
		}
		else
		{
			curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body ? req->body : "");
			curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) (req->body ? req->body_len : 0));
		}
		headers = add_header(headers, "Expect:");
		if (req->content_type == NULL)
			headers = add_header(headers, "Content-Type:");
	}
	else
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);

	if (req->content_type != NULL)
	{
		char	   *h = psprintf("Content-Type: %s", req->content_type);

		headers = add_header(headers, h);
		pfree(h);
	}
	if (req->accept != NULL)
	{
		char	   *h = psprintf("Accept: %s", req->accept);

		headers = add_header(headers, h);
		pfree(h);
	}
	if (req->bearer != NULL)
	{
		char	   *h = psprintf("Authorization: Bearer %s", req->bearer);

		headers = add_header(headers, h);
		memset(h, 0, strlen(h));
		pfree(h);
	}
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	return headers;
}

/* Runs the transfer to its end, serving interrupts; returns curl's result. */
static CURLcode
run_transfer(void)
{
	CURLMcode	mc;
	CURLMsg    *msg;
	int			pending;

	mc = curl_multi_add_handle(multi, easy);
	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start an HTTP request: %s", curl_multi_strerror(mc))));
	easy_attached = true;

	for (;;)
	{
		int			running = 0;

		mc = curl_multi_perform(multi, &running);
		if (mc == CURLM_OK && running > 0)
			mc = curl_multi_poll(multi, NULL, 0, 100, NULL);
		if (mc != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("HTTP transfer failed: %s", curl_multi_strerror(mc))));
		if (running == 0)
			break;
		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			ereport(FATAL,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("terminating dbsync request because the postmaster died")));
	}

	while ((msg = curl_multi_info_read(multi, &pending)) != NULL)
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy)
			return msg->data.result;
	return CURLE_RECV_ERROR;
}

void
dbsync_http_perform(const DbsyncHttpRequest *req, DbsyncHttpResponse *resp)
{
	HttpTransfer t;
	struct curl_slist *volatile headers = NULL;
	volatile CURLcode rc = CURLE_OK;
	char	   *ctype = NULL;

	ensure_handles();
	detach_handle();			/* left attached only if an earlier ERROR skipped cleanup */

	memset(&t, 0, sizeof(t));
	t.req = req;
	t.easy = easy;
	t.cxt = CurrentMemoryContext;

	PG_TRY();
	{
		headers = configure(req, &t);
		rc = run_transfer();
	}
	PG_FINALLY();
	{
		detach_handle();
		curl_slist_free_all(headers);
	}
	PG_END_TRY();

	if (rc != CURLE_OK)
		dbsync_http_transport_error(req, rc, &t, easy);

	memset(resp, 0, sizeof(*resp));
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &resp->status);
	curl_easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &ctype);
	resp->content_type = ctype ? pstrdup(ctype) : NULL;
	resp->bytes_received = t.received;
	if (t.buf == NULL)
		t.buf = palloc0(1);
	t.buf[t.len] = '\0';
	resp->body = t.buf;
	resp->body_len = t.len;
}
