/*
 * bg_txn.c: transaction steps of background work (see bg_txn.h).
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/snapmgr.h"

#include "bg_txn.h"

void
txn_scope_init(TxnScope *tx, bool own)
{
	tx->own = own;
	tx->work_cxt = CurrentMemoryContext;
	tx->open = false;
}

void
txn_begin(TxnScope *tx)
{
	Assert(!tx->open);
	if (tx->own)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	tx->open = true;
	/* SPI's own context is freed by SPI_finish: keep working in the caller's. */
	MemoryContextSwitchTo(tx->work_cxt);
}

void
txn_commit(TxnScope *tx)
{
	Assert(tx->open);
	SPI_finish();
	if (tx->own)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_stat(false);
	}
	tx->open = false;
	MemoryContextSwitchTo(tx->work_cxt);
}

void
txn_abort_after_error(TxnScope *tx)
{
	Assert(tx->own);
	/* Aborting also cleans up SPI and the active snapshot. */
	AbortCurrentTransaction();
	tx->open = false;
	MemoryContextSwitchTo(tx->work_cxt);
}

void
txn_part_begin(TxnScope *tx, TxnPart *part)
{
	part->cxt = tx->work_cxt;
	part->owner = CurrentResourceOwner;
	if (!tx->own)
		BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(tx->work_cxt);
}

void
txn_part_end(TxnScope *tx, TxnPart *part)
{
	if (!tx->own)
	{
		ReleaseCurrentSubTransaction();
		CurrentResourceOwner = part->owner;
	}
	MemoryContextSwitchTo(part->cxt);
}

void
txn_part_abort(TxnScope *tx, TxnPart *part)
{
	if (tx->own)
		AbortCurrentTransaction();
	else
	{
		/* also ends SPI connected inside the part */
		RollbackAndReleaseCurrentSubTransaction();
		CurrentResourceOwner = part->owner;
	}
	tx->open = false;
	MemoryContextSwitchTo(part->cxt);
}

SPIPlanPtr
txn_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types)
{
	if (*cache == NULL)
	{
		MemoryContext cxt = CurrentMemoryContext;
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		MemoryContextSwitchTo(cxt);
		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*cache = p;
	}
	return *cache;
}

int
txn_execute(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, 0);

	MemoryContextSwitchTo(cxt);
	return rc;
}
