/*
 * zip_sink.h: a reply stream that passes a ZIP archive on to another stream
 * and checks on the way that it is one: it must start with a ZIP signature
 * (a local file header, or the end record of an empty archive) and end with
 * a ZIP end-of-central-directory record.
 *
 * A reply that does not start like a ZIP (an error body in JSON, an HTML
 * page) is never passed on: its first 64 kB are kept in memory, so that the
 * caller can show what the service said.
 */
#ifndef DBSYNC_ZIP_SINK_H
#define DBSYNC_ZIP_SINK_H

#include "http.h"

extern DbsyncStream *zip_sink_wrap(DbsyncStream *inner, const char *what);

/* Forgets what came (for a retried request); only before anything was passed on. */
extern void zip_sink_restart(DbsyncStream *zip);

/* True when the reply started like a ZIP (and so went on to the inner stream). */
extern bool zip_sink_started(DbsyncStream *zip);

/* The kept start of a reply that was not a ZIP. */
extern const char *zip_sink_kept(DbsyncStream *zip, size_t *len);

/* After a complete transfer: ERROR (SQLSTATE 22000) unless it was a whole ZIP. */
extern void zip_sink_check_end(DbsyncStream *zip);

#endif
