/*
 * ilog_decode.c: reading the iLog back as jsonb.
 *
 * dbsync.ilog_decode() turns an entry's images into its key, before and
 * after objects and changed columns (numbers as JSON numbers, booleans as
 * booleans, json as json, everything else as the type's text form);
 * dbsync.ilog_key_probe() turns a key given as jsonb into the hash the
 * entries of each layout carry; dbsync_ilog_read() returns the entries
 * after a version, up to the horizon (ilog_horizon.c).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/array.h"
#include "utils/bytea.h"
#include "utils/float.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "ilog.h"

PG_FUNCTION_INFO_V1(dbsync_ilog_decode);
PG_FUNCTION_INFO_V1(dbsync_ilog_key_probe);
PG_FUNCTION_INFO_V1(dbsync_ilog_read);

/* See IlogOutputStyle in ilog.h. */
static pg_tz *utc = NULL;

void
ilog_output_style_fix(IlogOutputStyle *saved)
{
	saved->date_style = DateStyle;
	saved->date_order = DateOrder;
	saved->interval_style = IntervalStyle;
	saved->bytea = bytea_output;
	saved->float_digits = extra_float_digits;
	saved->tz = session_timezone;
	if (utc == NULL)
		utc = pg_tzset("UTC");
	DateStyle = USE_ISO_DATES;
	DateOrder = DATEORDER_YMD;
	IntervalStyle = INTSTYLE_POSTGRES;
	bytea_output = BYTEA_OUTPUT_HEX;
	extra_float_digits = 1;
	if (utc != NULL)
		session_timezone = utc;
}

void
ilog_output_style_restore(const IlogOutputStyle *saved)
{
	DateStyle = saved->date_style;
	DateOrder = saved->date_order;
	IntervalStyle = saved->interval_style;
	bytea_output = saved->bytea;
	extra_float_digits = saved->float_digits;
	session_timezone = saved->tz;
}

/* Output functions of the layout's columns, looked up once. */
void
ilog_layout_io(IlogLayout *l)
{
	MemoryContext old;

	if (l->out != NULL)
		return;
	old = MemoryContextSwitchTo(GetMemoryChunkContext(l->cols));
	l->out = palloc0(sizeof(FmgrInfo) * Max(l->natts, 1));
	l->typioparams = palloc0(sizeof(Oid) * Max(l->natts, 1));
	for (int i = 0; i < l->natts; i++)
	{
		Oid			func;
		bool		isvarlena;

		if (l->cols[i].dropped)
			continue;
		if (!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(l->types[i])))
			continue;			/* the type was dropped since: see push_value */
		getTypeOutputInfo(l->types[i], &func, &isvarlena);
		fmgr_info_cxt(func, &l->out[i], CurrentMemoryContext);
	}
	MemoryContextSwitchTo(old);
}

static void
push_key(JsonbParseState **st, const char *name)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) name;
	k.val.string.len = strlen(name);
	pushJsonbValue(st, WJB_KEY, &k);
}

static void
push_jsonb(JsonbParseState **st, Jsonb *j)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(j))
	{
		JsonbValue	scalar;

		(void) JsonbExtractScalar(&j->root, &scalar);
		pushJsonbValue(st, WJB_VALUE, &scalar);
		return;
	}
	v.type = jbvBinary;
	v.val.binary.data = &j->root;
	v.val.binary.len = VARSIZE(j) - VARHDRSZ;
	pushJsonbValue(st, WJB_VALUE, &v);
}

static void
push_value(JsonbParseState **st, IlogLayout *l, int i, Datum value, bool isnull)
{
	JsonbValue	v;
	Oid			base;
	char	   *text;

	if (isnull)
	{
		v.type = jbvNull;
		pushJsonbValue(st, WJB_VALUE, &v);
		return;
	}
	if (!OidIsValid(l->out[i].fn_oid))
	{
		v.type = jbvString;
		v.val.string.val = "(a value of a dropped type)";
		v.val.string.len = strlen(v.val.string.val);
		pushJsonbValue(st, WJB_VALUE, &v);
		return;
	}
	base = getBaseType(l->types[i]);
	if (base == JSONBOID)
	{
		push_jsonb(st, DatumGetJsonbP(value));
		return;
	}
	text = OutputFunctionCall(&l->out[i], value);
	switch (base)
	{
		case JSONOID:
			push_jsonb(st, DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text))));
			return;
		case BOOLOID:
			v.type = jbvBool;
			v.val.boolean = DatumGetBool(value);
			break;
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			if (strcmp(text, "NaN") != 0 && strstr(text, "Infinity") == NULL)
			{
				v.type = jbvNumeric;
				v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
																	ObjectIdGetDatum(InvalidOid),
																	Int32GetDatum(-1)));
				break;
			}
			/* FALLTHROUGH */
		default:
			v.type = jbvString;
			v.val.string.val = text;
			v.val.string.len = strlen(text);
			break;
	}
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* A jsonb object of the columns chosen by want[] (NULL: every present one). */
static Datum
columns_object(IlogLayout *l, const Datum *values, const bool *nulls, const bool *present, const bool *want)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < l->natts; i++)
	{
		if (!present[i] || (want != NULL && !want[i]))
			continue;
		push_key(&st, l->names[i]);
		push_value(&st, l, i, values[i], nulls[i]);
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

static bool *
key_mask(IlogLayout *l)
{
	bool	   *mask = palloc0(sizeof(bool) * Max(l->natts, 1));

	for (int k = 0; k < l->nkeys; k++)
		mask[l->keys[k] - 1] = true;
	return mask;
}

static void
decode_image(IlogLayout *l, bytea *img, Datum *values, bool *nulls, bool *present)
{
	if (!ilog_image_decode(VARDATA_ANY(img), VARSIZE_ANY_EXHDR(img), l->natts, l->cols, values, nulls, present))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("dbsync: an iLog entry does not match its layout %d", l->id)));
}

