# pg_cron schedules dbsync_changes_pull and dbsync_replication_sync, as the
# README's recipes say: the scheduled jobs really run, stage the changes and
# deliver the iLog's entries to a target database.
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

# Replication to another database of the cluster, scheduled in the same minute.
$node->safe_psql('postgres', 'CREATE DATABASE repl_target');
$node->safe_psql('repl_target', 'CREATE TABLE cron_item (id int PRIMARY KEY, name text)');
my ($host, $port) = ($node->host, $node->port);
$node->safe_psql('postgres', qq{
	CREATE TABLE cron_item (id int PRIMARY KEY, name text);
	SELECT dbsync_track('cron_item');
	CREATE SERVER repl FOREIGN DATA WRAPPER dbsync
	  OPTIONS (api 'postgres', host '$host', port '$port', dbname 'repl_target', sslmode 'disable');
	CREATE USER MAPPING FOR CURRENT_USER SERVER repl OPTIONS (user '} . $node->safe_psql('postgres', 'SELECT current_user') . q{');
	SELECT dbsync_replication_config_create('cron', '{repl}', '{cron_item}');
	INSERT INTO cron_item SELECT i, 'item ' || i FROM generate_series(1, 50) i;
	DELETE FROM cron_item WHERE id > 40;});
my $repl_jobid = $node->safe_psql('postgres',
	q{SELECT cron.schedule('dbsync-replication', '* * * * *', $$SELECT dbsync_replication_sync()$$)});

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

ok( $node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM cron.job_run_details WHERE jobid = } . $repl_jobid . q{ AND status = 'succeeded'}),
	'pg_cron ran the scheduled replication');
is($node->safe_psql('repl_target', 'SELECT count(*), min(id), max(id) FROM cron_item'),
	'40|1|40', 'the scheduled replication delivered the rows');
is($node->safe_psql('postgres', 'SELECT last_success FROM dbsync.replication_status'),
	't', 'and recorded its success');

$node->safe_psql('postgres', q{SELECT cron.unschedule('dbsync-flexi')});
$node->safe_psql('postgres', q{SELECT cron.unschedule('dbsync-replication')});
$node->stop;
done_testing();
