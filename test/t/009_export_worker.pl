# The worker follows export orders unattended: polls them to their end,
# downloads the ZIPs asked for into dbsync.export_download_dir, renews an
# expired token without an error, gives up on an order the service no longer
# knows, survives being killed in the middle of a download, and never writes
# a secret or a token into the server log.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA;
use dbsync_test;
use dbsync_sync_test;

my $dir = PostgreSQL::Test::Utils::tempdir();
my $node = new_worker_node('export_worker',
	extra => "dbsync.export_poll_interval = '300ms'\ndbsync.export_download_dir = '$dir'\n"
	  . "log_min_messages = debug1\nrestart_after_crash = on\n"
	  # One runner: each runner keeps its own token, and this test counts grants.
	  . "dbsync.max_runners = 1\n");
my $port = sim_port();
sim_post('/_sim/reset');
$node->safe_psql('postgres', qq{
	CREATE SERVER plant FOREIGN DATA WRAPPER dbsync OPTIONS (api 'octoplant', url 'http://127.0.0.1:$port');
	CREATE USER MAPPING FOR CURRENT_USER SERVER plant OPTIONS (user 'versiondog', password '$dbsync_test::PASSWORD');
});

sub octo_stats { sim_json('/_sim/octoplant/stats') }
sub zip_ok { my ($file) = @_; return system('python3', '-m', 'zipfile', '-t', $file) == 0 }

# 1. An order followed to its end and downloaded, with nobody asking.
sim_post('/_sim/octoplant/config?seconds=2&zip_size=3M');
my $name = $node->safe_psql('postgres',
	q{SELECT name FROM dbsync_export_order('plant', '{"projectTree": {}, "jobResults": {"lastXDays": 7}}', download => true)});
like($name, qr/^[0-9a-f-]{36}$/, 'ordered');
# Notifications while it runs (psql shows them after its command).
my (undef, $notices) = $node->psql('postgres', 'LISTEN dbsync_export; SELECT pg_sleep(3.5); SELECT 1;');
ok($node->poll_query_until('postgres', qq{SELECT downloaded_at IS NOT NULL FROM dbsync.export_order WHERE name = '$name'}),
	'the worker downloaded the ZIP without any further call');
my ($bytes, $sha, $to, $state) = split /\|/, $node->safe_psql('postgres',
	qq{SELECT downloaded_bytes, downloaded_sha256, downloaded_to, state FROM dbsync.export_order WHERE name = '$name'});
is($state, 'STATE_SUCCEEDED', 'it succeeded');
is($to, "$dir/$name.zip", 'into the configured directory, named after the order');
is(-s $to, 3 * 1024 * 1024, 'the whole ZIP');
is($bytes, -s $to, 'with the recorded size');
is(Digest::SHA->new(256)->addfile($to)->hexdigest, $sha, 'and the recorded SHA-256');
ok(zip_ok($to), 'a valid ZIP');
ok(!-e "$to.partial", 'no partial file is left');
is($node->safe_psql('postgres', qq{SELECT string_agg(state, ',' ORDER BY entered_at) FROM dbsync.export_state WHERE order_name = '$name'}),
	'STATE_PENDING,STATE_RUNNING,STATE_SUCCEEDED', 'every state was recorded, in order');
like($notices // '', qr/Asynchronous notification "dbsync_export" with payload "\{"name" : "$name", "state" : "STATE_SUCCEEDED", "done" : true\}"/,
	'the end was notified');
ok($node->poll_query_until('postgres', qq{SELECT state = 'done' AND last_error IS NULL FROM dbsync.job WHERE kind = 'export_poll' AND args->>'name' = '$name'}),
	'the poll job ended with the order, without an error');

# 2. The token expires between two polls: one new grant, no error anywhere.
sim_post('/_sim/octoplant/config?seconds=4&zip_size=0');
my $name2 = $node->safe_psql('postgres', q{SELECT name FROM dbsync_export_order('plant', '{"adminLog": {}}')});
ok($node->poll_query_until('postgres', qq{SELECT state = 'STATE_RUNNING' FROM dbsync.export_order WHERE name = '$name2'}),
	'the worker polls the second order');
