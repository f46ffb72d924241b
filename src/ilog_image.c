/*
 * ilog_image.c: the bytes the iLog keeps of a row.
 *
 * An image is a header (uint16: the number of columns it describes, top bit
 * set when a null bitmap follows), a bitmap of the columns present, the null
 * bitmap when any present column is null, then each present non-null value
 * in column order with no alignment: fixed-length values as their attlen
 * bytes, varlena values detoasted (with a one-byte header when they fit),
 * cstrings with their terminating zero. The decoder needs only each
 * column's attlen and attbyval, which the layout keeps even after the table
 * changes.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/tupmacs.h"
#include "common/hashfn.h"
#include "fmgr.h"

#include "ilog.h"

#define IMAGE_HAS_NULLS 0x8000

Datum
ilog_plain_value(Datum value, int16 len)
{
	if (len == -1)
		return PointerGetDatum(pg_detoast_datum_packed((struct varlena *) DatumGetPointer(value)));
	return value;
}

/* Appends one non-null value. */
static void
encode_value(StringInfo buf, const IlogColumn *col, Datum value)
{
	if (col->len > 0 && col->byval)
	{
		union
		{
			int64		i8;
			int32		i4;
			int16		i2;
			char		c;
		}			tmp;

		store_att_byval(&tmp, value, col->len);
		appendBinaryStringInfo(buf, (char *) &tmp, col->len);
	}
	else if (col->len > 0)
		appendBinaryStringInfo(buf, DatumGetPointer(value), col->len);
	else if (col->len == -1)
	{
		struct varlena *v = (struct varlena *) DatumGetPointer(ilog_plain_value(value, -1));

		if (VARATT_IS_SHORT(v))
			appendBinaryStringInfo(buf, (char *) v, VARSIZE_SHORT(v));
		else
		{
			Size		datalen = VARSIZE(v) - VARHDRSZ;

			if (datalen + VARHDRSZ_SHORT <= VARATT_SHORT_MAX)
			{
				char		hdr;

				SET_VARSIZE_1B(&hdr, datalen + VARHDRSZ_SHORT);
				appendStringInfoChar(buf, hdr);
				appendBinaryStringInfo(buf, VARDATA(v), datalen);
			}
			else
				appendBinaryStringInfo(buf, (char *) v, VARSIZE(v));
		}
	}
	else
		appendBinaryStringInfo(buf, DatumGetCString(value), strlen(DatumGetCString(value)) + 1);
}

void
ilog_image_encode(StringInfo buf, int natts, const IlogColumn *cols,
				  const Datum *values, const bool *nulls, const bool *include)
{
	int			maplen = (natts + 7) / 8;
	uint16		header = (uint16) natts;
	int			start;
	bool		any_null = false;
	char	   *maps;

	for (int i = 0; i < natts; i++)
		if (include[i] && nulls[i])
			any_null = true;
	if (any_null)
		header |= IMAGE_HAS_NULLS;
	appendBinaryStringInfo(buf, (char *) &header, sizeof(header));
	/* the bitmaps, filled in place before any value is appended */
	start = buf->len;
	for (int i = 0; i < maplen * (any_null ? 2 : 1); i++)
		appendStringInfoChar(buf, 0);
	maps = buf->data + start;
	for (int i = 0; i < natts; i++)
	{
		if (!include[i])
			continue;
		maps[i / 8] |= 1 << (i % 8);
		if (nulls[i])
			maps[maplen + i / 8] |= 1 << (i % 8);
	}
	for (int i = 0; i < natts; i++)
		if (include[i] && !nulls[i])
			encode_value(buf, &cols[i], values[i]);
}

/* Reads one value at *pos; false when it would run past end. */
static bool
decode_value(const char *data, int *pos, int end, const IlogColumn *col, Datum *value)
{
	const char *p = data + *pos;
	int			left = end - *pos;

	if (col->len > 0)
	{
		if (left < col->len)
			return false;
		if (col->byval)
		{
			union
			{
				int64		i8;
				int32		i4;
				int16		i2;
				char		c;
			}			tmp;

			if (col->len != 1 && col->len != 2 && col->len != 4 && col->len != 8)
				return false;
			memcpy(&tmp, p, col->len);
			*value = fetch_att(&tmp, true, col->len);
		}
		else
		{
			char	   *copy = palloc(col->len);

			memcpy(copy, p, col->len);
			*value = PointerGetDatum(copy);
		}
		*pos += col->len;
		return true;
	}
	if (col->len == -1)
	{
		Size		size;
		char	   *copy;

		if (left < 1)
			return false;
		if (VARATT_IS_1B_E(p))
			return false;			/* images never hold toast pointers */
		if (VARATT_IS_1B(p))
			size = VARSIZE_1B(p);
		else
		{
			uint32		hdr;

			if (left < 4)
				return false;
			memcpy(&hdr, p, sizeof(hdr));
			if (VARATT_IS_4B_C(&hdr))
				return false;		/* nor compressed values */
			size = VARSIZE_4B(&hdr);
		}
		if (size < 1 || size > (Size) left)
			return false;
		copy = palloc(Max(size, VARHDRSZ));
		memcpy(copy, p, size);
		*value = PointerGetDatum(copy);
		*pos += size;
		return true;
	}
	if (col->len == -2)
	{
		const char *zero = memchr(p, '\0', left);

		if (zero == NULL)
			return false;
		*value = CStringGetDatum(pstrdup(p));
		*pos += (zero - p) + 1;
		return true;
	}
	return false;
}

bool
ilog_image_decode(const char *data, int len, int natts, const IlogColumn *cols,
				  Datum *values, bool *nulls, bool *present)
{
	uint16		header;
	int			n;
	int			maplen;
	const unsigned char *pmap;
	const unsigned char *nmap = NULL;
	int			pos;

	for (int i = 0; i < natts; i++)
	{
		values[i] = (Datum) 0;
		nulls[i] = true;
		present[i] = false;
	}
	if (len < (int) sizeof(header))
		return false;
	memcpy(&header, data, sizeof(header));
	n = header & ~IMAGE_HAS_NULLS;
	if (n > natts)
		return false;
	maplen = (n + 7) / 8;
	pos = sizeof(header) + maplen * ((header & IMAGE_HAS_NULLS) ? 2 : 1);
	if (pos > len)
		return false;
	pmap = (const unsigned char *) data + sizeof(header);
	if (header & IMAGE_HAS_NULLS)
		nmap = pmap + maplen;
	for (int i = 0; i < n; i++)
	{
		if (!(pmap[i / 8] & (1 << (i % 8))))
			continue;
		if (cols[i].dropped)
			return false;
		present[i] = true;
		if (nmap != NULL && (nmap[i / 8] & (1 << (i % 8))))
			continue;
		if (!decode_value(data, &pos, len, &cols[i], &values[i]))
			return false;
		nulls[i] = false;
	}
	return pos == len;
}

uint32
ilog_key_hash(int nkeys, const AttrNumber *keys, const IlogColumn *cols,
			  const Datum *values, const bool *nulls)
{
	StringInfoData buf;
	uint32		hash;

	initStringInfo(&buf);
	for (int k = 0; k < nkeys; k++)
	{
		int			i = keys[k] - 1;

		appendStringInfoChar(&buf, nulls[i] ? 0 : 1);
		if (!nulls[i])
			encode_value(&buf, &cols[i], values[i]);
	}
	hash = hash_bytes((unsigned char *) buf.data, buf.len);
	pfree(buf.data);
	return hash;
}
