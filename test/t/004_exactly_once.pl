# Nothing lost, nothing twice: the staged log and records equal the
# simulator's after (a) runners SIGKILLed again and again (crash restarts)
# while the server answers slowly and the log grows, (b) failing requests of
# every kind, in the load and in the rounds, and (c) a log that grows while
# the initial load pages through the records.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use dbsync_test;
use dbsync_sync_test;

# PostgreSQL::Test::Cluster turns restart_after_crash off; a SIGKILLed runner must not end the test.
my $node = new_worker_node('exactly_once', extra => "restart_after_crash = on\n");
is($node->safe_psql('postgres', 'SHOW restart_after_crash'), 'on', 'restart_after_crash is on');

sub runner_of { my @p = worker_pids($node, 'dbsync job runner', 'postgres'); return @p == 1 ? $p[0] : undef }

######## (a) SIGKILL at random points, slow answers, a growing log

{
	my $company = 'live3004';
	flexi_server($node, 'k1', $company);
	my ($g0) = sim_log($company);
	# A fixed seed by default (the kill points still vary with timing); DBSYNC_TEST_SEED for others.
	my $seed = $ENV{DBSYNC_TEST_SEED} // 4004;
	srand($seed);
	note "random seed $seed";
	# The load pages slowly at first.
	sim_fault($company, 'slow', seconds => 0.5, count => 4);
	$node->safe_psql('postgres', "SELECT dbsync_subscribe('k1', pull_interval => '1s', page_size => 20)");

	my ($kills, $appended, $kills_in_load, $synced) = (0, 0, 0, 0);
	my $deadline = time + 70;
	my $crashes = sub { my $n = () = slurp_file($node->logfile) =~ /all server processes terminated; reinitializing/g; $n };
	while ($kills < 12 && time < $deadline)
	{
		my $s = subscription($node, 'k1');
		$synced ||= $s && $s->{phase} eq 'sync';
		# Nothing is appended before the load is done, so it starts at $g0.
		if ($synced)
		{
			my $n = 20 + int(rand(60));
			sim_append($company, $n);
			$appended += $n;
		}
		sim_fault($company, 'slow', seconds => sprintf('%.2f', 0.3 + rand(0.7)), count => 1 + int(rand(2)));
		my $pid = wait_until(20, sub { runner_of() }) or next;
		Time::HiRes::sleep(0.1 + rand(1.2));
		my $before = $crashes->();
		next unless kill('KILL', $pid);
		$kills++;
		$kills_in_load++ unless $synced;
		# Wait for the crash restart, then for connections.
		wait_until(30, sub { $crashes->() > $before });
		wait_until(30, sub { defined try_query($node, 'SELECT 1') });
	}
	note "$kills runner(s) SIGKILLed ($kills_in_load during the load), $appended changes appended meanwhile";
	cmp_ok($kills, '>=', 10, 'the runner was SIGKILLed at least 10 times');
	cmp_ok($appended, '>', 0, 'the log grew between the kills');

	my $log = slurp_file($node->logfile);
	my $killed = () = $log =~ /background worker "dbsync job runner" \(PID \d+\) was terminated by signal 9/g;
	my $any_signal = () = $log =~ /terminated by signal/g;
	is($killed, $kills, 'each kill hit a job runner (a crash restart each)');
	is($any_signal, $kills, 'no other process died by a signal');

	ok(wait_caught_up($node, 'k1', $company, $g0, 60), 'after the last kill the worker caught up');
	check_change_log($node, 'k1', $company, $g0, 'after SIGKILLs');
	check_records($node, 'k1', $company, $g0, 'after SIGKILLs');
	is($node->safe_psql('postgres', "SELECT count(*) FROM dbsync.job WHERE state NOT IN ('pending', 'running')"), '0',
		'the job never failed for good');
}

######## (b) failing requests: HTTP 500, cut replies, bad JSON, a version below the start

