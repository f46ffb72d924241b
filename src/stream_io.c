/*
 * stream_io.c: file and large-object streams (see stream_io.h).
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_authid.h"
#include "libpq/libpq-fs.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/large_object.h"
#include "utils/acl.h"
#include "utils/memutils.h"

#include "sha256_thread.h"
#include "stream_io.h"

typedef enum StreamKind
{
	FILE_SOURCE,
	FILE_SINK,
	LO_SOURCE,
	LO_SINK
} StreamKind;

typedef struct IoStream
{
	DbsyncStream base;			/* first: the HTTP core sees only this */
	StreamKind	kind;
	char	   *path;			/* file streams: the file as named */
	char	   *partial;		/* file sink: where it is written first */
	int			fd;
	Oid			loid;
	LargeObjectDesc *lo;
	int64		bytes;
	Sha256Thread *sha;			/* hashes beside the transfer */
	int			saved_errno;	/* file failure */
	ErrorData  *saved_error;	/* large-object failure */
	bool		finished;
} IoStream;

static void
require_role(Oid role, const char *what)
{
	if (!has_privs_of_role(GetUserId(), role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s server files", what),
				 errhint("Only superusers and roles with the privileges of %s may; a large object works for others.",
						 role == ROLE_PG_READ_SERVER_FILES ? "pg_read_server_files" : "pg_write_server_files")));
}

static void
require_absolute(const char *path)
{
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("file path must be absolute: \"%s\"", path)));
}

static void
hash_init(IoStream *s)
{
	s->sha = sha256_thread_start();
	if (s->sha == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("could not start a SHA-256 thread")));
}

/* In libcurl's callbacks: count and hash; false if hashing failed. */
static bool
account(IoStream *s, const char *buf, size_t n)
{
	s->bytes += n;
	return sha256_thread_feed(s->sha, buf, n);
}

static bool
file_read(DbsyncStream *base, char *buf, size_t max, size_t *n)
{
	IoStream   *s = (IoStream *) base;
	ssize_t		r;

	do
		r = read(s->fd, buf, max);
	while (r < 0 && errno == EINTR);
	if (r < 0)
	{
		s->saved_errno = errno;
		return false;
	}
	*n = (size_t) r;
	return account(s, buf, *n);
}

static bool
file_rewind(DbsyncStream *base)
{
	IoStream   *s = (IoStream *) base;

	if (lseek(s->fd, 0, SEEK_SET) < 0)
		return false;
	s->bytes = 0;
	return sha256_thread_restart(s->sha);
}

static bool
file_write(DbsyncStream *base, const char *buf, size_t n)
{
	IoStream   *s = (IoStream *) base;
	size_t		done = 0;

	while (done < n)
	{
		ssize_t		w = write(s->fd, buf + done, n - done);

		if (w < 0)
		{
			if (errno == EINTR)
				continue;
			s->saved_errno = errno;
			return false;
		}
		done += w;
	}
	return account(s, buf, n);
}

static pg_attribute_noreturn() void
file_throw(DbsyncStream *base)
{
	IoStream   *s = (IoStream *) base;

	errno = s->saved_errno;
	if (s->saved_errno == 0)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not compute a SHA-256")));
	ereport(ERROR,
			(errcode_for_file_access(),
			 errmsg("could not %s file \"%s\": %m", s->kind == FILE_SOURCE ? "read" : "write", s->path)));
}

static IoStream *
new_stream(StreamKind kind)
{
	IoStream   *s = palloc0(sizeof(IoStream));

	s->kind = kind;
	s->fd = -1;
	return s;
}

DbsyncStream *
stream_file_source(const char *path)
{
	IoStream   *s;
	struct stat st;

	require_role(ROLE_PG_READ_SERVER_FILES, "read");
	require_absolute(path);
	s = new_stream(FILE_SOURCE);
	s->path = pstrdup(path);
	/* A transient file is closed by the transaction's end, even after an ERROR. */
	s->fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (s->fd < 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not open file \"%s\" for reading: %m", path)));
	if (fstat(s->fd, &st) < 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not stat file \"%s\": %m", path)));
	if (!S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a regular file", path)));
	s->base.length = st.st_size;
	s->base.read = file_read;
	s->base.rewind = file_rewind;
	s->base.throw_error = file_throw;
	hash_init(s);				/* last: nothing after it raises an ERROR */
	return &s->base;
}

