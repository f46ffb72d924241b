/*
 * transfer.c: see transfer.h.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/resowner.h"

#include "stream_io.h"
#include "transfer.h"

int64
transfer_run(DbsyncStream *stream, TransferFn fetch, void *arg, char *sha256_hex)
{
	volatile int64 bytes = 0;

	PG_TRY();
	{
		fetch(arg, stream);
		bytes = stream_finish(stream, sha256_hex);
	}
	PG_CATCH();
	{
		stream_abandon(stream);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return bytes;
}

static void
release_owner(ResourceOwner owner, bool commit)
{
	ResourceOwnerRelease(owner, RESOURCE_RELEASE_BEFORE_LOCKS, commit, false);
	ResourceOwnerRelease(owner, RESOURCE_RELEASE_LOCKS, commit, false);
	ResourceOwnerRelease(owner, RESOURCE_RELEASE_AFTER_LOCKS, commit, false);
	ResourceOwnerDelete(owner);
}

int64
transfer_to_file_outside_txn(const char *path, TransferFn fetch, void *arg, char *sha256_hex)
{
	ResourceOwner saved_owner = CurrentResourceOwner;
	ResourceOwner owner = ResourceOwnerCreate(NULL, "dbsync transfer");
	int64		bytes;

	CurrentResourceOwner = owner;
	PG_TRY();
	{
		bytes = transfer_run(stream_file_sink(path), fetch, arg, sha256_hex);
	}
	PG_CATCH();
	{
		CurrentResourceOwner = saved_owner;
		release_owner(owner, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	CurrentResourceOwner = saved_owner;
	release_owner(owner, true);
	return bytes;
}

Datum
transfer_result(FunctionCallInfo fcinfo, int64 bytes, const char *sha256_hex, Oid loid)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum(bytes);
	values[1] = CStringGetTextDatum(sha256_hex);
	if (desc->natts > 2)
	{
		values[2] = ObjectIdGetDatum(loid);
		nulls[2] = !OidIsValid(loid);
	}
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls));
}
