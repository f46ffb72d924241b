# The background worker's life: the launcher starts a job runner that loads
# and syncs a subscription by itself and tells listeners; a reload keeps it
# running; a runner terminated in the middle of a request goes at once and
# its job is repaired; a manual pull of a subscription the worker holds is
# 'busy'; a served database can be dropped, and so can the extension.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use dbsync_test;
use dbsync_sync_test;

# Live companies start from their initial log (live0: empty).
sim_post('/_sim/reset');

# One runner per database: this test follows that runner through reloads and signals (012 runs several).
my $node = new_worker_node('worker', databases => 'postgres, db2', extra => "dbsync.max_runners = 1\n");
my $company = 'live1003';
flexi_server($node, 'w1', $company);

# How long the worker's job of a server has been running (seconds), or undef.
sub running_for
{
	my ($server, $db) = @_;
	my $out = try_query($node, qq{
		SELECT extract(epoch FROM now() - j.started_at) FROM dbsync.job j
		  JOIN dbsync.subscription s ON s.id = j.subscription_id
		 WHERE s.server = '$server' AND j.state = 'running'}, $db);
	return (defined $out && $out ne '') ? $out : undef;
}

# Waits until the runner has been in one round for more than a second: only a
# request the simulator answers slowly makes a round take that long.
sub wait_hung_request
{
	my ($server) = @_;
	return wait_until(20, sub { my $s = running_for($server); defined $s && $s > 1 });
}

sub runner_of { my ($db) = @_; my @p = worker_pids($node, 'dbsync job runner', $db); return @p == 1 ? $p[0] : undef }

######## (a) the worker alone loads and syncs

ok(wait_until(20, sub { worker_pids($node, 'dbsync launcher') == 1 }),
	"pg_stat_activity shows one backend of type 'dbsync launcher'");
my ($launcher) = worker_pids($node, 'dbsync launcher');

my ($g0) = sim_log($company);
my $sub_id = $node->safe_psql('postgres', "SELECT dbsync_subscribe('w1', pull_interval => '1s', page_size => 25)");
ok(wait_until(20, sub { defined runner_of('postgres') }),
	"pg_stat_activity shows a backend of type 'dbsync job runner' in database postgres");
my $runner = runner_of('postgres');
is($node->safe_psql('postgres', "SELECT application_name FROM pg_stat_activity WHERE pid = $runner"),
	'dbsync job runner', 'the runner names itself');

ok(wait_until(30, sub { my $s = subscription($node, 'w1'); $s && $s->{phase} eq 'sync' }), 'the worker finished the initial load');
my $s = subscription($node, 'w1');
is($s->{cursor_version}, $g0, "the load remembered the global version ($g0) as the cursor");
is($node->safe_psql('postgres', qq{
	SELECT j.result->>'outcome' || ' ' || (j.finished_at IS NOT NULL) || ' ' || j.attempts
	  FROM dbsync.job j WHERE j.subscription_id = $sub_id}),
	'done true 0', "the runner, not a manual pull, ran the subscription's job");
cmp_ok($node->safe_psql('postgres', "SELECT count(*) FROM dbsync.record WHERE subscription_id = $sub_id"),
	'>', 0, 'the load staged records');

sim_append($company, 150);
ok(wait_caught_up($node, 'w1', $company, $g0, 30), 'the worker caught up with 150 new changes');
check_change_log($node, 'w1', $company, $g0, 'worker sync');
check_records($node, 'w1', $company, $g0, 'worker sync');
is(runner_of('postgres'), $runner, 'one runner did all of it (pull_interval 1s keeps it)');

######## (b) LISTEN dbsync hears of a round that committed changes

