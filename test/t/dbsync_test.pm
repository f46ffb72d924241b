# Shared by the TAP tests: a cluster with dbsync preloaded and servers on the
# API simulator that test/run-suites started (its port in DBSYNC_SIM_PORT).
package dbsync_test;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use Test::More;
use HTTP::Tiny;
use Exporter 'import';

our @EXPORT = qw(sim_port new_dbsync_node flexi_server sim_get sim_post);

our $PASSWORD = 'S3cr3t-pw';

sub sim_port
{
	my $port = $ENV{DBSYNC_SIM_PORT};
	BAIL_OUT('DBSYNC_SIM_PORT is not set: run the suites through test/check') unless $port;
	return $port;
}

sub new_dbsync_node
{
	my ($name, $extra_conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'dbsync'\n" . ($extra_conf // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION dbsync');
	return $node;
}

# Declares a Flexi server on the simulator with the current user's mapping.
sub flexi_server
{
	my ($node, $name, $company, $options) = @_;
	my $port = sim_port();
	$options = $options ? ", $options" : '';
	$node->safe_psql('postgres', qq{
		CREATE SERVER $name FOREIGN DATA WRAPPER dbsync
		  OPTIONS (api 'flexi', url 'http://127.0.0.1:$port', company '$company'$options);
		CREATE USER MAPPING FOR CURRENT_USER SERVER $name OPTIONS (user 'api', password '$PASSWORD');
	});
}

sub sim_get
{
	my ($path) = @_;
	my $r = HTTP::Tiny->new->get('http://127.0.0.1:' . sim_port() . $path);
	die "simulator GET $path: $r->{status}" unless $r->{success};
	return $r->{content};
}

sub sim_post
{
	my ($path) = @_;
	my $r = HTTP::Tiny->new->post('http://127.0.0.1:' . sim_port() . $path);
	die "simulator POST $path: $r->{status}" unless $r->{success};
	return $r->{content};
}

1;