static Datum decode_entry(FunctionCallInfo fcinfo);

/* dbsync.ilog_decode(layout, op, old, new) -> (key, before, after, changed_columns) */
Datum
dbsync_ilog_decode(PG_FUNCTION_ARGS)
{
	IlogOutputStyle saved;
	volatile Datum result;

	ilog_output_style_fix(&saved);
	PG_TRY();
	{
		result = decode_entry(fcinfo);
	}
	PG_FINALLY();
	{
		ilog_output_style_restore(&saved);
	}
	PG_END_TRY();
	return result;
}

static Datum
decode_entry(FunctionCallInfo fcinfo)
{
	TupleDesc	desc;
	Datum		out[4] = {0};
	bool		outnull[4] = {true, true, true, true};
	char		op = PG_GETARG_CHAR(1);
	IlogLayout *l;
	int			n;
	Datum	   *ov,
			   *nv;
	bool	   *on,
			   *nn,
			   *op_,
			   *np;
	bool	   *keys;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "dbsync.ilog_decode must return a record");
	desc = BlessTupleDesc(desc);
	if (op == ILOG_TRUNCATE && !PG_ARGISNULL(3))
	{
		/* TRUNCATE of one partition: its name is kept in place of the new image */
		JsonbParseState *st = NULL;
		bytea	   *name = PG_GETARG_BYTEA_PP(3);
		JsonbValue	v;

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		push_key(&st, "partition");
		v.type = jbvString;
		v.val.string.val = VARDATA_ANY(name);
		v.val.string.len = VARSIZE_ANY_EXHDR(name);
		pushJsonbValue(&st, WJB_VALUE, &v);
		out[0] = JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL)));
		outnull[0] = false;
	}
	if (op == ILOG_TRUNCATE || PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, out, outnull)));

	l = ilog_layout_get(PG_GETARG_INT32(0));
	ilog_layout_io(l);
	n = l->natts;
	ov = palloc(sizeof(Datum) * Max(n, 1));
	nv = palloc(sizeof(Datum) * Max(n, 1));
	on = palloc(sizeof(bool) * Max(n, 1));
	nn = palloc(sizeof(bool) * Max(n, 1));
	op_ = palloc0(sizeof(bool) * Max(n, 1));
	np = palloc0(sizeof(bool) * Max(n, 1));
	if (!PG_ARGISNULL(2))
		decode_image(l, PG_GETARG_BYTEA_PP(2), ov, on, op_);
	if (!PG_ARGISNULL(3))
		decode_image(l, PG_GETARG_BYTEA_PP(3), nv, nn, np);
	keys = key_mask(l);

	if (op == ILOG_INSERT)
	{
		out[0] = columns_object(l, nv, nn, np, l->whole_row ? NULL : keys);
		out[2] = columns_object(l, nv, nn, np, NULL);
		outnull[0] = outnull[2] = false;
	}
	else if (op == ILOG_DELETE)
	{
		out[0] = columns_object(l, ov, on, op_, l->whole_row ? NULL : keys);
		out[1] = columns_object(l, ov, on, op_, NULL);
		outnull[0] = outnull[1] = false;
	}
	else if (op == ILOG_UPDATE)
	{
		ArrayBuildState *changed = initArrayResult(TEXTOID, CurrentMemoryContext, false);

		out[0] = columns_object(l, ov, on, op_, l->whole_row ? NULL : keys);
		out[1] = columns_object(l, ov, on, op_, np);
		out[2] = columns_object(l, nv, nn, np, NULL);
		for (int i = 0; i < n; i++)
			if (np[i])
				accumArrayResult(changed, CStringGetTextDatum(l->names[i]), false, TEXTOID, CurrentMemoryContext);
		out[3] = makeArrayResult(changed, CurrentMemoryContext);
		outnull[0] = outnull[1] = outnull[2] = outnull[3] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, out, outnull)));
}