{
	my $listener = $node->background_psql('postgres');
	$listener->query_safe('LISTEN dbsync');
	sim_append($company, 40);
	my @notes;
	my $heard = wait_until(30, sub {
		my $out = $listener->query_safe('SELECT 1');
		while ($out =~ /Asynchronous notification "dbsync" with payload "(.*)" received from server process with PID (\d+)\./g)
		{
			push @notes, { %{ JSON::PP->new->decode($1) }, pid => $2 };
		}
		my $sum = 0;
		$sum += $_->{changes} for @notes;
		return $sum >= 40;
	});
	ok($heard, 'a LISTEN dbsync session got notified of the 40 new changes');
	my $sum = 0;
	$sum += $_->{changes} for @notes;
	is($sum, 40, 'the notifications count exactly the 40 changes');
	is(scalar(grep { $_->{server} ne 'w1' || $_->{subscription} != $sub_id || $_->{pid} != $runner } @notes), 0,
		'they name the server and subscription, and come from the runner');
	ok(wait_caught_up($node, 'w1', $company, $g0, 30), 'caught up after the notification');
	is($notes[-1]{cursor_version}, subscription($node, 'w1')->{cursor_version},
		"the last notification carries the subscription's cursor");
	$listener->quit;
}
check_change_log($node, 'w1', $company, $g0, 'after the notification');

######## (c) SIGHUP: a changed dbsync.naptime is reloaded, everything keeps running

{
	my $off = log_offset($node);
	$node->safe_psql('postgres', "ALTER SYSTEM SET dbsync.naptime = 2");
	$node->safe_psql('postgres', "SELECT pg_reload_conf()");
	ok(wait_until(10, sub { $node->safe_psql('postgres', 'SHOW dbsync.naptime') eq '2s' }), 'dbsync.naptime is now 2s');
	ok(wait_until(10, sub { log_since($node, $off) =~ /parameter "dbsync.naptime" changed to "2"/ }),
		'the server logged the change');
	sim_append($company, 30);
	ok(wait_caught_up($node, 'w1', $company, $g0, 30), 'the sync goes on after the reload');
	is(join(' ', worker_pids($node, 'dbsync launcher')), $launcher, 'the launcher kept running through SIGHUP');
	is(runner_of('postgres'), $runner, 'the runner kept running through SIGHUP');
	unlike(log_since($node, $off), qr/ERROR|FATAL|PANIC|terminated by signal/, 'nothing failed');
	$node->safe_psql('postgres', "ALTER SYSTEM RESET dbsync.naptime");
	$node->safe_psql('postgres', "SELECT pg_reload_conf()");
	ok(wait_until(10, sub { $node->safe_psql('postgres', 'SHOW dbsync.naptime') eq '1s' }), 'dbsync.naptime back to 1s');
}
check_change_log($node, 'w1', $company, $g0, 'after the reload');

######## (d) SIGTERM while the runner waits on a slow request

{
	my $off = log_offset($node);
	sim_fault($company, 'slow', seconds => 30);
	sim_append($company, 20);
	ok(wait_hung_request('w1'), 'the runner hangs in a request the simulator answers after 30 s');
	my $in_request = running_for('w1');
	my $t0 = time;
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($runner)");
	ok(wait_until(10, sub { !grep { $_ == $runner } worker_pids($node, 'dbsync job runner') }), 'the runner exited');
	my $elapsed = time - $t0;
	note sprintf('the runner exited %.3f s after pg_terminate_backend, %.1f s into a 30 s request', $elapsed, $in_request);
	cmp_ok($elapsed, '<', 5, 'SIGTERM ends the runner during the request, within 5 s');
	cmp_ok($in_request + $elapsed, '<', 30, 'while the simulator was still sleeping on that request');
	ok(wait_until(20, sub { log_since($node, $off) =~ /dbsync: 1 job\(s\) interrupted by a stopped runner will run again/ }),
		"the next runner repaired the job the old one left 'running'");
	ok(wait_caught_up($node, 'w1', $company, $g0, 30), 'the sync completed after the restart');
	my $log = log_since($node, $off);
	like($log, qr/terminating background worker "dbsync job runner" due to administrator command/, 'the runner was terminated');
	unlike($log, qr/terminated by signal|PANIC|server process .* was terminated/, 'nothing crashed');
	my $new_runner = runner_of('postgres');
	ok(defined $new_runner && $new_runner != $runner, 'a new runner took over');
	$runner = $new_runner // $runner;
	is($node->safe_psql('postgres', "SELECT state <> 'failed' AND attempts = 0 AND last_error IS NULL FROM dbsync.job WHERE subscription_id = $sub_id"),
		't', 'the repaired job ran again, with no failure counted');
}
check_change_log($node, 'w1', $company, $g0, 'after SIGTERM');
check_records($node, 'w1', $company, $g0, 'after SIGTERM');

