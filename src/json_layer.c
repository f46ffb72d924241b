/*
 * json_layer.c: the only file that includes jansson.h (see json_layer.h).
 */
#include "postgres.h"

#include <jansson.h>

#include "common/string.h"
#include "utils/memutils.h"

#include "json_layer.h"

/*
 * jansson allocates through these, in a memory context of ours: a document is
 * one context, freed with its parent, and building it costs far less than
 * glibc malloc would. Allocation failures return NULL, which jansson reports
 * as an ordinary error, so no ERROR ever jumps out of jansson.
 */
static MemoryContext alloc_cxt = NULL;
static bool alloc_funcs_set = false;

static void *
json_alloc(size_t size)
{
	return MemoryContextAllocExtended(alloc_cxt ? alloc_cxt : CurrentMemoryContext, size,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

static void
json_free(void *ptr)
{
	if (ptr != NULL)
		pfree(ptr);
}

static void
use_context(MemoryContext cxt)
{
	if (!alloc_funcs_set)
	{
		json_set_alloc_funcs(json_alloc, json_free);
		alloc_funcs_set = true;
	}
	alloc_cxt = cxt;
}

/* Parses into a new context under the current one; NULL (and err) on failure. */
static json_t *
load(const char *text, size_t len, json_error_t *err)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "dbsync JSON document",
											  ALLOCSET_DEFAULT_SIZES);
	json_t	   *root;

	use_context(cxt);
	root = json_loadb(text, len, 0, err);
	use_context(NULL);
	if (root == NULL)
		MemoryContextDelete(cxt);
	return root;
}

DbsyncJson *
dbsync_json_parse(const char *text, size_t len, const char *what)
{
	json_error_t err;
	json_t	   *root = load(text, len, &err);

	if (root == NULL)
	{
		/*
		 * jansson quotes the text where it stopped ("... near '<text>'"): that
		 * can be a piece of a token or a key the reply carried, so only its
		 * words and the position are shown.
		 */
		char	   *quoted = strstr(err.text, " near '");

		if (quoted != NULL)
			*quoted = '\0';
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_JSON_TEXT),
				 errmsg("%s is not valid JSON", what),
				 len == 0 ? errdetail("The body is empty.")
				 : errdetail("%s at line %d, column %d (byte %d of %zu).",
							 err.text, err.line, err.column, err.position, len)));
	}
	return root;
}

DbsyncJson *
dbsync_json_try_parse(const char *text, size_t len)
{
	json_error_t err;

	if (text == NULL || len == 0)
		return NULL;
	return load(text, len, &err);
}

bool
dbsync_json_is_object(const DbsyncJson *v)
{
	return v != NULL && json_is_object(v);
}

bool
dbsync_json_is_array(const DbsyncJson *v)
{
	return v != NULL && json_is_array(v);
}

DbsyncJson *
dbsync_json_member(const DbsyncJson *v, const char *key)
{
	if (v == NULL || !json_is_object(v))
		return NULL;
	return json_object_get(v, key);
}

size_t
dbsync_json_array_length(const DbsyncJson *v)
{
	return (v != NULL && json_is_array(v)) ? json_array_size(v) : 0;
}

DbsyncJson *
dbsync_json_array_item(const DbsyncJson *v, size_t i)
{
	return (v != NULL && json_is_array(v)) ? json_array_get(v, i) : NULL;
}

const char *
dbsync_json_string(const DbsyncJson *v)
{
	return (v != NULL && json_is_string(v)) ? json_string_value(v) : NULL;
}

bool
dbsync_parse_int64_strict(const char *s, int64 *result)
{
	const char *p = s;
	bool		negative = false;
	uint64		acc = 0;

	if (*p == '-')
	{
		negative = true;
		p++;
	}
	if (*p == '\0')
		return false;
	for (; *p; p++)
	{
		if (*p < '0' || *p > '9')
			return false;
		if (acc > (PG_UINT64_MAX - (*p - '0')) / 10)
			return false;
		acc = acc * 10 + (*p - '0');
	}
	if (negative ? acc > (uint64) PG_INT64_MAX + 1 : acc > (uint64) PG_INT64_MAX)
		return false;
	*result = negative ? (int64) (0 - acc) : (int64) acc;
	return true;
}

bool
dbsync_json_int64(const DbsyncJson *v, int64 *result)
{
	const char *s;

	if (v == NULL)
		return false;
	if (json_is_integer(v))
	{
		*result = (int64) json_integer_value(v);
		return true;
	}
	s = dbsync_json_string(v);
	return s != NULL && dbsync_parse_int64_strict(s, result);
}

char *
dbsync_json_dump(const DbsyncJson *v)
{
	char	   *s;

	use_context(CurrentMemoryContext);
	s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	use_context(NULL);
	if (s == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return s;
}