/* A jsonb scalar as the text a type input function reads; NULL for JSON null. */
static char *
jsonb_scalar_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			{
				StringInfoData buf;

				initStringInfo(&buf);
				(void) JsonbToCString(&buf, v->val.binary.data, v->val.binary.len);
				return buf.data;
			}
	}
}

/* Fills the key columns of one layout from the jsonb key; false when the key does not name them all. */
static bool
key_values(IlogLayout *l, Jsonb *key, Datum *values, bool *nulls, bool *present)
{
	if ((int) JB_ROOT_COUNT(key) != l->nkeys)
		return false;
	for (int k = 0; k < l->nkeys; k++)
	{
		int			i = l->keys[k] - 1;
		JsonbValue	name;
		JsonbValue *v;
		char	   *text;
		Oid			input;
		Oid			ioparam;

		if (l->names[i] == NULL)
			return false;
		name.type = jbvString;
		name.val.string.val = l->names[i];
		name.val.string.len = strlen(l->names[i]);
		v = findJsonbValueFromContainer(&key->root, JB_FOBJECT, &name);
		if (v == NULL)
			return false;
		text = jsonb_scalar_text(v);
		getTypeInputInfo(l->types[i], &input, &ioparam);
		values[i] = OidInputFunctionCall(input, text, ioparam, l->typmods[i]);
		nulls[i] = text == NULL;
		if (!nulls[i])
			values[i] = ilog_plain_value(values[i], l->cols[i].len);
		present[i] = true;
	}
	return true;
}

static void probe_layouts(FunctionCallInfo fcinfo);

/* dbsync.ilog_key_probe(tbl oid, key jsonb) -> (layout, key_hash, key): one row per layout the key fits */
Datum
dbsync_ilog_key_probe(PG_FUNCTION_ARGS)
{
	IlogOutputStyle saved;

	ilog_output_style_fix(&saved);
	PG_TRY();
	{
		probe_layouts(fcinfo);
	}
	PG_FINALLY();
	{
		ilog_output_style_restore(&saved);
	}
	PG_END_TRY();
	return (Datum) 0;
}

static void
probe_layouts(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			tbl = PG_GETARG_OID(0);
	Jsonb	   *key = PG_GETARG_JSONB_P(1);
	int32	   *ids;
	int			nids;

	if (!JB_ROOT_IS_OBJECT(key))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dbsync: a record key must be a JSON object of its key columns"),
				 errdetail("For example '{\"id\": 42}'.")));
	InitMaterializedSRF(fcinfo, 0);

	ids = ilog_layout_ids(tbl, &nids);

	for (int r = 0; r < nids; r++)
	{
		IlogLayout *l = ilog_layout_get(ids[r]);
		int			n = Max(l->natts, 1);
		Datum	   *values = palloc0(sizeof(Datum) * n);
		bool	   *nulls = palloc0(sizeof(bool) * n);
		bool	   *present = palloc0(sizeof(bool) * n);
		Datum		row[3];
		bool		rownull[3] = {false, false, false};

		ilog_layout_io(l);
		if (!key_values(l, key, values, nulls, present))
			continue;
		row[2] = columns_object(l, values, nulls, present, NULL);
		row[0] = Int32GetDatum(l->id);
		row[1] = Int32GetDatum((int32) ilog_key_hash(l->nkeys, l->keys, l->cols, values, nulls));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, rownull);
	}
}

/* dbsync_ilog_read(after_version, limit): the entries after a version, in version order, never one missed. */
Datum
dbsync_ilog_read(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		after = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0);
	int32		limit;
	int64		horizon;
	SPIPlanPtr	plan;
	Snapshot	snap;
	Datum		args[3];

	if (PG_ARGISNULL(1) || PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dbsync: limit must be at least 1")));
	limit = PG_GETARG_INT32(1);
	InitMaterializedSRF(fcinfo, 0);

	horizon = ilog_horizon_compute(ilog_relation("ilog_version_seq"));
	SPI_connect();
	plan = SPI_prepare("SELECT * FROM dbsync.ilog_entries WHERE version > $1 AND version < $2 "
					   "ORDER BY version LIMIT $3", 3, (Oid[]) {INT8OID, INT8OID, INT8OID});
	if (plan == NULL)
		elog(ERROR, "dbsync: could not prepare the iLog read: %s", SPI_result_code_string(SPI_result));
	args[0] = Int64GetDatum(after);
	args[1] = Int64GetDatum(horizon);
	args[2] = Int64GetDatum(limit);
	/* a snapshot taken after the horizon: it sees every transaction below it */
	snap = RegisterSnapshot(GetLatestSnapshot());
	if (SPI_execute_snapshot(plan, args, NULL, snap, InvalidSnapshot, true, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "dbsync: could not read the iLog");
	UnregisterSnapshot(snap);
	for (uint64 r = 0; r < SPI_processed; r++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[r]);
	SPI_finish();
	return (Datum) 0;
}
