/*
 * flexi.h: the ABRA Flexi client (Changes API) and the parsing of its replies.
 */
#ifndef DBSYNC_FLEXI_H
#define DBSYNC_FLEXI_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#include "server_options.h"

#define FLEXI_MAX_LIMIT 1000
#define FLEXI_DEFAULT_LIMIT 100

typedef struct FlexiChange
{
	char	   *evidence;		/* faktura-vydana, adresar, ... */
	int64		version;		/* @in-version */
	char	   *operation;		/* create, update or delete */
	Timestamp	changed_at;		/* @timestamp, the server's local time */
	int64		record_id;		/* numeric id */
	List	   *external_ids;	/* code:..., ext:... (char *) */
} FlexiChange;

typedef struct FlexiChangePage
{
	int64		global_version; /* @globalVersion */
	bool		has_next;		/* false when next is "none" */
	int64		next_version;	/* where the listing continues */
	int			nchanges;
	FlexiChange *changes;
} FlexiChangePage;

/* A record of a listing: its id and its JSON object exactly as the server sent it. */
typedef struct FlexiRecord
{
	int64		id;
	char	   *json;			/* NUL-terminated UTF-8 JSON object */
} FlexiRecord;

typedef struct FlexiRecordList
{
	int			nrecords;
	FlexiRecord *records;
} FlexiRecordList;

/* Largest number of ids in one (id in (...)) filter: keeps URLs short. */
#define FLEXI_MAX_IDS_PER_REQUEST 200

/* flexi_client.c: one request each. */
extern FlexiChangePage *flexi_fetch_changes(const DbsyncServer *srv, bool has_start, int64 start,
											int limit, List *evidences);
extern void flexi_set_changes_enabled(const DbsyncServer *srv, bool enable);
extern bool flexi_changes_enabled(const DbsyncServer *srv);
extern int64 flexi_global_version(const DbsyncServer *srv);

/* flexi_records.c: record listings (one request each) and the evidence list. */
extern FlexiRecordList *flexi_fetch_records_by_id(const DbsyncServer *srv, const char *evidence,
												  const int64 *ids, int nids);
extern FlexiRecordList *flexi_fetch_records_after(const DbsyncServer *srv, const char *evidence,
												  int64 after_id, int limit);
extern List *flexi_fetch_evidence_list(const DbsyncServer *srv);
extern FlexiRecordList *flexi_parse_record_list(char *body, size_t len, const char *evidence, const char *what);

/*
 * flexi_parse.c: replies to values; ERROR for anything malformed, never a
 * partial result. A page is parsed in place: its strings point into the body,
 * which it modifies and which must live as long as the page.
 */
extern FlexiChangePage *flexi_parse_change_page(char *body, size_t len, const char *what);
extern bool flexi_parse_status_xml(const char *body, bool *enabled);
extern char *flexi_error_message(const char *body, size_t len);
extern bool flexi_parse_timestamp(const char *s, Timestamp *result);

/* flexi_client.c, shared by the Flexi request files: paths, names of replies, checked requests. */
struct DbsyncHttpRequest;
struct DbsyncHttpResponse;
extern StringInfo flexi_company_path(const DbsyncServer *srv, const char *rest);
extern char *flexi_reply_name(const struct DbsyncHttpRequest *req);
extern void flexi_perform(struct DbsyncHttpRequest *req, struct DbsyncHttpResponse *resp);

#endif
