/*
 * stream_io.h: streams for request and reply bodies (http.h DbsyncStream) to
 * and from server files and large objects, counting bytes and computing a
 * SHA-256 as the bytes pass. Memory stays flat whatever the size.
 */
#ifndef DBSYNC_STREAM_IO_H
#define DBSYNC_STREAM_IO_H

#include "http.h"

/* Opens a server file to send; checks pg_read_server_files first. */
extern DbsyncStream *stream_file_source(const char *path);

/*
 * Writes a server file: into "<path>.partial", renamed to path only by
 * stream_finish, removed by stream_abandon. Checks pg_write_server_files.
 */
extern DbsyncStream *stream_file_sink(const char *path);

/* A large object to send (SELECT privilege needed), or a new one to receive into. */
extern DbsyncStream *stream_lo_source(Oid loid);
extern DbsyncStream *stream_lo_sink(void);
extern Oid	stream_lo_oid(DbsyncStream *s);

/* Reads back len bytes a sink wrote, from offset on (before stream_finish); ERROR if it cannot. */
extern void stream_read_back(DbsyncStream *s, int64 offset, char *buf, size_t len);

/* After a complete transfer: closes (and for a file sink, renames), returns bytes and SHA-256 (hex). */
extern int64 stream_finish(DbsyncStream *s, char *sha256_hex);

/* After a failed one: closes and removes what a sink wrote. Never raises an ERROR. */
extern void stream_abandon(DbsyncStream *s);

#endif