/*
 * The partial file this backend is writing: removed if the backend exits in
 * the middle (pg_terminate_backend, shutdown), where no ERROR cleanup runs.
 */
static char active_partial[MAXPGPATH];
static bool exit_hook_set = false;

static void
remove_active_partial(int code, Datum arg)
{
	if (active_partial[0] != '\0')
		(void) unlink(active_partial);
	active_partial[0] = '\0';
}

DbsyncStream *
stream_file_sink(const char *path)
{
	IoStream   *s;

	require_role(ROLE_PG_WRITE_SERVER_FILES, "write");
	require_absolute(path);
	s = new_stream(FILE_SINK);
	s->path = pstrdup(path);
	s->partial = psprintf("%s.partial", path);
	if (strlen(s->partial) >= MAXPGPATH)
		ereport(ERROR, (errcode(ERRCODE_NAME_TOO_LONG), errmsg("file path is too long: \"%s\"", path)));
	/* Read and write: a ZIP is checked by reading its end back (stream_read_back). */
	s->fd = OpenTransientFile(s->partial, O_RDWR | O_CREAT | PG_BINARY);
	if (s->fd < 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not create file \"%s\": %m", s->partial)));

	/*
	 * A lock on the partial file tells a running download from one a crash
	 * left behind: the kernel drops it with its process, whatever killed it.
	 */
	if (flock(s->fd, LOCK_EX | LOCK_NB) != 0)
	{
		CloseTransientFile(s->fd);
		s->fd = -1;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("another download to \"%s\" is running", path)));
	}
	/*
	 * Empty what a dead process left; a new file is not truncated: on ext4,
	 * truncating to zero makes close() write the whole file back (measured:
	 * a second on 2 GiB).
	 */
	{
		struct stat st;

		if (fstat(s->fd, &st) != 0)
			ereport(ERROR, (errcode_for_file_access(), errmsg("could not stat file \"%s\": %m", s->partial)));
		if (st.st_size > 0 && ftruncate(s->fd, 0) != 0)
			ereport(ERROR, (errcode_for_file_access(), errmsg("could not truncate file \"%s\": %m", s->partial)));
	}

	if (!exit_hook_set)
	{
		before_shmem_exit(remove_active_partial, (Datum) 0);
		exit_hook_set = true;
	}
	strlcpy(active_partial, s->partial, MAXPGPATH);
	s->base.write = file_write;
	s->base.throw_error = file_throw;
	hash_init(s);				/* last: nothing after it raises an ERROR */
	return &s->base;
}

/*
 * Large objects are read and written with PostgreSQL's functions, which may
 * raise an ERROR: inside libcurl's callbacks it is caught, kept, and raised
 * again by lo_throw once libcurl has returned (nothing else touches the
 * database in between; the transaction then aborts).
 */
static bool
lo_io(IoStream *s, char *rbuf, const char *wbuf, size_t len, size_t *n)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		if (rbuf != NULL)
			*n = inv_read(s->lo, rbuf, (int) Min(len, (size_t) (1 << 20)));
		else
			*n = inv_write(s->lo, wbuf, (int) len);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		s->saved_error = CopyErrorData();
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

static bool
lo_read_cb(DbsyncStream *base, char *buf, size_t max, size_t *n)
{
	IoStream   *s = (IoStream *) base;

	return lo_io(s, buf, NULL, max, n) && account(s, buf, *n);
}

static bool
lo_write_cb(DbsyncStream *base, const char *buf, size_t n)
{
	IoStream   *s = (IoStream *) base;
	size_t		written = 0;

	while (written < n)
	{
		size_t		w = 0;

		if (!lo_io(s, NULL, buf + written, Min(n - written, (size_t) (1 << 20)), &w))
			return false;
		written += w;
	}
	return account(s, buf, n);
}

