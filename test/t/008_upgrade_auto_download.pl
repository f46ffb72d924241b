# The worker follows a processed upgrade request to its end and, where asked,
# downloads the upgraded dump into dbsync.upgrade_download_dir.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA;
use dbsync_test;

my $dir = PostgreSQL::Test::Utils::tempdir();
my $node = new_dbsync_node('upgrade_dl',
	"dbsync.databases = 'postgres'\ndbsync.naptime = 1\ndbsync.upgrade_poll_interval = 1\n"
	  . "dbsync.upgrade_download_dir = '$dir'\nlog_statement = none\n");
my $port = sim_port();
$node->safe_psql('postgres', qq{
	CREATE SERVER odoo FOREIGN DATA WRAPPER dbsync OPTIONS (api 'odoo_upgrade', url 'http://127.0.0.1:$port');
	CREATE USER MAPPING FOR CURRENT_USER SERVER odoo OPTIONS (contract 'M123456-abcdef', email 'dba\@example.com');
});

my $dump = "$dir/source.dump";
open(my $fh, '>', $dump) or die;
print $fh "PGDMP pretend dump line $_\n" for 1 .. 20000;
close $fh;

my $id = $node->safe_psql('postgres',
	q{SELECT id FROM dbsync_upgrade_create('odoo', target => '16.0', aim => 'test', filename => 'auto/dl.dump')});
like($id, qr/^\d+$/, 'the request was created');
$node->safe_psql('postgres', qq{SELECT * FROM dbsync_upgrade_upload($id, '$dump')});
is($node->safe_psql('postgres', qq{SELECT dbsync_upgrade_process($id, download => true)}), 'pending',
	'processing, with the download asked for');

ok($node->poll_query_until('postgres', qq{SELECT downloaded_at IS NOT NULL FROM dbsync.upgrade_request WHERE id = $id}),
	'the worker downloaded the dump without any further call');
my ($bytes, $sha, $to) = split /\|/,
  $node->safe_psql('postgres', qq{SELECT downloaded_bytes, downloaded_sha256, downloaded_to FROM dbsync.upgrade_request WHERE id = $id});
is($to, "$dir/$id-auto_dl.dump", 'into the configured directory, under a safe name');
ok(-f $to, 'the file is there');
is(-s $to, $bytes, 'with the recorded size');
is(Digest::SHA->new(256)->addfile($to)->hexdigest, $sha, 'and the recorded SHA-256');
ok(!-e "$to.partial", 'no partial file is left');
is($node->safe_psql('postgres', qq{SELECT string_agg(state, ',' ORDER BY entered_at) FROM dbsync.upgrade_state WHERE request_id = $id}),
	'draft,pending,progress,done', 'every state was recorded, in order');
ok($node->poll_query_until('postgres',
		qq{SELECT state = 'done' FROM dbsync.job WHERE kind = 'upgrade_poll' AND args->>'request_id' = '$id'}),
	'the poll job ended with the request');

# Without a directory, asking for the download is refused before anything is sent.
$node->safe_psql('postgres', q{ALTER SYSTEM SET dbsync.upgrade_download_dir = ''; SELECT pg_reload_conf();});
$node->poll_query_until('postgres', q{SELECT current_setting('dbsync.upgrade_download_dir') = ''});
my $id2 = $node->safe_psql('postgres',
	q{SELECT id FROM dbsync_upgrade_create('odoo', target => '16.0', aim => 'test', filename => 'b.dump')});
$node->safe_psql('postgres', qq{SELECT * FROM dbsync_upgrade_upload($id2, '$dump')});
my ($ret, $out, $err) = $node->psql('postgres', qq{SELECT dbsync_upgrade_process($id2, download => true)});
like($err, qr/the worker has no directory to download into/, 'no directory: refused');
is($node->safe_psql('postgres', qq{SELECT state FROM dbsync.upgrade_request WHERE id = $id2}), 'draft',
	'and the request was not processed');

$node->stop;
done_testing();
