# A database whose dbsync is at another version than the installed build (a new
# package installed, ALTER EXTENSION dbsync UPDATE not run yet): the worker says
# so in a WARNING with the fix, runs none of its jobs (they would fail on the
# old tables), and runs them once the extension is updated. Other databases are
# served as usual meanwhile.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use dbsync_test;
use dbsync_sync_test;

my $node = new_worker_node('skew', databases => 'postgres, oldver');
my $current = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'dbsync'});
my $old = $node->safe_psql('postgres', q{SELECT max(version) FROM pg_available_extension_versions
	WHERE name = 'dbsync' AND version <> (SELECT default_version FROM pg_available_extensions WHERE name = 'dbsync')});
like($old, qr/^\d+\.\d+$/, "an older version to install ($old, the build is $current)");

my $off = log_offset($node);
$node->safe_psql('postgres', 'CREATE DATABASE oldver');
$node->safe_psql('oldver', "CREATE EXTENSION dbsync VERSION '$old'");
$node->safe_psql('oldver', q{SELECT dbsync_job_enqueue('noop')});

my $warning = qr/WARNING:  dbsync: database "oldver" has dbsync \Q$old\E installed, but this build is \Q$current\E: its jobs do not run/;
ok(wait_until(30, sub { log_since($node, $off) =~ $warning }), 'the worker warns that the database is at the old version');
like(log_since($node, $off), qr/HINT:  Run ALTER EXTENSION dbsync UPDATE in that database\./, 'with the fix as a hint');

# Served databases at the right version run their jobs meanwhile.
$node->safe_psql('postgres', q{SELECT dbsync_job_enqueue('noop')});
ok(wait_until(30, sub { $node->safe_psql('postgres', q{SELECT count(*) FROM dbsync.job WHERE kind = 'noop' AND state = 'done'}) eq '1' }),
	'a job of an up-to-date database runs');

# A few more looks of the worker (dbsync.naptime = 1 s): the old database's job never starts.
my @warnings = log_since($node, $off) =~ /$warning/g;
ok(wait_until(30, sub { my @w = log_since($node, $off) =~ /$warning/g; @w >= @warnings + 2 }),
	'the worker looked again (and warned again)');
is($node->safe_psql('oldver', q{SELECT string_agg(state || ':' || attempts, ',') FROM dbsync.job WHERE kind = 'noop'}),
	'pending:0', 'the old database\'s job did not run');
unlike(log_since($node, $off), qr/ERROR: /, 'and nothing failed on the old tables');

# The fix: the update, and the job runs.
$node->safe_psql('oldver', 'ALTER EXTENSION dbsync UPDATE');
is($node->safe_psql('oldver', q{SELECT extversion FROM pg_extension WHERE extname = 'dbsync'}), $current, 'updated');
ok(wait_until(30, sub { $node->safe_psql('oldver', q{SELECT string_agg(state, ',') FROM dbsync.job WHERE kind = 'noop'}) eq 'done' }),
	'after ALTER EXTENSION dbsync UPDATE its job runs');
my $after = log_offset($node);
$node->safe_psql('oldver', q{SELECT dbsync_job_enqueue('noop')});
ok(wait_until(30, sub { $node->safe_psql('oldver', q{SELECT count(*) FROM dbsync.job WHERE kind = 'noop' AND state = 'done'}) eq '2' }),
	'and so do new ones');
unlike(log_since($node, $after), $warning, 'no more warnings');

$node->stop;
done_testing();
