/*
 * octoplant.h: the octoplant Export API (OAuth2 password grant, order,
 * status, cancel, ZIP download), a gRPC gateway speaking JSON.
 */
#ifndef DBSYNC_OCTOPLANT_H
#define DBSYNC_OCTOPLANT_H

#include "http.h"
#include "server_options.h"

/* The client id and secret the octoplant documentation gives for its public API. */
#define OCTOPLANT_DEFAULT_CLIENT_ID "public-api"
#define OCTOPLANT_DEFAULT_CLIENT_SECRET "ff99971a-f8c3-4d21-5345-f7cb021b4b54"

/*
 * A bearer token for the server and the current role's credentials: the one
 * this process holds while it is valid, else a new grant. `fresh` forgets
 * the held one first (after the service refused it).
 */
extern const char *octoplant_token(const DbsyncServer *srv, bool fresh);

/* The user mapping's value of an option, else the server's, else dflt. */
extern const char *octoplant_setting(const DbsyncServer *srv, const char *name, const char *dflt);

/*
 * Calls the API with the token (one fresh token and one retry when it is
 * refused) and returns the reply, a JSON object, as text. A JSON body is sent
 * when body is not NULL. HTTP errors become ERRORs that name the gRPC code.
 */
extern char *octoplant_call(const DbsyncServer *srv, const char *method, const char *path, const char *body);

/* Streams an order's ZIP into sink (checked to be a ZIP on its way). */
extern void octoplant_download(const DbsyncServer *srv, const char *name, DbsyncStream *sink);

/* The same as a transfer.h TransferFn, its arg an OctoplantZip. */
typedef struct OctoplantZip
{
	const DbsyncServer *srv;
	const char *name;
} OctoplantZip;
extern void octoplant_fetch_zip(void *arg, DbsyncStream *sink);

/* The path /v1/order/<name>[suffix] with the name URL-encoded. */
extern char *octoplant_order_path(const char *name, const char *suffix);

/*
 * Raises the ERROR for a reply that is not a success: the gRPC code's name
 * and the service's message when the body is the gateway's {code, message,
 * details} (or OAuth2's {error, error_description}), else the HTTP status.
 */
extern void octoplant_raise(const DbsyncHttpRequest *req, long status, const char *body, size_t len) pg_attribute_noreturn();

/* The gRPC code in an error body ({"code": n}), or -1. */
extern int	octoplant_error_code(const char *body, size_t len);

/* Name of a gRPC status code, "code <n>" beyond the known ones. */
extern const char *grpc_code_name(int code);

#endif