######## (e) a manual pull while the worker holds the subscription is 'busy'

{
	sim_fault($company, 'slow', seconds => 5);
	sim_append($company, 15);
	ok(wait_hung_request('w1'), 'the worker is busy with the subscription (slow request)');
	my $t0 = time;
	my $res = $node->safe_psql('postgres',
		"SELECT outcome || ' ' || phase || ' ' || pages || ' ' || changes FROM dbsync_changes_pull('w1')");
	my $elapsed = time - $t0;
	is($res, 'busy sync 0 0', "dbsync_changes_pull says 'busy' and reads nothing");
	note sprintf('the busy pull returned in %.3f s', $elapsed);
	cmp_ok($elapsed, '<', 1, 'at once, without waiting for the worker');
	ok(defined running_for('w1'), 'the worker still had the subscription');
	ok(wait_caught_up($node, 'w1', $company, $g0, 30), 'the worker finished its round');
}
check_change_log($node, 'w1', $company, $g0, 'after the busy pull');
check_records($node, 'w1', $company, $g0, 'after the busy pull');

######## a load with nothing to read (no evidence in use yet) ends in phase 'sync'

{
	my ($ge, $changes) = sim_log('live0');
	is(scalar(@$changes), 0, 'live0 starts with an empty log');
	flexi_server($node, 'e0', 'live0');
	$node->safe_psql('postgres', "SELECT dbsync_subscribe('e0', pull_interval => '1s')");
	ok(wait_until(20, sub { my $x = subscription($node, 'e0'); $x && defined $x->{last_success_at} }),
		'the first round of an empty company succeeded');
	sim_append('live0', 12);
	my ($gv, $log) = sim_log('live0', $ge);
	ok(wait_until(20, sub { my $x = subscription($node, 'e0'); $x && $x->{remote_version} == $gv && $x->{cursor_version} > $log->[-1][0] }),
		'its 12 new changes were read');
	check_change_log($node, 'e0', 'live0', $ge, 'empty company');
	check_records($node, 'e0', 'live0', $ge, 'empty company');
	my $x = subscription($node, 'e0');
	# Fails until fixed: initial_load() (sync_round.c) ends without a load page
	# to store, and only store_load_page() (sync_store.c) sets phase 'sync'.
	is($x->{phase}, 'sync', "the subscription's phase is 'sync' once its (empty) load is done")
	  or diag("phase $x->{phase}, load_evidences "
		  . $node->safe_psql('postgres', "SELECT load_evidences FROM dbsync.subscription WHERE server = 'e0'"));
	ok(defined $x->{lag_versions}, 'and subscription_status shows its lag');
}

######## (g) a second database: its own runner; DROP DATABASE once it is idle

