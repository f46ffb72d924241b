# The iLog with real concurrency, crashes and the worker: an incremental
# reader racing many writers gets every committed entry exactly once; a
# writer terminated or killed (crash restart) loses its open transaction
# only, and holds readers back only while it lives; the worker's hourly job
# keeps day partitions ahead and purges entries past their table's max days.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use dbsync_test;
use dbsync_sync_test;

my $node = new_worker_node('ilog', extra => "restart_after_crash = on\nmax_connections = 40\n");
$node->safe_psql('postgres', q{
	CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL, note text);
	CREATE TABLE hist (aid int, delta int, at timestamptz DEFAULT now());
	SELECT dbsync_track('acct', max_days => 3);
	SELECT dbsync_track('hist');
	INSERT INTO acct SELECT g, 0, NULL FROM generate_series(1, 1000) g;
});

# Reads the log incrementally from $after, as a replication consumer would; returns the versions.
sub read_all
{
	my ($after, $seen) = @_;
	for (;;)
	{
		my $out = $node->safe_psql('postgres', "SELECT version FROM dbsync_ilog_read($after, 500)");
		last if $out eq '';
		my @v = split /\n/, $out;
		push @$seen, @v;
		$after = $v[-1];
	}
	return $after;
}

sub committed_versions
{
	return [ split /\n/, $node->safe_psql('postgres', 'SELECT version FROM dbsync.ilog ORDER BY version') ];
}

# 1. An incremental reader racing 8 writers (random transfer sizes, rollbacks, savepoints) gets every
#    committed entry exactly once, in order.
{
	my $script = PostgreSQL::Test::Utils::tempdir() . '/writer.sql';
	# Rows are updated in id order, so the writers never deadlock each other.
	open my $fh, '>', $script or die;
	print $fh <<'EOS';
\set x random(1, 1000)
\set y random(1, 1000)
\set a least(:x, :y)
\set b greatest(:x, :y)
\set d random(-50, 50)
\set r random(1, 10)
BEGIN;
UPDATE acct SET bal = bal + :d WHERE id = :a;
SAVEPOINT s;
INSERT INTO hist (aid, delta) VALUES (:a, :d);
SELECT CASE WHEN :r = 1 THEN pg_sleep(0.01) END;
UPDATE acct SET bal = bal - :d WHERE id = :b;
SELECT CASE WHEN :r <= 2 THEN 'ROLLBACK TO s' ELSE 'RELEASE s' END AS sp \gset
:sp;
SELECT CASE WHEN :r = 3 THEN 'ROLLBACK' ELSE 'COMMIT' END AS fin \gset
:fin;
EOS
	close $fh;
	my $start = read_all(0, []);
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ $node->installed_command('pgbench'), '-n', '-c', '8', '-j', '2', '-T', '6', '-f', $script,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', \$out, '2>', \$err);
	my @seen;
	my $after = $start;
	while ($h->pumpable)
	{
		$after = read_all($after, \@seen);
		$h->pump_nb;
		select(undef, undef, undef, 0.05);
	}
	$h->finish;
	like($out, qr/number of failed transactions: 0/, 'the writers ran without failures') or diag($err);
	read_all($after, \@seen);
	my @all = grep { $_ > $start } @{ committed_versions() };
	my %count;
	$count{$_}++ for @seen;
	my @dups = grep { $count{$_} > 1 } keys %count;
	cmp_ok(scalar(@all), '>', 500, 'the writers logged many changes (' . scalar(@all) . ')');
	is_deeply(\@seen, \@all, 'the reader got every committed entry, in version order, racing the writers');
	is(scalar(@dups), 0, 'and none twice');
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM dbsync.ilog l WHERE NOT EXISTS
		  (SELECT FROM dbsync.ilog_xact x WHERE x.xid = l.xid AND x.day = l.day)}),
		'0', 'every entry has its transaction row (savepoints rolled back included)');
}

# 2. An open writer holds readers back; once it is terminated, they pass, and nothing of it remains.
{
	my $writer = $node->background_psql('postgres', on_error_stop => 0);
	my $wpid = $writer->query_safe('SELECT pg_backend_pid()');
	my $before = $node->safe_psql('postgres', 'SELECT coalesce(max(version), 0) FROM dbsync.ilog');
	$writer->query_safe(q{BEGIN; UPDATE acct SET note = 'open' WHERE id = 1;});
	$node->safe_psql('postgres', q{UPDATE acct SET note = 'committed later' WHERE id = 2});
	is($node->safe_psql('postgres', "SELECT count(*) FROM dbsync_ilog_read($before, 100)"), '0',
		'an entry committed after an open writer\'s first version waits for that writer');
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($wpid)");
	ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $wpid"),
		'writer terminated');
	$writer->quit;
	is($node->safe_psql('postgres', "SELECT string_agg(after->>'note', ',') FROM dbsync_ilog_read($before, 100)"),
		'committed later', 'then readers pass it, and the terminated transaction left nothing');
}

