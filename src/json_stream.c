/*
 * json_stream.c: a streaming reader over PostgreSQL's JSON lexer (see json_stream.h).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "mb/pg_wchar.h"

#include "json_stream.h"

/*
 * The lexer: one pass over the bytes, no copies. PostgreSQL's json_lex cost
 * a third of a change page's CPU, mostly in its per-character loop; strings,
 * the bulk of a Flexi reply, are scanned here with a table lookup per byte.
 * Escapes are checked for form here and decoded, rarely, by PostgreSQL's
 * lexer (decode_string).
 */
typedef struct Lexer
{
	char	   *p;				/* next byte */
	char	   *end;
	char	   *input;
	int			line;
	JsonTokenType type;
	char	   *tok_start;
	char	   *tok_end;
	const char *error;			/* why the text is not JSON */
} Lexer;

/* Bytes that end a run of plain string content: '"', '\\' and control characters. */
static bool string_stop[256];
static bool tables_ready = false;

static void
init_tables(void)
{
	for (int c = 0; c < 256; c++)
		string_stop[c] = (c < 0x20 || c == '"' || c == '\\');
	tables_ready = true;
}

static bool
lex_fail(Lexer *lx, const char *why)
{
	lx->error = why;
	return false;
}

static bool
is_delimiter(Lexer *lx, const char *q)
{
	return q == lx->end || *q == ',' || *q == ']' || *q == '}' || *q == ':' ||
		*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r';
}

static bool
lex_string(Lexer *lx)
{
	char	   *q = lx->p + 1;

	for (;;)
	{
		while (q < lx->end && !string_stop[(unsigned char) *q])
			q++;
		if (q == lx->end)
			return lex_fail(lx, "The text ends inside a string.");
		if (*q == '"')
			break;
		if (*q != '\\')
			return lex_fail(lx, "A string holds a control character; it must be escaped.");
		if (q + 1 >= lx->end)
			return lex_fail(lx, "The text ends inside a string.");
		if (strchr("\"\\/bfnrt", q[1]) != NULL && q[1] != '\0')
			q += 2;
		else if (q[1] == 'u')
		{
			for (int i = 2; i < 6; i++)
				if (q + i >= lx->end || !isxdigit((unsigned char) q[i]))
					return lex_fail(lx, "A \\u escape needs four hexadecimal digits.");
			q += 6;
		}
		else
			return lex_fail(lx, "A string has an invalid escape sequence.");
	}
	lx->type = JSON_TOKEN_STRING;
	lx->tok_end = q + 1;
	return true;
}

static bool
lex_number(Lexer *lx)
{
	char	   *q = lx->p;

	if (*q == '-')
		q++;
	if (q < lx->end && *q == '0')
		q++;
	else if (q < lx->end && *q >= '1' && *q <= '9')
		while (q < lx->end && isdigit((unsigned char) *q))
			q++;
	else
		return lex_fail(lx, "A number is malformed.");
	if (q < lx->end && *q == '.')
	{
		q++;
		if (q == lx->end || !isdigit((unsigned char) *q))
			return lex_fail(lx, "A number is malformed.");
		while (q < lx->end && isdigit((unsigned char) *q))
			q++;
	}
	if (q < lx->end && (*q == 'e' || *q == 'E'))
	{
		q++;
		if (q < lx->end && (*q == '+' || *q == '-'))
			q++;
		if (q == lx->end || !isdigit((unsigned char) *q))
			return lex_fail(lx, "A number is malformed.");
		while (q < lx->end && isdigit((unsigned char) *q))
			q++;
	}
	if (!is_delimiter(lx, q))
		return lex_fail(lx, "A number is malformed.");
	lx->type = JSON_TOKEN_NUMBER;
	lx->tok_end = q;
	return true;
}

static bool
lex_word(Lexer *lx, const char *word, JsonTokenType type)
{
	size_t		n = strlen(word);

	if ((size_t) (lx->end - lx->p) < n || memcmp(lx->p, word, n) != 0 || !is_delimiter(lx, lx->p + n))
		return lex_fail(lx, "An unexpected word stands where a value belongs.");
	lx->type = type;
	lx->tok_end = lx->p + n;
	return true;
}

/* Reads the next token; false (with lx->error) when the text is not JSON. */
static bool
lex_next(Lexer *lx)
{
	while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\n' || *lx->p == '\r'))
	{
		if (*lx->p == '\n')
			lx->line++;
		lx->p++;
	}
	lx->tok_start = lx->p;
	if (lx->p == lx->end)
	{
		lx->type = JSON_TOKEN_END;
		lx->tok_end = lx->p;
		return true;
	}
	lx->tok_end = lx->p + 1;
	switch (*lx->p)
	{
		case '{':
			lx->type = JSON_TOKEN_OBJECT_START;
			break;
		case '}':
			lx->type = JSON_TOKEN_OBJECT_END;
			break;
		case '[':
			lx->type = JSON_TOKEN_ARRAY_START;
			break;
		case ']':
			lx->type = JSON_TOKEN_ARRAY_END;
			break;
		case ',':
			lx->type = JSON_TOKEN_COMMA;
			break;
		case ':':
			lx->type = JSON_TOKEN_COLON;
			break;
		case '"':
			if (!lex_string(lx))
				return false;
			break;
		case 't':
			if (!lex_word(lx, "true", JSON_TOKEN_TRUE))
				return false;
			break;
		case 'f':
			if (!lex_word(lx, "false", JSON_TOKEN_FALSE))
				return false;
			break;
		case 'n':
			if (!lex_word(lx, "null", JSON_TOKEN_NULL))
				return false;
			break;
		default:
			if (*lx->p == '-' || isdigit((unsigned char) *lx->p))
			{
				if (!lex_number(lx))
					return false;
			}
			else
				return lex_fail(lx, "An unexpected character stands where a value belongs.");
	}
	lx->p = lx->tok_end;
	return true;
}

