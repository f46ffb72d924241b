/*
 * json_layer.h: dbsync's JSON reading (jansson), behind plain C types.
 *
 * jansson.h cannot share a file with utils/builtins.h (both declare
 * json_object), so only json_layer.c includes it; everyone else sees an
 * opaque DbsyncJson. A parsed document lives in a memory context of its own,
 * a child of the one current when it was parsed, and goes with it.
 */
#ifndef DBSYNC_JSON_LAYER_H
#define DBSYNC_JSON_LAYER_H

typedef struct json_t DbsyncJson;

/*
 * Parses a whole JSON text; an ERROR (SQLSTATE 22032) naming `what` when it is
 * malformed or truncated. The caller's `what` says where it came from, such
 * as 'reply of server "flexi" to GET /c/demo/changes.json'.
 */
extern DbsyncJson *dbsync_json_parse(const char *text, size_t len, const char *what);

/* Same, but NULL instead of an ERROR (for error bodies that may not be JSON). */
extern DbsyncJson *dbsync_json_try_parse(const char *text, size_t len);

extern bool dbsync_json_is_object(const DbsyncJson *v);
extern bool dbsync_json_is_array(const DbsyncJson *v);

/* Member of an object; NULL when absent or when v is not an object. */
extern DbsyncJson *dbsync_json_member(const DbsyncJson *v, const char *key);

/* Array length (0 when not an array) and item. */
extern size_t dbsync_json_array_length(const DbsyncJson *v);
extern DbsyncJson *dbsync_json_array_item(const DbsyncJson *v, size_t i);

/* The string's bytes (NUL-terminated), or NULL when v is not a string. */
extern const char *dbsync_json_string(const DbsyncJson *v);

/*
 * An integer given as a JSON string of digits ("123", as Flexi sends every
 * number) or as a JSON integer; false when it is anything else or out of range.
 */
extern bool dbsync_json_int64(const DbsyncJson *v, int64 *result);

/* Exactly an optional '-' and decimal digits, within int64; no spaces, '+' or fraction. */
extern bool dbsync_parse_int64_strict(const char *s, int64 *result);

/* Compact JSON text of v, palloc'd. */
extern char *dbsync_json_dump(const DbsyncJson *v);

#endif