my $before = octo_stats();
sim_post('/_sim/octoplant/expire_tokens');
ok($node->poll_query_until('postgres', qq{SELECT done FROM dbsync.export_order WHERE name = '$name2'}), 'it ended');
my $after = octo_stats();
is($after->{grants} - $before->{grants}, 1, 'exactly one new token was granted');
is($after->{unauthenticated} - $before->{unauthenticated}, 1, 'after exactly one refusal');
is($node->safe_psql('postgres', qq{SELECT coalesce(last_error, 'none') FROM dbsync.job WHERE args->>'name' = '$name2'}), 'none',
	'and the job saw no error');

# 3. Killed in the middle of a download: nothing lost, nothing twice.
sim_post('/_sim/octoplant/config?seconds=0.5&zip_size=20M');
sim_post('/_sim/fault?path=/v1/order/*/download&mode=slow&seconds=20&count=1');
my $name3 = $node->safe_psql('postgres', q{SELECT name FROM dbsync_export_order('plant', '{"eventLog": {}}', download => true)});
ok(wait_until(30, sub { -e "$dir/$name3.zip.partial" }), 'the worker is downloading the third order (slowly)');
# (pg_stat_activity is read by a new connection each time: ask again for a few seconds)
my $runner;
wait_until(10, sub { ($runner) = worker_pids($node, 'dbsync job runner'); defined $runner });
ok($runner, 'the job runner is known') and kill 'KILL', $runner;
ok($node->poll_query_until('postgres', qq{SELECT downloaded_at IS NOT NULL FROM dbsync.export_order WHERE name = '$name3'}),
	'after the kill and the restart, the ZIP was downloaded');
my $to3 = "$dir/$name3.zip";
is(-s $to3, 20 * 1024 * 1024, 'whole');
ok(zip_ok($to3), 'a valid ZIP');
ok(!-e "$to3.partial", 'no partial file is left');
is($node->safe_psql('postgres', qq{SELECT downloaded_sha256 FROM dbsync.export_order WHERE name = '$name3'}),
	Digest::SHA->new(256)->addfile($to3)->hexdigest, 'the recorded SHA-256 is the file\'s');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM dbsync.export_state WHERE order_name = '$name3' AND state = 'STATE_SUCCEEDED'}),
	'1', 'its success was recorded once');

# 4. An order the service forgets (STATE_UNSPECIFIED) is given up, not polled forever.
sim_post('/_sim/octoplant/config?seconds=60');
my $name4 = $node->safe_psql('postgres', q{SELECT name FROM dbsync_export_order('plant', '{"assetState": {}}')});
ok($node->poll_query_until('postgres', qq{SELECT last_polled_at > ordered_at FROM dbsync.export_order WHERE name = '$name4'}),
	'the worker polled the fourth order');
sim_post('/_sim/reset');
ok($node->poll_query_until('postgres', qq{SELECT state = 'failed' FROM dbsync.job WHERE args->>'name' = '$name4'}),
	'once the service no longer knows it, its job fails for good');
is($node->safe_psql('postgres', qq{SELECT j.last_error || ' / ' || o.state FROM dbsync.job j JOIN dbsync.export_order o ON o.name = j.args->>'name' WHERE o.name = '$name4'}),
	'the server does not know this order / STATE_UNSPECIFIED', 'with the reason, and the order says so');
my $polls = octo_stats()->{status_gets};
sleep 1;
is(octo_stats()->{status_gets}, $polls, 'and nobody polls it any more');

# No secret, no token in the server log (debug1 included).
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$dbsync_test::PASSWORD\E/, 'the password is not in the log');
unlike($log, qr/ff99971a-f8c3-4d21-5345-f7cb021b4b54/, 'nor the client secret');
unlike($log, qr/Bearer|access_token/i, 'nor a token');
like($log, qr/downloaded export order "$name"/, 'the log does say what the worker did');

$node->stop;
done_testing();
