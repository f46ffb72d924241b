/*
 * octoplant_token.c: OAuth2 password grant at /v1/oauth2/token, and the
 * tokens this process holds.
 *
 * A token is kept in this process's memory only (never in a table, a log or
 * a message), for the server, the role and the exact credentials it was
 * granted for, until shortly before its expires_in runs out or the service
 * refuses it. Changed credentials (ALTER USER MAPPING) never reuse a token.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "json_layer.h"
#include "octoplant.h"

typedef struct HeldToken
{
	Oid			serverid;
	Oid			userid;
	char	   *credentials;	/* url, user, password, client id and secret it was granted for */
	char	   *token;
	TimestampTz renew_at;		/* 0: until refused */
	struct HeldToken *next;
} HeldToken;

static HeldToken *held = NULL;

const char *
octoplant_setting(const DbsyncServer *srv, const char *name, const char *dflt)
{
	const char *v = dbsync_option_value(srv->mapping_options, name);

	if (v == NULL)
		v = dbsync_option_value(srv->server_options, name);
	return v ? v : dflt;
}

static char *
credentials_of(const DbsyncServer *srv)
{
	return psprintf("%s\n%s\n%s\n%s\n%s", srv->url, srv->user ? srv->user : "", srv->password ? srv->password : "",
					octoplant_setting(srv, "client_id", OCTOPLANT_DEFAULT_CLIENT_ID),
					octoplant_setting(srv, "client_secret", OCTOPLANT_DEFAULT_CLIENT_SECRET));
}

static void
forget(HeldToken *t)
{
	HeldToken **p;

	for (p = &held; *p != NULL; p = &(*p)->next)
	{
		if (*p == t)
		{
			*p = t->next;
			break;
		}
	}
	explicit_bzero(t->token, strlen(t->token));
	explicit_bzero(t->credentials, strlen(t->credentials));
	pfree(t->token);
	pfree(t->credentials);
	pfree(t);
}

static HeldToken *
find(const DbsyncServer *srv)
{
	for (HeldToken *t = held; t != NULL; t = t->next)
		if (t->serverid == srv->serverid && t->userid == srv->userid)
			return t;
	return NULL;
}

static void
append_field(StringInfo form, const char *name, const char *value)
{
	if (form->len > 0)
		appendStringInfoChar(form, '&');
	appendStringInfo(form, "%s=", name);
	dbsync_http_append_escaped(form, value);
}

/* The grant itself: returns the token and its lifetime in seconds (0 when not given). */
static char *
grant(const DbsyncServer *srv, int64 *expires_in)
{
	StringInfoData form;
	DbsyncHttpRequest req;
	DbsyncHttpResponse resp;
	DbsyncJson *reply;
	const char *token;

	if (srv->user == NULL || srv->password == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("the user mapping for role \"%s\" on server \"%s\" needs the options user and password",
						GetUserNameFromId(srv->userid, false), srv->name),
				 errhint("They are the octoplant user's name and password: ALTER USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (ADD user '...', ADD password '...').",
						 quote_identifier(srv->name))));
	initStringInfo(&form);
	append_field(&form, "grant_type", "password");
	append_field(&form, "username", srv->user);
	append_field(&form, "password", srv->password);
	append_field(&form, "client_id", octoplant_setting(srv, "client_id", OCTOPLANT_DEFAULT_CLIENT_ID));
	append_field(&form, "client_secret", octoplant_setting(srv, "client_secret", OCTOPLANT_DEFAULT_CLIENT_SECRET));

	dbsync_http_request_init(&req, srv, "POST", "/v1/oauth2/token");
	req.user = NULL;			/* the credentials go in the form, not in a Basic header */
	req.password = NULL;
	req.accept = "application/json";
	req.content_type = "application/x-www-form-urlencoded";
	req.body = form.data;
	req.body_len = form.len;
	PG_TRY();
	{
		dbsync_http_perform(&req, &resp);
	}
	PG_FINALLY();
	{
		explicit_bzero(form.data, form.len);
	}
	PG_END_TRY();
	if (resp.status != 200)
		octoplant_raise(&req, resp.status, resp.body, resp.body_len);

	reply = dbsync_json_parse(resp.body, resp.body_len,
							  psprintf("reply of server \"%s\" to POST /v1/oauth2/token", srv->name));
	token = dbsync_json_string(dbsync_json_member(reply, "access_token"));
	if (token == NULL || token[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("server \"%s\" granted no access_token at POST /v1/oauth2/token", srv->name)));
	if (!dbsync_json_int64(dbsync_json_member(reply, "expires_in"), expires_in) || *expires_in < 0)
		*expires_in = 0;
	return pstrdup(token);
}

const char *
octoplant_token(const DbsyncServer *srv, bool fresh)
{
	HeldToken  *t = find(srv);
	char	   *credentials = credentials_of(srv);
	TimestampTz now = GetCurrentTimestamp();
	int64		expires_in = 0;
	char	   *token;
	MemoryContext old;

	if (t != NULL && (fresh || strcmp(t->credentials, credentials) != 0 ||
					  (t->renew_at != 0 && now >= t->renew_at)))
	{
		forget(t);
		t = NULL;
	}
	if (t != NULL)
	{
		explicit_bzero(credentials, strlen(credentials));
		return t->token;
	}

	token = grant(srv, &expires_in);
	old = MemoryContextSwitchTo(TopMemoryContext);
	t = palloc0(sizeof(HeldToken));
	t->serverid = srv->serverid;
	t->userid = srv->userid;
	t->credentials = pstrdup(credentials);
	t->token = pstrdup(token);
	/* Renewed a tenth of its life (at most 30 s) before it runs out, so no request carries an expiring one. */
	if (expires_in > 0)
		t->renew_at = now + expires_in * USECS_PER_SEC - Min(expires_in * USECS_PER_SEC / 10, 30 * USECS_PER_SEC);
	t->next = held;
	held = t;
	MemoryContextSwitchTo(old);
	explicit_bzero(credentials, strlen(credentials));
	explicit_bzero(token, strlen(token));
	return t->token;
}