{
	my $company = 'live4004';
	flexi_server($node, 'f1', $company);
	my ($g0) = sim_log($company);
	# The load: its global version request gets a 500, a listing a half JSON
	# reply, the next a malformed one, the next a truncated one.
	sim_fault($company, 'status', status => 500);
	sim_fault($company, 'slow', seconds => 0.1, count => 3);
	sim_fault($company, 'truncated-json');
	sim_fault($company, 'malformed');
	sim_fault($company, 'truncated');
	$node->safe_psql('postgres', "SELECT dbsync_subscribe('f1', pull_interval => '1s', page_size => 20)");

	my %kinds = (
		'HTTP 500'   => qr/server "f1" answered GET \S+ with HTTP 500 Internal Server Error/,
		'truncated'  => qr/reply of server "f1" to GET \S+ was truncated/,
		'not JSON'   => qr/reply of server "f1" to GET \S+ is not valid JSON/,
		'lowversion' => qr/server "f1" sent version \d+ after \d+ while reading from version \d+/);
	my (%seen, $max_failures);
	my $watch = sub {
		my $s = subscription($node, 'f1') or return;
		$max_failures = $s->{failures} if !defined $max_failures || $s->{failures} > $max_failures;
		return unless $s->{failures} > 0 && defined $s->{last_error};
		for my $k (keys %kinds) { $seen{$k} = 1 if $s->{last_error} =~ $kinds{$k}; }
	};
	ok(wait_until(60, sub { $watch->(); my $s = subscription($node, 'f1'); $s && $s->{phase} eq 'sync' && $s->{failures} == 0 }),
		'the load got through its failures');

	# The rounds: a lowered version, then failures when fetching a page's
	# records (after a good changes page), a lowered version on a later page.
	sim_fault($company, 'lowversion');
	sim_fault($company, 'slow', seconds => 0.1);
	sim_fault($company, 'status', status => 500);
	sim_fault($company, 'slow', seconds => 0.1);
	sim_fault($company, 'truncated-json');
	sim_fault($company, 'lowversion');
	sim_fault($company, 'slow', seconds => 0.1);
	sim_fault($company, 'malformed');
	sim_fault($company, 'truncated');
	sim_append($company, 100);
	ok(wait_until(60, sub {
		$watch->();
		my ($gv, $changes) = sim_log($company, $g0);
		my $s = subscription($node, 'f1');
		$s && $s->{failures} == 0 && $s->{remote_version} == $gv && $s->{cursor_version} > $changes->[-1][0];
	}), 'the rounds got through their failures and caught up');

	cmp_ok($max_failures, '>=', 2, "subscription_status counted consecutive failures (up to $max_failures)");
	for my $k (sort keys %kinds)
	{
		ok($seen{$k}, "subscription_status showed a '$k' error while failing");
	}
	my $log = slurp_file($node->logfile);
	for my $k (sort keys %kinds)
	{
		like($log, $kinds{$k}, "the server log has the '$k' error");
	}
	my $s = subscription($node, 'f1');
	is(($s->{failures} // 'NULL') . ' ' . ($s->{last_error} // 'NULL'), '0 NULL', 'success cleared the failures');
	ok(wait_caught_up($node, 'f1', $company, $g0, 30), 'caught up');
	check_change_log($node, 'f1', $company, $g0, 'after failures');
	check_records($node, 'f1', $company, $g0, 'after failures');
}

######## (c) the log grows while the initial load reads the records

{
	my $company = 'live3005';
	my $k = 5;
	flexi_server($node, 'g1', $company);
	my ($g0) = sim_log($company);
	sim_post("/_sim/grow?company=$company&per_listing=$k");
	$node->safe_psql('postgres', "SELECT dbsync_subscribe('g1', pull_interval => '1s', page_size => 10)");
	my ($load_cursor, $sync);
	ok(wait_until(60, sub {
		my $s = subscription($node, 'g1') or return 0;
		$load_cursor = $s->{cursor_version} if $s->{phase} eq 'load' && defined $s->{cursor_version};
		$sync = $s->{phase} eq 'sync';
	}), 'the load finished');
	# Record fetches of the rounds grow the log too: stop it, then catch up.
	sim_post("/_sim/grow?company=$company&per_listing=0");
	my ($gv_after) = sim_log($company);
	note "the log grew from global version $g0 to $gv_after while the load read the records";
	cmp_ok($gv_after - $g0, '>=', 5 * $k, 'changes arrived during the load (at least one listing of each evidence)');
	is($load_cursor, $g0, "the load started at the global version read before any listing ($g0)") if defined $load_cursor;
	ok(wait_caught_up($node, 'g1', $company, $g0, 60), 'caught up with the changes made during the load');
	check_change_log($node, 'g1', $company, $g0, 'growth during the load');
	check_records($node, 'g1', $company, $g0, 'growth during the load');
}

$node->stop;
done_testing();
