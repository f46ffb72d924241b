/*
 * job_wake.c: wakes the database's job runners when a transaction that added
 * or rescheduled jobs commits, never before: a runner woken earlier would not
 * see the jobs yet and would go back to sleep.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"

#include "worker.h"

bool		dbsync_am_runner = false;

static bool wake_pending = false;
static bool callback_registered = false;
static char wake_dbname[NAMEDATALEN];

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (wake_pending)
				(void) dbsync_wake_database(wake_dbname);
			wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_pending = false;
			break;
		default:
			break;
	}
}

/* Asks for a wake-up at commit; false when no worker serves this database. */
bool
dbsync_wake_at_commit(void)
{
	if (dbsync_shared() == NULL)
		return false;
	if (!callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		callback_registered = true;
	}
	if (!wake_pending)
	{
		char	   *name = get_database_name(MyDatabaseId);

		strlcpy(wake_dbname, name ? name : "", NAMEDATALEN);
		wake_pending = true;
	}
	return dbsync_database_served(wake_dbname);
}

PG_FUNCTION_INFO_V1(dbsync_job_wake_on_commit);

/*
 * Statement trigger on dbsync.job. A runner's own bookkeeping (finishing a
 * job) wakes nobody: the runner looks for the next job anyway.
 */
Datum
dbsync_job_wake_on_commit(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
						errmsg("dbsync.job_wake_on_commit() must be called as a trigger")));
	if (!(dbsync_am_runner && TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		(void) dbsync_wake_at_commit();
	PG_RETURN_POINTER(NULL);
}