typedef struct Reader
{
	Lexer	   *lex;
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
	JsonParseErrorType rc = json_lex(one);

	if (rc != JSON_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_JSON_TEXT),
				 errmsg("a JSON string cannot be decoded"),
				 errdetail("%s", json_errdetail(rc, one))));
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

static bool read_value(Reader *r, const JsonName *field);

static bool
read_members(Reader *r)
{
	Lexer	   *lex = r->lex;

	if (lex->type == JSON_TOKEN_OBJECT_END)
		return true;
	for (;;)
	{
		JsonName	field;

		if (lex->type != JSON_TOKEN_STRING)
			return lex_fail(lex, "An object member must start with a name in quotes.");
		field.str = lex->tok_start + 1;
		field.len = (int) (lex->tok_end - lex->tok_start) - 2;
		if (memchr(field.str, '\\', field.len) != NULL)
		{
			field.str = decode_string(lex->tok_start, field.len + 2);
			field.len = strlen(field.str);
		}
		if (!lex_next(lex))
			return false;
		if (lex->type != JSON_TOKEN_COLON)
			return lex_fail(lex, "A member name must be followed by a colon.");
		if (!lex_next(lex) || !read_value(r, &field))
			return false;
		if (lex->type == JSON_TOKEN_OBJECT_END)
			return true;
		if (lex->type != JSON_TOKEN_COMMA)
			return lex_fail(lex, "Object members must be separated by commas.");
		if (!lex_next(lex))
			return false;
	}
}

static bool
read_elements(Reader *r)
{
	Lexer	   *lex = r->lex;

	if (lex->type == JSON_TOKEN_ARRAY_END)
		return true;
	for (;;)
	{
		if (!read_value(r, NULL))
			return false;
		if (lex->type == JSON_TOKEN_ARRAY_END)
			return true;
		if (lex->type != JSON_TOKEN_COMMA)
			return lex_fail(lex, "Array elements must be separated by commas.");
		if (!lex_next(lex))
			return false;
	}
}

/* Reads one value starting at the current token; leaves the lexer on the token after it. */
static bool
read_value(Reader *r, const JsonName *field)
{
	Lexer	   *lex = r->lex;

	check_stack_depth();
	switch (lex->type)
	{
		case JSON_TOKEN_OBJECT_START:
		case JSON_TOKEN_ARRAY_START:
			{
				bool		is_object = (lex->type == JSON_TOKEN_OBJECT_START);

				r->h->open(r->h->state, is_object, field, lex->tok_start);
				if (!lex_next(lex))
					return false;
				if (!(is_object ? read_members(r) : read_elements(r)))
					return false;
				/* On the closing bracket now. */
				r->h->close(r->h->state, is_object, lex->tok_end);
				return lex_next(lex);
			}
		case JSON_TOKEN_STRING:
		case JSON_TOKEN_NUMBER:
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
		case JSON_TOKEN_NULL:
			{
				JsonToken	tok;

				tok.start = lex->tok_start;
				tok.len = (int) (lex->tok_end - lex->tok_start);
				tok.type = lex->type;
				r->h->scalar(r->h->state, field, &tok);
				return lex_next(lex);
			}
		case JSON_TOKEN_END:
			return lex_fail(lex, "The text ends where a value belongs.");
		default:
			return lex_fail(lex, "A value is missing.");
	}
}

void
json_stream_read(char *text, size_t len, const char *what, const JsonStreamHandler *handler)
{
	Reader		r;
	Lexer		lex;
	bool		ok;

	if (!tables_ready)
		init_tables();
	memset(&lex, 0, sizeof(lex));
	lex.input = lex.p = text;
	lex.end = text + len;
	lex.line = 1;
	r.lex = &lex;
	r.h = handler;
	ok = lex_next(&lex) && read_value(&r, NULL);
	if (ok && lex.type != JSON_TOKEN_END)
		ok = lex_fail(&lex, "More text follows the end of the value.");
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_JSON_TEXT),
				 errmsg("%s is not valid JSON", what),
				 len == 0 ? errdetail("The body is empty.")
				 : errdetail("%s It is at line %d, byte %d of %zu.", lex.error, lex.line,
							 (int) (lex.tok_start - lex.input) + 1, len)));
}