static pg_attribute_noreturn() void
lo_throw(DbsyncStream *base)
{
	IoStream   *s = (IoStream *) base;

	if (s->saved_error != NULL)
		ReThrowError(s->saved_error);
	ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not compute a SHA-256")));
}

DbsyncStream *
stream_lo_source(Oid loid)
{
	IoStream   *s = new_stream(LO_SOURCE);

	s->loid = loid;
	/* Checks SELECT on the large object. */
	s->lo = inv_open(loid, INV_READ, CurrentMemoryContext);
	s->base.length = inv_seek(s->lo, 0, SEEK_END);
	inv_seek(s->lo, 0, SEEK_SET);
	s->base.read = lo_read_cb;
	s->base.throw_error = lo_throw;
	hash_init(s);				/* last: nothing after it raises an ERROR */
	return &s->base;
}

DbsyncStream *
stream_lo_sink(void)
{
	IoStream   *s = new_stream(LO_SINK);

	s->loid = inv_create(InvalidOid);
	s->lo = inv_open(s->loid, INV_WRITE, CurrentMemoryContext);
	s->base.write = lo_write_cb;
	s->base.throw_error = lo_throw;
	hash_init(s);				/* last: nothing after it raises an ERROR */
	return &s->base;
}

Oid
stream_lo_oid(DbsyncStream *base)
{
	return ((IoStream *) base)->loid;
}

void
stream_read_back(DbsyncStream *base, int64 offset, char *buf, size_t len)
{
	IoStream   *s = (IoStream *) base;
	size_t		done = 0;

	if (s->kind == LO_SINK)
	{
		inv_seek(s->lo, offset, SEEK_SET);
		while (done < len)
		{
			int			n = inv_read(s->lo, buf + done, (int) (len - done));

			if (n <= 0)
				break;
			done += n;
		}
		inv_seek(s->lo, 0, SEEK_END);
	}
	else if (s->kind == FILE_SINK)
	{
		while (done < len)
		{
			ssize_t		n = pread(s->fd, buf + done, len - done, offset + done);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				ereport(ERROR, (errcode_for_file_access(), errmsg("could not read file \"%s\": %m", s->partial)));
			if (n == 0)
				break;
			done += n;
		}
	}
	if (done != len)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not read back %zu bytes of what was received (got %zu)", len, done)));
}

static void
hex_digest(IoStream *s, char *hex)
{
	bool		ok = sha256_thread_finish(s->sha, hex);

	s->sha = NULL;
	if (!ok)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not finish a SHA-256")));
}

int64
stream_finish(DbsyncStream *base, char *sha256_hex)
{
	IoStream   *s = (IoStream *) base;

	hex_digest(s, sha256_hex);
	if (s->kind == FILE_SINK)
	{
		if (pg_fsync(s->fd) != 0)
			ereport(ERROR, (errcode_for_file_access(), errmsg("could not fsync file \"%s\": %m", s->partial)));
	}
	if (s->fd >= 0 && CloseTransientFile(s->fd) != 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not close file \"%s\": %m", s->partial ? s->partial : s->path)));
	s->fd = -1;
	if (s->kind == FILE_SINK && rename(s->partial, s->path) != 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not rename file \"%s\" to \"%s\": %m", s->partial, s->path)));
	if (s->kind == FILE_SINK)
		active_partial[0] = '\0';
	if (s->lo != NULL)
	{
		inv_close(s->lo);
		/* inv_api keeps pg_largeobject open for the transaction; lo_open's callers close it at its end. */
		close_lo_relation(true);
	}
	s->lo = NULL;
	s->finished = true;
	return s->bytes;
}

void
stream_abandon(DbsyncStream *base)
{
	IoStream   *s = (IoStream *) base;

	if (s == NULL || s->finished)
		return;
	sha256_thread_discard(s->sha);
	s->sha = NULL;
	/* A file is closed here (the worker streams outside transactions); a new large object goes with the transaction. */
	if (s->fd >= 0)
		(void) CloseTransientFile(s->fd);
	s->fd = -1;
	if (s->kind == FILE_SINK && s->partial != NULL)
	{
		(void) unlink(s->partial);
		active_partial[0] = '\0';
	}
}
