/*
 * json_stream.h: one streaming pass over a JSON text, for large replies.
 *
 * Its own lexer scans the bytes without copying (token types are those of
 * PostgreSQL's common/jsonapi.h, whose lexer decodes the rare escaped
 * string): handlers see raw tokens and positions in the text and copy only
 * what they keep. It validates the whole text; a handler may raise an ERROR.
 * (jansson, json_layer.h, remains the reader of small documents.)
 */
#ifndef DBSYNC_JSON_STREAM_H
#define DBSYNC_JSON_STREAM_H

#include "common/jsonapi.h"

/* A member name, as found in the text (escapes decoded only when there were some). */
typedef struct JsonName
{
	const char *str;			/* not NUL-terminated */
	int			len;
} JsonName;

/* A scalar token: its raw text (strings with their quotes) and type. */
typedef struct JsonToken
{
	char	   *start;
	int			len;
	JsonTokenType type;
} JsonToken;

typedef struct JsonStreamHandler
{
	void	   *state;
	/* A container opens; field is its member name, or NULL in an array or at the top. */
	void		(*open) (void *state, bool is_object, const JsonName *field, const char *start);
	/* It closes; end points just past its closing bracket. */
	void		(*close) (void *state, bool is_object, const char *end);
	/* A scalar value; field as for open. */
	void		(*scalar) (void *state, const JsonName *field, JsonToken *token);
} JsonStreamHandler;

/*
 * Reads the whole text; ERROR (22032) naming `what` when it is not valid JSON.
 * The text must stay unchanged during the pass except through
 * json_token_string(..., true).
 */
extern void json_stream_read(char *text, size_t len, const char *what, const JsonStreamHandler *handler);

/* Whether a member name is `name`. */
extern bool json_name_is(const JsonName *field, const char *name);

/*
 * The text of a scalar: strings without quotes, escapes decoded. With
 * in_place, a string without escapes is NUL-terminated over its closing quote
 * (which the lexer has passed) and returned without a copy.
 */
extern char *json_token_string(JsonToken *token, bool in_place);

#endif