# 3. A writer killed with SIGKILL (crash restart): nothing of its open transaction, nothing lost of the
#    committed ones, versions keep rising, writing and reading go on.
{
	my $before = $node->safe_psql('postgres', 'SELECT max(version) FROM dbsync.ilog');
	my $writer = $node->background_psql('postgres', on_error_stop => 0);
	my $wpid = $writer->query_safe('SELECT pg_backend_pid()');
	$writer->query_safe(q{BEGIN; INSERT INTO hist (aid, delta) SELECT g, 1 FROM generate_series(1, 5000) g;});
	$node->safe_psql('postgres', q{UPDATE acct SET note = 'before the crash' WHERE id = 3});
	kill 'KILL', $wpid;
	$writer->quit;
	ok($node->poll_query_until('postgres', 'SELECT 1', '1'), 'the server came back after the crash');
	$node->safe_psql('postgres', q{UPDATE acct SET note = 'after the crash' WHERE id = 4});
	my @got = split /\n/, $node->safe_psql('postgres',
		"SELECT operation || ':' || coalesce(after->>'note', '') FROM dbsync_ilog_read($before, 10000)");
	is_deeply(\@got, [ 'UPDATE:before the crash', 'UPDATE:after the crash' ],
		'after crash recovery the reader gets both committed changes and nothing of the killed one');
	cmp_ok($node->safe_psql('postgres', q{SELECT max(version) FROM dbsync.ilog_entries WHERE after->>'note' = 'after the crash'}),
		'>', $before, 'versions keep rising');
}

# 4. The worker's ilog_maintain job: partitions ahead, and old entries purged by max days.
{
	is($node->safe_psql('postgres', q{SELECT count(*) || ' ' || min(repeat_every) FROM dbsync.job WHERE kind = 'ilog_maintain'}),
		'1 01:00:00', 'tracking scheduled one hourly maintenance job');
	my $ahead = $node->safe_psql('postgres', q{SELECT to_char((now() AT TIME ZONE 'UTC')::date + 5, 'YYYYMMDD')});
	$node->safe_psql('postgres', qq{DROP TABLE dbsync.ilog_p$ahead; DROP TABLE dbsync.ilog_xact_p$ahead});
	# Entries of acct (max 3 days) and hist (kept) moved to a day 10 days ago.
	$node->safe_psql('postgres', q{
		SELECT dbsync.ilog_partition_create((now() AT TIME ZONE 'UTC')::date - 10);
		UPDATE dbsync.ilog SET day = (now() AT TIME ZONE 'UTC')::date - 10
		 WHERE version IN (SELECT version FROM dbsync.ilog WHERE tbl = 'acct'::regclass ORDER BY version LIMIT 40)
		    OR version IN (SELECT version FROM dbsync.ilog WHERE tbl = 'hist'::regclass ORDER BY version LIMIT 7);
	});
	my $old = $node->safe_psql('postgres', q{SELECT to_char((now() AT TIME ZONE 'UTC')::date - 10, 'YYYYMMDD')});
	$node->safe_psql('postgres', q{UPDATE dbsync.job SET run_at = now() WHERE kind = 'ilog_maintain'});
	ok($node->poll_query_until('postgres', qq{SELECT to_regclass('dbsync.ilog_p$ahead') IS NOT NULL}),
		'the worker made the missing partition ahead again');
	ok($node->poll_query_until('postgres', q{SELECT result IS NOT NULL FROM dbsync.job WHERE kind = 'ilog_maintain'}),
		'the job recorded its result');
	is($node->safe_psql('postgres', q{SELECT result->'entries_removed' FROM dbsync.job WHERE kind = 'ilog_maintain'}),
		'{"public.acct": 40}', 'it removed the 40 expired acct entries');
	is($node->safe_psql('postgres', qq{SELECT count(*) FROM dbsync.ilog_p$old}), '7',
		'the hist entries of that day stay (no max days), so the partition stays');
	is($node->safe_psql('postgres', q{SELECT state FROM dbsync.job WHERE kind = 'ilog_maintain'}), 'pending',
		'and the job is pending again');
}

done_testing();
