# Helpers of the replication TAP test (011): targets as (node, database,
# server) triples, exact comparisons of tables between the source and a
# target, the target's own record of what it applied, a statement running
# in the background, and the iLog's ground truth for the numbers a sync
# reports. Every wait is bounded.
package dbsync_repl_test;

use strict;
use warnings;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use dbsync_sync_test;
use Exporter 'import';

our @EXPORT = qw(table_sig check_same target_state applied_version repl_sync by_target
  bg_sql bg_wait target_session_count wait_target_blocked wait_target_idle ilog_counts
  check_stats);

my $json = JSON::PP->new->utf8->canonical;

# Count and md5 of every row of a table (as text, in UTC), in id order.
sub table_sig
{
	my ($n, $db, $tbl) = @_;
	return $n->safe_psql($db, "SET TimeZone = 'UTC'; SELECT count(*) || ' rows, md5 ' "
		  . "|| coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '-') FROM $tbl t");
}

sub table_rows
{
	my ($n, $db, $tbl) = @_;
	my $rows = query_json($n, "SET TimeZone = 'UTC'; SELECT coalesce(json_agg(t ORDER BY id), '[]') FROM $tbl t", $db);
	return { map { $_->{id} => $json->encode($_) } @$rows };
}

# The tables of a target equal the source's, row for row; lists the first differences otherwise.
sub check_same
{
	my ($src, $tn, $tdb, $label, @tables) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $all = 1;
	for my $tbl (@tables)
	{
		my $want = table_sig($src, 'postgres', $tbl);
		my $got = table_sig($tn, $tdb, $tbl);
		next if is($got, $want, "$label: $tbl on $tdb equals the source ($want)");
		$all = 0;
		my $s = table_rows($src, 'postgres', $tbl);
		my $t = table_rows($tn, $tdb, $tbl);
		my @d;
		for my $id (sort { $a <=> $b } keys %{ { %$s, %$t } })
		{
			next if defined $s->{$id} && defined $t->{$id} && $s->{$id} eq $t->{$id};
			push @d, "id $id: source " . ($s->{$id} // 'missing') . ', target ' . ($t->{$id} // 'missing');
		}
		diag(scalar(@d) . " rows differ:\n" . join("\n", @d[0 .. ($#d < 14 ? $#d : 14)]));
	}
	return $all;
}

# The version a target recorded for a config in dbsync_replica.applied ('' when none).
sub applied_version
{
	my ($tn, $tdb, $config) = @_;
	return $tn->safe_psql($tdb, "SELECT string_agg(version::text, ',') FROM dbsync_replica.applied WHERE config = '$config'");
}

# Everything a sync could change on a target: the applied version, the tables, the audit log.
sub target_state
{
	my ($tn, $tdb, $config, @tables) = @_;
	return join(' | ', "applied " . applied_version($tn, $tdb, $config),
		(map { "$_: " . table_sig($tn, $tdb, $_) } @tables),
		'audit ' . $tn->safe_psql($tdb, 'SELECT count(*) FROM audit'));
}

# Results of a JSON array by target server.
sub by_target
{
	my ($results) = @_;
	return { map { $_->{targetDatabase} => $_ } @$results };
}

# One manual sync of a config: (results by target, the raw array).
sub repl_sync
{
	my ($node, $key) = @_;
	my $r = query_json($node, "SELECT dbsync_replication_sync($key)");
	return (by_target($r), $r);
}

# Runs SQL through psql in the background with an application_name to find its backend by.
sub bg_sql
{
	my ($node, $db, $sql, $app) = @_;
	my $h = { out => '', err => '' };
	$h->{run} = IPC::Run::start(
		[ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr($db) . " application_name=$app",
		  '-c', '\set VERBOSITY verbose', '-c', $sql ],
		'>', \$h->{out}, '2>', \$h->{err});
	return $h;
}

# Waits (bounded) until a background psql ends; returns its exit code (undef if it had to be killed).
sub bg_wait
{
	my ($h, $timeout) = @_;
	my $done = wait_until($timeout, sub { $h->{run}->pump_nb; !$h->{run}->pumpable });
	if (!$done)
	{
		$h->{run}->kill_kill;
		return undef;
	}
	$h->{run}->finish;
	return $h->{run}->result(0);
}

# Sessions of dbsync replication in a target database (waiting on a lock only, if asked).
sub target_session_count
{
	my ($tn, $tdb, $lock_only) = @_;
	my $out = try_query($tn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbsync replication' "
		  . "AND datname = '$tdb'" . ($lock_only ? " AND wait_event_type = 'Lock'" : ''));
	return $out // -1;
}

sub wait_target_blocked
{
	my ($tn, $tdb) = @_;
	my $ok = wait_until(30, sub { target_session_count($tn, $tdb, 1) >= 1 });
	diag('target sessions: ' . ($tn->safe_psql($tdb, q{SELECT string_agg(format('%s %s %s/%s: %s', pid,
		application_name, wait_event_type, wait_event, left(query, 80)), E'\n') FROM pg_stat_activity
		WHERE backend_type = 'client backend'}))) unless $ok;
	return $ok;
}

sub wait_target_idle
{
	my ($tn, $tdb) = @_;
	return wait_until(30, sub { target_session_count($tn, $tdb, 0) == 0 });
}

# What the iLog holds for some tables in (from, to]: inserts, updates, deletes (TRUNCATE counted as a delete), transactions.
sub ilog_counts
{
	my ($node, $from, $to, @tables) = @_;
	my $list = join(', ', map { "'$_'::regclass" } @tables);
	my $out = $node->safe_psql('postgres', qq{
		SELECT count(*) FILTER (WHERE op = 'I') || ' ' || count(*) FILTER (WHERE op = 'U') || ' '
		       || count(*) FILTER (WHERE op IN ('D', 'T')) || ' ' || count(DISTINCT xid)
		  FROM dbsync.ilog WHERE version > $from AND version <= $to AND tbl IN ($list)});
	my %c;
	@c{qw(numInserts numUpdates numDeletes numTransactionLogs)} = split ' ', $out;
	return \%c;
}

# A successful result reports exactly what the iLog holds in its range, and the target recorded its end.
sub check_stats
{
	my ($node, $res, $tn, $tdb, $config, $label, @tables) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $want = ilog_counts($node, $res->{startVersion}, $res->{endVersion}, @tables);
	my %got = map { $_ => $res->{stats}{$_} } keys %$want;
	is_deeply(\%got, $want, "$label: the result counts every entry of ($res->{startVersion}, $res->{endVersion}] once "
		  . "($want->{numInserts} inserts, $want->{numUpdates} updates, $want->{numDeletes} deletes, "
		  . "$want->{numTransactionLogs} transactions)");
	is(applied_version($tn, $tdb, $config), $res->{endVersion}, "$label: $tdb recorded the endVersion as applied");
	is_deeply($res->{updateVersions}, $res->{endVersion} > $res->{startVersion} ? [ $res->{endVersion} ] : [],
		"$label: updateVersions");
}

1;
