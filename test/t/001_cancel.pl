# A hung request is cancelled by pg_cancel_backend and statement_timeout, and
# ended by pg_terminate_backend, promptly and cleanly: the session stays usable
# and no credential reaches the server log.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use dbsync_test;

# log_statement is off: with it, PostgreSQL itself logs CREATE USER MAPPING text.
my $node = new_dbsync_node('cancel', "log_min_messages = debug1\nlog_statement = none\n");
flexi_server($node, 'slow', 'slow-60');
flexi_server($node, 'flexi', 'demo');

# Starts the hung request in a session of its own; returns (session, pid).
sub start_hung_request
{
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $bg->query_safe('SELECT pg_backend_pid()');
	$bg->query_until(qr/started/, "\\echo started\nSELECT * FROM dbsync_changes_fetch('slow');\n");
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $pid AND state = 'active' "
		  . "AND query LIKE '%dbsync_changes_fetch%'")
	  or die 'the request did not start';
	# Let it settle inside the transfer loop.
	Time::HiRes::sleep(0.5);
	return ($bg, $pid);
}

# pg_cancel_backend: 57014 at once, and the session goes on working.
{
	my ($bg, $pid) = start_hung_request();
	my $t0 = time;
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	my ($out, $failed) = $bg->query('SELECT 1');
	my $elapsed = time - $t0;
	note sprintf('cancel took %.3f s (the server would have answered after 60 s)', $elapsed);
	like($bg->{stderr}, qr/canceling statement due to user request/, 'cancel gives the standard cancel error');
	cmp_ok($elapsed, '<', 5, 'cancel interrupts the request instead of waiting for the server');
	$bg->{stderr} = '';
	is($bg->query_safe(q{SELECT count(*) FROM dbsync_changes_fetch('flexi', "limit" => 5)}),
		'5', 'the same session makes the next request normally');
	$bg->quit;
}

# statement_timeout: the same path, with its own message.
{
	my ($ret, $stdout, $stderr) = $node->psql('postgres',
		"SET statement_timeout = '700ms'; SELECT * FROM dbsync_changes_fetch('slow');");
	isnt($ret, 0, 'statement_timeout fails the statement');
	like($stderr, qr/canceling statement due to statement timeout/, 'statement_timeout gives 57014');
}

# pg_terminate_backend: the backend exits, the cluster stays up.
{
	my ($bg, $pid) = start_hung_request();
	my $t0 = time;
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	$node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid")
	  or die 'the backend did not exit';
	my $elapsed = time - $t0;
	note sprintf('terminate took %.3f s', $elapsed);
	cmp_ok($elapsed, '<', 5, 'terminate ends the backend during the request');
	eval { $bg->quit };    # its psql lost the connection
	is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the cluster did not restart');
	unlike(slurp_file($node->logfile), qr/server process .* was terminated by signal/,
		'no backend crashed');
}

# Failed requests with a wrong password: the log names neither password.
{
	$node->safe_psql('postgres', q{
		CREATE SERVER wrongpw FOREIGN DATA WRAPPER dbsync
		  OPTIONS (api 'flexi', url 'http://127.0.0.1:} . sim_port() . q{', company 'demo');
		CREATE USER MAPPING FOR CURRENT_USER SERVER wrongpw OPTIONS (user 'api', password 'Wrong-Pa55word');
	});
	my ($ret, $stdout, $stderr) = $node->psql('postgres', "SELECT * FROM dbsync_changes_fetch('wrongpw')");
	like($stderr, qr/HTTP 401 Unauthorized/, 'a wrong password gives 401');
	my $log = slurp_file($node->logfile);
	like($log, qr/HTTP 401 Unauthorized/, 'the error reached the server log');
	unlike($log, qr/Wrong-Pa55word|S3cr3t-pw/, 'no password in the server log');
	unlike($stderr, qr/Wrong-Pa55word/, 'no password in the error');
}

$node->stop;
done_testing();
