/*
 * sha256_thread.h: a SHA-256 computed on a helper thread, so that hashing a
 * multi-GiB transfer runs beside the network and disk work instead of after
 * each chunk of it (measured: 1.3-1.5 s of a 2 GiB download on one thread).
 *
 * The bytes are copied into a ring buffer; the thread hashes them with
 * OpenSSL's own context (no PostgreSQL memory, resource owner or signal
 * handling is touched off the main thread). feed() may be called from
 * libcurl's callbacks: nothing here raises an ERROR after start.
 */
#ifndef DBSYNC_SHA256_THREAD_H
#define DBSYNC_SHA256_THREAD_H

#include <stdbool.h>
#include <stddef.h>

typedef struct Sha256Thread Sha256Thread;

#define SHA256_HEX_LENGTH 64

/* Starts the thread; NULL if it could not be (the caller reports it). */
extern Sha256Thread *sha256_thread_start(void);

/* Hands over n bytes (copied); waits while the ring is full. False if hashing failed. */
extern bool sha256_thread_feed(Sha256Thread *t, const void *buf, size_t n);

/* Forgets what was fed (a rewound upload starts its hash again). */
extern bool sha256_thread_restart(Sha256Thread *t);

/* Waits for the thread, writes the digest as 64 hex digits and a NUL, frees. False on failure. */
extern bool sha256_thread_finish(Sha256Thread *t, char *hex);

/* Stops the thread and frees, without a digest. Safe with NULL. */
extern void sha256_thread_discard(Sha256Thread *t);

#endif
