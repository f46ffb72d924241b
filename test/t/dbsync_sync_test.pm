# Shared by the TAP tests of the continuous sync (003 and later): a cluster
# whose background worker serves the test databases, the simulator's ground
# truth (/_sim/log, /_sim/records), and exact comparisons of the staging
# tables with it. Every wait is bounded.
package dbsync_sync_test;

use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use dbsync_test;
use Exporter 'import';

our @EXPORT = qw(new_worker_node sim_json sim_post_json sim_fault sim_append sim_log
  flexi_server_in query_json try_query wait_until subscription
  wait_caught_up check_change_log check_records worker_pids log_offset log_since);

my $json = JSON::PP->new->canonical->allow_nonref;

# A cluster with dbsync preloaded, its worker serving the given databases, a
# short naptime and backoff, and no statement logging (user mappings carry
# passwords). Extra settings come last, so they win.
sub new_worker_node
{
	my ($name, %opt) = @_;
	my $databases = $opt{databases} // 'postgres';
	my $conf = "dbsync.databases = '$databases'\n"
	  . "dbsync.naptime = 1\n"
	  . "dbsync.max_backoff = 1\n"
	  . "dbsync.timeout = '90s'\n"
	  . "log_statement = none\n"
	  . ($opt{extra} // '');
	return new_dbsync_node($name, $conf);
}

sub sim_json
{
	my ($path) = @_;
	return JSON::PP->new->utf8->decode(sim_get($path));
}

sub sim_post_json
{
	my ($path) = @_;
	return JSON::PP->new->utf8->decode(sim_post($path));
}

# Arms count faults of a mode for a company: sim_fault('live1', 'slow', seconds => 30).
sub sim_fault
{
	my ($company, $mode, %p) = @_;
	my $q = "company=$company&mode=$mode";
	$q .= "&$_=$p{$_}" for sort keys %p;
	return sim_post_json("/_sim/fault?$q");
}

# Appends count changes to a live company; returns its new global version.
sub sim_append
{
	my ($company, $count) = @_;
	return sim_post_json("/_sim/append?company=$company&count=$count")->{global_version};
}

# The simulator's change log from version start on: (global version, [[version, evidence, operation, id], ...]).
sub sim_log
{
	my ($company, $start) = @_;
	my $r = sim_json("/_sim/log?company=$company" . (defined $start ? "&start=$start" : ''));
	return ($r->{global_version}, $r->{changes});
}

# A Flexi server on the simulator (and the current user's mapping) in any database.
sub flexi_server_in
{
	my ($node, $db, $name, $company) = @_;
	my $port = sim_port();
	$node->safe_psql($db, qq{
		CREATE SERVER $name FOREIGN DATA WRAPPER dbsync
		  OPTIONS (api 'flexi', url 'http://127.0.0.1:$port', company '$company');
		CREATE USER MAPPING FOR CURRENT_USER SERVER $name OPTIONS (user 'api', password '$dbsync_test::PASSWORD');
	});
}

# A query whose single value is JSON, decoded (undef for NULL).
sub query_json
{
	my ($node, $sql, $db) = @_;
	my $out = $node->safe_psql($db // 'postgres', $sql);
	return $out eq '' ? undef : JSON::PP->new->utf8->decode($out);
}

# A query that may fail (the cluster restarting after a crash): its output, or undef.
sub try_query
{
	my ($node, $sql, $db) = @_;
	my ($ret, $out, $err) = $node->psql($db // 'postgres', $sql, on_error_die => 0, timeout => 30);
	return undef if !defined $ret || $ret != 0;
	return $out;
}

# Calls check every 0.1 s until it returns true or timeout seconds pass; returns its last value.
sub wait_until
{
	my ($timeout, $check) = @_;
	my $deadline = time + $timeout;
	while (1)
	{
		my $v = $check->();
		return $v if $v;
		return $v if time > $deadline;
		Time::HiRes::sleep(0.1);
	}
}

# The subscription_status row of a server (a hash), or undef (no row, or the query failed).
sub subscription
{
	my ($node, $server, $db) = @_;
	my $out = try_query($node,
		"SELECT row_to_json(s) FROM dbsync.subscription_status s WHERE server = '$server'", $db);
	return undef if !defined $out || $out eq '';
	return JSON::PP->new->utf8->decode($out);
}

# Waits until the subscription has read everything the simulator's log has
# from start on: phase sync, the last page read at the current global
# version, and the cursor past the last change. Returns true on success.
sub wait_caught_up
{
	my ($node, $server, $company, $start, $timeout, $db) = @_;
	my $last_state = '';
	my $ok = wait_until($timeout // 60, sub {
		my ($gv, $changes) = sim_log($company, $start);
		my $want_cursor = @$changes ? $changes->[-1][0] + 1 : $start;
		my $s = subscription($node, $server, $db) or return 0;
		$last_state = sprintf('phase %s, cursor %s, remote %s, failures %s, last_error %s; simulator at %s, cursor wanted %s',
			map { $_ // 'NULL' } @$s{qw(phase cursor_version remote_version failures last_error)}, $gv, $want_cursor);
		return $s->{phase} eq 'sync'
		  && defined $s->{remote_version} && $s->{remote_version} == $gv
		  && $s->{cursor_version} >= $want_cursor;
	});
	diag("subscription $server did not catch up: $last_state") unless $ok;
	return $ok;
}

sub change_key { join '|', @{ $_[0] } }

# The staged change log of a server equals the simulator's from start on:
# every version once, nothing else.
sub check_change_log
{
	my ($node, $server, $company, $start, $label, $db) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $staged = query_json($node, qq{
		SELECT coalesce(json_agg(json_build_array(c.version, c.evidence, c.operation, c.record_id) ORDER BY c.version), '[]')
		  FROM dbsync.change c JOIN dbsync.subscription s ON s.id = c.subscription_id
		 WHERE s.server = '$server'}, $db);
	my (undef, $expected) = sim_log($company, $start);
	my %want = map { change_key($_) => 1 } @$expected;
	my %seen;
	my @dup = grep { $seen{ change_key($_) }++ } @$staged;
	my @extra = grep { !$want{ change_key($_) } } @$staged;
	my @missing = grep { !$seen{ change_key($_) } } @$expected;
	is(scalar(@$staged), scalar(@$expected), "$label: as many staged changes as the simulator has from $start");
	ok(!@dup && !@extra && !@missing,
		"$label: staged log equals the simulator's from version $start (" . scalar(@$expected) . ' changes)')
	  or diag('missing: ' . join(', ', map { change_key($_) } @missing[0 .. ($#missing < 9 ? $#missing : 9)])
		  . "\nextra: " . join(', ', map { change_key($_) } @extra[0 .. ($#extra < 9 ? $#extra : 9)])
		  . "\ntwice: " . join(', ', map { change_key($_) } @dup[0 .. ($#dup < 9 ? $#dup : 9)]));
	return scalar(@$expected);
}

# dbsync.record of a server equals the simulator's records, evidence by
# evidence: the existing ones with their payload (as JSON) and the version of
# their last change since start (start - 1 when untouched since the
# load); as deleted, exactly those whose last change since start is a
# delete. Nothing of another evidence.
sub check_records
{
	my ($node, $server, $company, $start, $label, $db) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my (undef, $all) = sim_log($company);
	my (undef, $since) = sim_log($company, $start);
	my %evidences = map { $_->[1] => 1 } @$all;
	my %last;    # "evidence|id" -> [version, operation] of its last change since start
	$last{"$_->[1]|$_->[3]"} = [ $_->[0], $_->[2] ] for @$since;

	my $staged_evidences = query_json($node, qq{
		SELECT coalesce(json_agg(DISTINCT r.evidence), '[]') FROM dbsync.record r
		  JOIN dbsync.subscription s ON s.id = r.subscription_id WHERE s.server = '$server'}, $db);
	my @foreign = grep { !$evidences{$_} } @$staged_evidences;
	ok(!@foreign, "$label: no records of evidences outside the company's log") or diag("@foreign");

	my (@problems, $nlive, $ndeleted);
	for my $ev (sort keys %evidences)
	{
		my $sim = sim_json("/_sim/records?company=$company&evidence=$ev");
		my $rows = query_json($node, qq{
			SELECT coalesce(json_agg(json_build_object('id', r.record_id, 'version', r.version,
			                         'deleted', r.deleted, 'payload', r.payload) ORDER BY r.record_id), '[]')
			  FROM dbsync.record r JOIN dbsync.subscription s ON s.id = r.subscription_id
			 WHERE s.server = '$server' AND r.evidence = '$ev'}, $db);
		my %staged = map { $_->{id} => $_ } @$rows;
		my %sim_live = map { $_->{id} => $_ } @{ $sim->{records} };
		for my $id (sort { $a <=> $b } keys %sim_live)
		{
			my $row = $staged{$id};
			# Untouched since the load: stamped one below the load's global version.
			my $want_version = $last{"$ev|$id"} ? $last{"$ev|$id"}[0] : $start - 1;
			if (!$row) { push @problems, "$ev $id: missing"; next; }
			if ($row->{deleted}) { push @problems, "$ev $id: deleted, exists in the simulator"; next; }
			push @problems, "$ev $id: payload " . $json->encode($row->{payload} // 'NULL') . ' instead of ' . $json->encode($sim_live{$id})
			  if !defined $row->{payload} || $json->encode($row->{payload}) ne $json->encode($sim_live{$id});
			push @problems, "$ev $id: version $row->{version} instead of $want_version"
			  if $row->{version} != $want_version;
			$nlive++;
		}
		my %sim_deleted = map { $_ => 1 } @{ $sim->{deleted} };
		for my $id (sort { $a <=> $b } keys %staged)
		{
			next if $sim_live{$id};
			my $row = $staged{$id};
			my $last = $last{"$ev|$id"};
			if (!$row->{deleted}) { push @problems, "$ev $id: staged as existing, not in the simulator"; next; }
			push @problems, "$ev $id: deleted, but the simulator does not list it as deleted" unless $sim_deleted{$id};
			push @problems, "$ev $id: deleted without a delete since $start"
			  unless $last && $last->[1] eq 'delete';
			push @problems, "$ev $id: version $row->{version} instead of " . ($last ? $last->[0] : 'none')
			  if $last && $row->{version} != $last->[0];
			$ndeleted++;
		}
		# Deleted since start: must be staged as deleted.
		for my $id (keys %sim_deleted)
		{
			my $last = $last{"$ev|$id"};
			push @problems, "$ev $id: deleted by version $last->[0], not staged"
			  if $last && $last->[1] eq 'delete' && !$staged{$id};
		}
	}
	$nlive //= 0;
	$ndeleted //= 0;
	ok(!@problems, "$label: records equal the simulator's ($nlive existing, $ndeleted deleted, "
		  . scalar(keys %evidences) . ' evidences)')
	  or diag(join("\n", @problems[0 .. ($#problems < 14 ? $#problems : 14)]) . "\n(" . scalar(@problems) . ' problems)');
}

# Pids of dbsync's background processes of a kind ('dbsync launcher', 'dbsync job runner'), optionally of one database.
sub worker_pids
{
	my ($node, $type, $datname) = @_;
	my $out = try_query($node, "SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity "
		  . "WHERE backend_type = '$type'" . (defined $datname ? " AND datname = '$datname'" : ''));
	return () unless defined $out;
	my @pids = split ' ', $out;
	return @pids;
}

sub log_offset
{
	my ($node) = @_;
	return -s $node->logfile;
}

sub log_since
{
	my ($node, $offset) = @_;
	return substr(slurp_file($node->logfile), $offset);
}

1;
