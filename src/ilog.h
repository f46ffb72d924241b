/*
 * ilog.h: the transaction log (iLog) of tracked tables.
 *
 * The trigger stores what changed as compact images (ilog_image.c) of the
 * table's own column values, described once per table shape by a layout
 * row (ilog_layout.c); jsonb is made only when the log is read
 * (ilog_decode.c). A reader never misses an entry because it only returns
 * versions below the horizon of the transactions still writing
 * (ilog_horizon.c).
 */
#ifndef DBSYNC_ILOG_H
#define DBSYNC_ILOG_H

#include "access/attnum.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/relcache.h"

/* Operation codes stored in dbsync.ilog.op. */
#define ILOG_INSERT 'I'
#define ILOG_UPDATE 'U'
#define ILOG_DELETE 'D'
#define ILOG_TRUNCATE 'T'

/* One column as an image needs it. */
typedef struct IlogColumn
{
	int16		len;			/* attlen */
	bool		byval;
	bool		dropped;		/* or excluded from the log */
} IlogColumn;

/* A table shape as the decoder sees it (a row of dbsync.ilog_layout). */
typedef struct IlogLayout
{
	int32		id;
	int			natts;
	IlogColumn *cols;			/* by attnum - 1 */
	char	  **names;			/* NULL when dropped */
	Oid		   *types;
	int32	   *typmods;
	FmgrInfo   *out;			/* output functions, filled when first needed */
	Oid		   *typioparams;
	int			nkeys;			/* the key columns, in key order */
	AttrNumber *keys;
	bool		whole_row;		/* no replica identity index: every logged column is the key */
} IlogLayout;

/* ilog_image.c: images are column values without alignment, after a small header. */
extern void ilog_image_encode(StringInfo buf, int natts, const IlogColumn *cols,
							  const Datum *values, const bool *nulls, const bool *include);
/* Decodes into values/nulls/present (natts each); false when the bytes are not an image of this layout. */
extern bool ilog_image_decode(const char *data, int len, int natts, const IlogColumn *cols,
							  Datum *values, bool *nulls, bool *present);
/* The hash of a key: the encoded values of its columns, in key order. */
extern uint32 ilog_key_hash(int nkeys, const AttrNumber *keys, const IlogColumn *cols,
							const Datum *values, const bool *nulls);
/* A value as images store it: detoasted, uncompressed. */
extern Datum ilog_plain_value(Datum value, int16 len);

/* ilog_layout.c: the writer's layout of a physical table, and the decoder's layout by id. */
typedef struct IlogRelInfo
{
	Oid			relid;			/* the physical table */
	Oid			trigger;		/* pg_trigger oid the info was read from */
	Oid			tracked;		/* the tracked table: relid, or a partitioned ancestor */
	bool		log_unchanged;	/* log updates that change nothing */
	int32		layout_id;
	int			natts;
	IlogColumn *cols;			/* excluded columns marked dropped */
	int			nkeys;
	AttrNumber *keys;
	bool		whole_row;
} IlogRelInfo;

struct TriggerData;
extern IlogRelInfo *ilog_rel_info(Relation rel, struct TriggerData *td);
extern IlogLayout *ilog_layout_get(int32 id);
extern int32 *ilog_layout_ids(Oid tbl, int *n);
extern void ilog_layout_subxact_abort(SubTransactionId subid);
extern void ilog_layout_xact_end(bool committed);
/* Runs SPI as the owner of the log (writers have no rights on it). */
extern Oid	ilog_owner(void);

/*
 * ilog_decode.c: the text of a value must not depend on who reads it (a
 * replica applies it): while decoding, dates and times are ISO in UTC,
 * intervals in the postgres style, bytea in hex and floats exact.
 */
typedef struct IlogOutputStyle
{
	int			date_style;
	int			date_order;
	int			interval_style;
	int			bytea;
	int			float_digits;
	struct pg_tz *tz;
} IlogOutputStyle;
extern void ilog_output_style_fix(IlogOutputStyle *saved);
extern void ilog_output_style_restore(const IlogOutputStyle *saved);
/* Fills the layout's output functions (once). */
extern void ilog_layout_io(IlogLayout *l);

/* ilog_horizon.c: which versions every reader may return. */
extern Size ilog_horizon_shmem_size(void);
extern void ilog_horizon_shmem_init(void);
extern void ilog_horizon_begin(void);	/* before the transaction's first version */
extern void ilog_horizon_first(int64 version);
extern int64 ilog_horizon_compute(Oid seqoid);
extern void ilog_xact_callbacks_init(void);

/* ilog_store.c: the log's relations, and writing a row to them. */
extern Oid	ilog_namespace(void);
extern Oid	ilog_relation(const char *name);	/* InvalidOid when missing */
extern void ilog_store_row(Oid relid, int natts, Datum *values, bool *nulls);
extern void ilog_store_xact_end(void);

/* ilog_trigger.c: per-transaction state */
extern void ilog_trigger_xact_end(void);
extern void ilog_trigger_subxact_abort(SubTransactionId subid);
extern bool ilog_trigger_xact_logged(void);

#endif
