/*
 * dbsync.h: settings and version shared by every part of dbsync.
 */
#ifndef DBSYNC_H
#define DBSYNC_H

/* DBSYNC_VERSION (default_version of dbsync.control) comes from the Makefile. */
#define DBSYNC_USER_AGENT "dbsync/" DBSYNC_VERSION

/* Defaults for servers that do not set their own (GUCs, in milliseconds and bytes). */
extern int	dbsync_connect_timeout_ms;
extern int	dbsync_timeout_ms;
extern int	dbsync_max_response_size;

#endif
