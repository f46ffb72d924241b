/*
 * bg_txn.h: the one place where dbsync's background work begins and commits
 * transactions.
 *
 * Work that reaches the network is written as short steps, each bracketed by
 * txn_begin / txn_commit, with the network calls between them. In the
 * background worker each step is its own transaction, so none is open while
 * waiting on a remote system and a crash repeats at most the step in flight.
 * Called from SQL, the steps run inside the caller's transaction and only
 * connect SPI.
 */
#ifndef DBSYNC_BG_TXN_H
#define DBSYNC_BG_TXN_H

#include "executor/spi.h"
#include "utils/resowner.h"

typedef struct TxnScope
{
	bool		own;			/* start and commit transactions (worker) */
	MemoryContext work_cxt;		/* where the caller's data lives across steps */
	bool		open;
} TxnScope;

extern void txn_scope_init(TxnScope *tx, bool own);

/* Starts a step: a transaction (when own) with a snapshot, and SPI. Stays in work_cxt. */
extern void txn_begin(TxnScope *tx);

/* Ends a step: SPI, then commit (when own). */
extern void txn_commit(TxnScope *tx);

/* After an ERROR in the worker: abort whatever step was open. */
extern void txn_abort_after_error(TxnScope *tx);

/*
 * A part of the work whose ERROR is recorded rather than ending the whole
 * (one replication target among several). Called from SQL, a part is a
 * subtransaction; in the worker, its steps are transactions already.
 */
typedef struct TxnPart
{
	MemoryContext cxt;
	ResourceOwner owner;
} TxnPart;

extern void txn_part_begin(TxnScope *tx, TxnPart *part);
extern void txn_part_end(TxnScope *tx, TxnPart *part);
/* After an ERROR in the part, with the error already copied and flushed. */
extern void txn_part_abort(TxnScope *tx, TxnPart *part);

/*
 * Runs a prepared statement and returns SPI's result code, staying in the
 * caller's memory context (SPI would leave the caller in its own, which
 * txn_commit frees).
 */
extern int	txn_execute(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only);

/* A statement prepared once per backend and kept across steps. */
extern SPIPlanPtr txn_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types);

#endif
