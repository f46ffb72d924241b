# pg_cron schedules dbsync_changes_pull, as the README's recipe says: the
# scheduled job really runs and stages the changes.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use dbsync_test;

my $node = new_dbsync_node('pg_cron',
	"shared_preload_libraries = 'dbsync,pg_cron'\ncron.database_name = 'postgres'\n"
	  . "cron.use_background_workers = on\nlog_statement = none\n");
$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron');
flexi_server($node, 'flexi', 'gen120');
$node->safe_psql('postgres',
	q{SELECT dbsync_subscribe('flexi', start_version => 0, enabled => false, page_size => 50)});

# The recipe: every minute, one round (pg_cron 1.4 schedules by the minute).
my $jobid = $node->safe_psql('postgres',
	q{SELECT cron.schedule('dbsync-flexi', '* * * * *', $$SELECT * FROM dbsync_changes_pull('flexi')$$)});
like($jobid, qr/^\d+$/, 'the pull is scheduled');

# Within a minute and a bit, pg_cron runs it (poll_query_until waits up to 3 minutes).
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM cron.job_run_details WHERE jobid = } . $jobid . q{ AND status = 'succeeded'}),
	'pg_cron ran the scheduled pull');

is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT version) FROM dbsync.change'),
	'120|120', 'the scheduled pull staged the whole log once');
is($node->safe_psql('postgres', q{SELECT return_message FROM cron.job_run_details WHERE jobid = } . $jobid
			. q{ AND status = 'succeeded' LIMIT 1}),
	'SELECT 1', 'the pull returned its one summary row');

$node->safe_psql('postgres', q{SELECT cron.unschedule('dbsync-flexi')});
$node->stop;
done_testing();
