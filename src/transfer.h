/*
 * transfer.h: running a streamed transfer (an upload or a download of any
 * size) to its end, so that a failed one leaves nothing behind, in a SQL
 * function and in the worker (where no transaction is open meanwhile).
 */
#ifndef DBSYNC_TRANSFER_H
#define DBSYNC_TRANSFER_H

#include "fmgr.h"

#include "http.h"

/* The network part: moves the bytes through the stream, ERROR on failure. */
typedef void (*TransferFn) (void *arg, DbsyncStream *stream);

/* Runs fetch, then finishes the stream (a file sink is renamed into place); a failure abandons it. */
extern int64 transfer_run(DbsyncStream *stream, TransferFn fetch, void *arg, char *sha256_hex);

/*
 * The same into a server file, outside any transaction (the worker): the
 * file and its hash get a resource owner of their own for the time.
 */
extern int64 transfer_to_file_outside_txn(const char *path, TransferFn fetch, void *arg, char *sha256_hex);

/* (bytes, sha256[, large object]) as the composite the calling SQL function declares. */
extern Datum transfer_result(FunctionCallInfo fcinfo, int64 bytes, const char *sha256_hex, Oid loid);

#endif
