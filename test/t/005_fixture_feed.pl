# The real payloads: the worker stages company 'demo' (the 332 real changes of
# test/fixtures) exactly as the fixture has them, replayed from the start of
# the log, and a subscription with an initial load gets every real record at
# the global version and the log from there on.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use dbsync_test;
use dbsync_sync_test;

# The fixture: payloads as webhooks sent them; a version sent twice is one change.
my $fixture = JSON::PP->new->utf8->decode(slurp_file("$FindBin::RealBin/../fixtures/flexi-changes-real.json"));
my %by_version;
for my $payload (@$fixture)
{
	$by_version{ $_->{'@in-version'} } //= $_ for @{ $payload->{winstrom}{changes} };
}
my @versions = sort { $a <=> $b } keys %by_version;
is(scalar(@versions), 332, 'the fixture has 332 distinct versions');

# A timestamp as to_char(changed_at, 'YYYY-MM-DD HH24:MI:SS.US') prints it.
sub six_digits
{
	my ($ts) = @_;
	my ($s, $f) = split /\./, $ts, 2;
	$f //= '';
	return "$s." . $f . ('0' x (6 - length $f));
}
my @expected = map {
	my $c = $by_version{$_};
	[ 0 + $_, $c->{'@evidence'}, $c->{'@operation'}, 0 + $c->{id}, $c->{'external-ids'}, six_digits($c->{'@timestamp'}) ]
} @versions;

my $node = new_worker_node('fixture_feed');
flexi_server($node, 'demo_all', 'demo');
flexi_server($node, 'demo_load', 'demo');

# From the start of the log (no initial load), in pages of 50.
$node->safe_psql('postgres', "SELECT dbsync_subscribe('demo_all', start_version => 0, pull_interval => '1s', page_size => 50)");
ok(wait_caught_up($node, 'demo_all', 'demo', 0, 60), 'the worker read the whole demo log');
my $staged = query_json($node, q{
	SELECT json_agg(json_build_array(c.version, c.evidence, c.operation, c.record_id, to_json(c.external_ids),
	                                 to_char(c.changed_at, 'YYYY-MM-DD HH24:MI:SS.US')) ORDER BY c.version)
	  FROM dbsync.change c JOIN dbsync.subscription s ON s.id = c.subscription_id
	 WHERE s.server = 'demo_all'});
is(scalar(@$staged), 332, 'dbsync.change has 332 changes');
is_deeply([ map { $_->[0] } @$staged ], [ map { 0 + $_ } @versions ], "exactly the fixture's versions");
is_deeply($staged, \@expected,
	'in version order, each with the evidence, operation, id, external ids and timestamp of the fixture');
check_change_log($node, 'demo_all', 'demo', 0, 'demo from the start');
check_records($node, 'demo_all', 'demo', 0, 'demo from the start');
is($node->safe_psql('postgres', q{
	SELECT j.result->>'outcome' || ' ' || j.attempts FROM dbsync.job j
	  JOIN dbsync.subscription s ON s.id = j.subscription_id WHERE s.server = 'demo_all'}),
	'done 0', 'the worker ran it, without a failure');

# With an initial load: every record at the global version, the log from there.
my ($gv) = sim_log('demo');
$node->safe_psql('postgres', "SELECT dbsync_subscribe('demo_load', pull_interval => '1s', page_size => 20)");
ok(wait_caught_up($node, 'demo_load', 'demo', $gv, 60), "the worker loaded demo at global version $gv and caught up");
check_change_log($node, 'demo_load', 'demo', $gv, 'demo loaded');
check_records($node, 'demo_load', 'demo', $gv, 'demo loaded');

$node->stop;
done_testing();
