/*
 * json_stream.c: a streaming reader over PostgreSQL's JSON lexer (see json_stream.h).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "mb/pg_wchar.h"

#include "json_stream.h"

typedef struct Reader
{
	JsonLexContext *lex;
	const JsonStreamHandler *h;
} Reader;

bool
json_name_is(const JsonName *field, const char *name)
{
	return field != NULL && field->len == (int) strlen(name) && memcmp(field->str, name, field->len) == 0;
}

/* Decodes the escapes of one string token with the lexer's own rules. */
static char *
decode_string(char *start, int len)
{
	JsonLexContext *one = makeJsonLexContextCstringLen(start, len, PG_UTF8, true);

	if (json_lex(one) != JSON_SUCCESS)
		elog(ERROR, "could not decode a JSON string the lexer accepted");
	return one->strval->data;
}

char *
json_token_string(JsonToken *token, bool in_place)
{
	if (token->type != JSON_TOKEN_STRING)
		return pnstrdup(token->start, token->len);
	if (memchr(token->start + 1, '\\', token->len - 2) != NULL)
		return decode_string(token->start, token->len);
	if (in_place)
	{
		token->start[token->len - 1] = '\0';
		return token->start + 1;
	}
	return pnstrdup(token->start + 1, token->len - 2);
}

static JsonParseErrorType read_value(Reader *r, const JsonName *field);

static JsonParseErrorType
read_members(Reader *r)
{
	JsonLexContext *lex = r->lex;
	JsonParseErrorType rc;

	if (lex->token_type == JSON_TOKEN_OBJECT_END)
		return JSON_SUCCESS;
	for (;;)
	{
		JsonName	field;

		if (lex->token_type != JSON_TOKEN_STRING)
			return JSON_EXPECTED_STRING;
		field.str = lex->token_start + 1;
		field.len = (int) (lex->token_terminator - lex->token_start) - 2;
		if (memchr(field.str, '\\', field.len) != NULL)
		{
			field.str = decode_string(lex->token_start, field.len + 2);
			field.len = strlen(field.str);
		}
		if ((rc = json_lex(lex)) != JSON_SUCCESS)
			return rc;
		if (lex->token_type != JSON_TOKEN_COLON)
			return JSON_EXPECTED_COLON;
		if ((rc = json_lex(lex)) != JSON_SUCCESS)
			return rc;
		if ((rc = read_value(r, &field)) != JSON_SUCCESS)
			return rc;
		if (lex->token_type == JSON_TOKEN_OBJECT_END)
			return JSON_SUCCESS;
		if (lex->token_type != JSON_TOKEN_COMMA)
			return JSON_EXPECTED_OBJECT_NEXT;
		if ((rc = json_lex(lex)) != JSON_SUCCESS)
			return rc;
	}
}

static JsonParseErrorType
read_elements(Reader *r)
{
	JsonLexContext *lex = r->lex;
	JsonParseErrorType rc;

	if (lex->token_type == JSON_TOKEN_ARRAY_END)
		return JSON_SUCCESS;
	for (;;)
	{
		if ((rc = read_value(r, NULL)) != JSON_SUCCESS)
			return rc;
		if (lex->token_type == JSON_TOKEN_ARRAY_END)
			return JSON_SUCCESS;
		if (lex->token_type != JSON_TOKEN_COMMA)
			return JSON_EXPECTED_ARRAY_NEXT;
		if ((rc = json_lex(lex)) != JSON_SUCCESS)
			return rc;
	}
}

/* Reads one value starting at the current token; leaves the lexer on the token after it. */
static JsonParseErrorType
read_value(Reader *r, const JsonName *field)
{
	JsonLexContext *lex = r->lex;
	JsonParseErrorType rc;

	check_stack_depth();
	switch (lex->token_type)
	{
		case JSON_TOKEN_OBJECT_START:
		case JSON_TOKEN_ARRAY_START:
			{
				bool		is_object = (lex->token_type == JSON_TOKEN_OBJECT_START);

				r->h->open(r->h->state, is_object, field, lex->token_start);
				if ((rc = json_lex(lex)) != JSON_SUCCESS)
					return rc;
				rc = is_object ? read_members(r) : read_elements(r);
				if (rc != JSON_SUCCESS)
					return rc;
				/* On the closing bracket now. */
				r->h->close(r->h->state, is_object, lex->token_terminator);
				return json_lex(lex);
			}
		case JSON_TOKEN_STRING:
		case JSON_TOKEN_NUMBER:
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
		case JSON_TOKEN_NULL:
			{
				JsonToken	tok;

				tok.start = lex->token_start;
				tok.len = (int) (lex->token_terminator - lex->token_start);
				tok.type = lex->token_type;
				r->h->scalar(r->h->state, field, &tok);
				return json_lex(lex);
			}
		default:
			return JSON_EXPECTED_JSON;
	}
}

void
json_stream_read(char *text, size_t len, const char *what, const JsonStreamHandler *handler)
{
	Reader		r;
	JsonParseErrorType rc;

	if (len > (size_t) PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too large to parse", what)));

	r.lex = makeJsonLexContextCstringLen(text, (int) len, PG_UTF8, false);
	r.h = handler;
	rc = json_lex(r.lex);
	if (rc == JSON_SUCCESS)
		rc = read_value(&r, NULL);
	if (rc == JSON_SUCCESS && r.lex->token_type != JSON_TOKEN_END)
		rc = JSON_EXPECTED_END;
	if (rc != JSON_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_JSON_TEXT),
				 errmsg("%s is not valid JSON", what),
				 len == 0 ? errdetail("The body is empty.")
				 : errdetail("%s It is at line %d, byte %d of %zu.", json_errdetail(rc, r.lex),
							 r.lex->line_number, (int) (r.lex->token_start - r.lex->input) + 1, len)));
}