{
	my $c2 = 'live2003';
	$node->safe_psql('postgres', 'CREATE DATABASE db2');
	$node->safe_psql('db2', 'CREATE EXTENSION dbsync');
	flexi_server_in($node, 'db2', 's2', $c2);
	my ($g2) = sim_log($c2);
	$node->safe_psql('db2', "SELECT dbsync_subscribe('s2', pull_interval => '2s')");
	sim_append($c2, 30) if wait_until(30, sub { my $x = subscription($node, 's2', 'db2'); $x && $x->{phase} eq 'sync' });
	ok(wait_caught_up($node, 's2', $c2, $g2, 30, 'db2'), 'the worker syncs the subscription of db2');
	check_change_log($node, 's2', $c2, $g2, 'db2', 'db2');
	check_records($node, 's2', $c2, $g2, 'db2', 'db2');

	# With a 2 s interval, its runner leaves between rounds.
	ok(wait_until(20, sub { (try_query($node, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'db2'") // '') eq '0' }),
		'no runner is connected to db2 between its rounds');
	my $off = log_offset($node);
	my $t0 = time;
	my ($ret, undef, $err) = $node->psql('postgres', 'DROP DATABASE db2');
	my $elapsed = time - $t0;
	is($ret, 0, 'DROP DATABASE db2 (without FORCE) succeeds') or diag($err);
	note sprintf('DROP DATABASE took %.3f s', $elapsed);
	cmp_ok($elapsed, '<', 5, 'promptly');

	# Nothing to wait for: watch the launcher meet the listed, dropped database a few times.
	sleep 5;
	sim_append($company, 10);
	ok(wait_caught_up($node, 'w1', $company, $g0, 30), 'database postgres is still served');
	my $log = log_since($node, $off);
	is(join(' ', worker_pids($node, 'dbsync launcher')), $launcher, 'the launcher kept running');
	my $fatal = () = $log =~ /database "db2" does not exist/g;
	my $exits = () = $log =~ /background worker "dbsync (?:job runner|launcher)" \(PID \d+\) exited with exit code/g;
	cmp_ok($fatal, '<=', 1, "no runner loop on the dropped database ($fatal failed connections)");
	cmp_ok($exits, '<=', 1, "no worker restart loop ($exits failed exits)");
	unlike($log, qr/could not start a job runner|terminated by signal|PANIC/, 'nothing else went wrong');
}

######## (f) DROP EXTENSION in a served database, the runner in a request

{
	sim_fault($company, 'slow', seconds => 3);
	sim_append($company, 5);
	ok(wait_hung_request('w1'), 'the runner is in a request');
	my $off = log_offset($node);
	my $t0 = time;
	my ($ret, undef, $err) = $node->psql('postgres', 'DROP EXTENSION dbsync CASCADE');
	my $elapsed = time - $t0;
	is($ret, 0, 'DROP EXTENSION dbsync succeeds while the runner works') or diag($err);
	note sprintf('DROP EXTENSION took %.3f s', $elapsed);
	cmp_ok($elapsed, '<', 5, 'promptly');
	ok(wait_until(20, sub { log_since($node, $off) =~ /dbsync job runner stops: it could not record the failure of job \d+/ }),
		'the runner stopped when it found its tables gone');
	my $stop_log = log_since($node, $off);
	sleep 3;    # runners started now find no extension and leave quietly
	my $later = substr(log_since($node, $off), length($stop_log));
	unlike($later, qr/ERROR|FATAL/, 'later runners leave quietly');
	is(join(' ', worker_pids($node, 'dbsync launcher')), $launcher, 'the launcher kept running');
	unlike(log_since($node, $off), qr/terminated by signal|PANIC/, 'nothing crashed');
}

######## the extension again; the launcher restarted while a runner works

{
	$node->safe_psql('postgres', 'CREATE EXTENSION dbsync');
	my $c3 = 'live1503';
	flexi_server($node, 'w3', $c3);
	my ($g3) = sim_log($c3);
	$node->safe_psql('postgres', "SELECT dbsync_subscribe('w3', pull_interval => '1s')");
	ok(wait_caught_up($node, 'w3', $c3, $g3, 30), 'after CREATE EXTENSION again, a new subscription is synced');
	ok(wait_until(10, sub { defined runner_of('postgres') }), 'by one runner');

	sim_fault($c3, 'slow', seconds => 15);
	sim_append($c3, 20);
	ok(wait_hung_request('w3'), 'the runner is in a slow request');
	my $hung_at = time - running_for('w3');
	my ($runner3) = worker_pids($node, 'dbsync job runner', 'postgres');
	my $off = log_offset($node);
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
	ok(wait_until(20, sub { my @l = worker_pids($node, 'dbsync launcher'); @l == 1 && $l[0] != $launcher }),
		'the terminated launcher was started again');
	# Watch the new launcher for 2 s while the runner is still in its request.
	sleep 2;
	ok(time - $hung_at < 14 && grep({ $_ == $runner3 } worker_pids($node, 'dbsync job runner')),
		'the runner is still there, in its 15 s request');
	# Fail until fixed: the new launcher does not know the running runner
	# (runners[] of worker_launcher.c is per process) and starts another one,
	# whose jobs_repair() resets the job the first one is running.
	is(join(' ', worker_pids($node, 'dbsync job runner', 'postgres')), $runner3,
		'still one runner in database postgres after the launcher restarted');
	unlike(log_since($node, $off), qr/interrupted by a stopped runner/, 'no job of a live runner was "repaired"');
	ok(wait_caught_up($node, 'w3', $c3, $g3, 40), 'the sync completed');
	check_change_log($node, 'w3', $c3, $g3, 'after the launcher restart');
}

$node->stop;
done_testing();
