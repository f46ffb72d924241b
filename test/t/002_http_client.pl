# One connection serves a backend's successive requests (HTTP keep-alive), a
# failed request does not poison the connection pool, and requests say who
# sends them and that compressed replies are welcome.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use dbsync_test;

my $node = new_dbsync_node('keepalive');
flexi_server($node, 'flexi', 'demo');
flexi_server($node, 'broken', 'status-503');

sim_post('/_sim/reset');
$node->safe_psql('postgres', q{
	DO $$
	BEGIN
	  FOR i IN 1..20 LOOP
	    PERFORM * FROM dbsync_changes_fetch('flexi', start => 3656477 + i * 10, "limit" => 10);
	  END LOOP;
	END $$;
});
my $stats = sim_get('/_sim/stats');
like($stats, qr/"requests":\s*20\b/, '20 requests reached the simulator');
like($stats, qr/"api_connections":\s*1\b/, 'over one connection');

# An HTTP error keeps the connection; a fresh session opens its own.
sim_post('/_sim/reset');
$node->safe_psql('postgres', q{
	DO $$
	BEGIN
	  BEGIN
	    PERFORM * FROM dbsync_changes_fetch('broken');
	  EXCEPTION WHEN fdw_error THEN NULL;
	  END;
	  PERFORM * FROM dbsync_changes_fetch('flexi', "limit" => 10);
	  PERFORM * FROM dbsync_changes_fetch('flexi', "limit" => 10);
	END $$;
});
$stats = sim_get('/_sim/stats');
like($stats, qr/"requests":\s*3\b/, 'three requests after an HTTP error');
like($stats, qr/"api_connections":\s*1\b/, 'still one connection');

# Every request names dbsync and its version, and accepts compressed replies.
sim_post('/_sim/reset');
flexi_server($node, 'zipped', 'gzip');
is($node->safe_psql('postgres', q{SELECT count(*) FROM dbsync_changes_fetch('zipped', "limit" => 1000)}),
	'332', 'a gzip-compressed page is read whole');
$stats = sim_get('/_sim/stats');
my $version = $node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'dbsync'});
like($version, qr/^\d+\.\d+$/, "the installed version ($version)");
like($stats, qr{"user_agents":\s*\{"dbsync/\Q$version\E":\s*1\}}, "User-Agent is dbsync/$version");
like($stats, qr{"accept_encodings":\s*\{"[^"]*gzip[^"]*":\s*1\}}, 'Accept-Encoding offers gzip');

$node->stop;
done_testing();
