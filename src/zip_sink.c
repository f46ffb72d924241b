/*
 * zip_sink.c: see zip_sink.h. The end record (PK\5\6, 22 bytes plus a
 * comment of up to 65535) is looked for in the last bytes, read back from
 * the file or large object once the transfer is complete: keeping a window
 * of them as they pass would copy half of every 128 kB piece.
 */
#include "postgres.h"

#include "stream_io.h"
#include "zip_sink.h"

#define KEEP_LIMIT (64 * 1024)
#define EOCD_SIZE 22
#define TAIL_SIZE (EOCD_SIZE + 65535)

typedef struct ZipSink
{
	DbsyncStream base;			/* first: the HTTP core sees only this */
	DbsyncStream *inner;
	const char *what;
	bool		started;		/* the first 4 bytes were a ZIP signature */
	bool		refused;		/* not a ZIP and longer than we keep */
	char		head[4];
	size_t		head_len;
	char	   *kept;			/* a reply that is not a ZIP: its start */
	size_t		kept_len;
	uint64		total;			/* bytes passed on */
} ZipSink;

static bool
is_zip_signature(const char *p)
{
	return p[0] == 'P' && p[1] == 'K' &&
		((p[2] == 3 && p[3] == 4) || (p[2] == 5 && p[3] == 6));
}

static bool
pass_on(ZipSink *z, const char *buf, size_t n)
{
	z->total += n;
	return z->inner->write(z->inner, buf, n);
}

static bool
zip_write(DbsyncStream *base, const char *buf, size_t n)
{
	ZipSink    *z = (ZipSink *) base;

	if (z->started)
		return pass_on(z, buf, n);
	if (z->kept != NULL)
	{
		if (z->kept_len + n > KEEP_LIMIT)
		{
			z->refused = true;
			return false;
		}
		memcpy(z->kept + z->kept_len, buf, n);
		z->kept_len += n;
		return true;
	}
	/* The signature may come in pieces. */
	while (z->head_len < 4 && n > 0)
	{
		z->head[z->head_len++] = *buf++;
		n--;
	}
	if (z->head_len < 4)
		return true;
	if (is_zip_signature(z->head))
	{
		z->started = true;
		return pass_on(z, z->head, 4) && (n == 0 || pass_on(z, buf, n));
	}
	/* Not a ZIP: kept in memory, nothing reaches the file. */
	z->kept = palloc(KEEP_LIMIT);
	memcpy(z->kept, z->head, 4);
	z->kept_len = 4;
	return zip_write(base, buf, n);
}

static pg_attribute_noreturn() void
zip_throw(DbsyncStream *base)
{
	ZipSink    *z = (ZipSink *) base;

	if (z->refused)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s is not a ZIP file", z->what),
				 errdetail("It starts with \"%s\".", pnstrdup(z->kept, Min(z->kept_len, 60)))));
	z->inner->throw_error(z->inner);
}

DbsyncStream *
zip_sink_wrap(DbsyncStream *inner, const char *what)
{
	ZipSink    *z = palloc0(sizeof(ZipSink));

	z->inner = inner;
	z->what = pstrdup(what);
	z->base.write = zip_write;
	z->base.throw_error = zip_throw;
	return &z->base;
}

void
zip_sink_restart(DbsyncStream *base)
{
	ZipSink    *z = (ZipSink *) base;

	Assert(!z->started);
	z->head_len = 0;
	z->kept_len = 0;
	if (z->kept != NULL)
		pfree(z->kept);
	z->kept = NULL;
	z->refused = false;
}

bool
zip_sink_started(DbsyncStream *base)
{
	return ((ZipSink *) base)->started;
}

const char *
zip_sink_kept(DbsyncStream *base, size_t *len)
{
	ZipSink    *z = (ZipSink *) base;

	*len = z->kept_len;
	return z->kept;
}

void
zip_sink_check_end(DbsyncStream *base)
{
	ZipSink    *z = (ZipSink *) base;
	size_t		have = (size_t) Min(z->total, (uint64) TAIL_SIZE);
	char	   *last = palloc(have);
	bool		found = false;

	if (!z->started)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s is not a ZIP file", z->what),
				 z->kept_len > 0 ? errdetail("It starts with \"%s\".", pnstrdup(z->kept, Min(z->kept_len, 60)))
				 : errdetail("It is empty.")));
	stream_read_back(z->inner, (int64) (z->total - have), last, have);
	/* The end record, its comment running exactly to the end. */
	for (size_t at = have >= EOCD_SIZE ? have - EOCD_SIZE + 1 : 0; at-- > 0 && !found;)
	{
		const unsigned char *p = (const unsigned char *) last + at;

		if (p[0] == 'P' && p[1] == 'K' && p[2] == 5 && p[3] == 6 &&
			at + EOCD_SIZE + (p[20] | (p[21] << 8)) == have)
			found = true;
	}
	pfree(last);
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s is not a whole ZIP file: its end record is missing", z->what),
				 errdetail("%llu bytes came; a ZIP file ends with its central directory.",
						   (unsigned long long) z->total)));
}
