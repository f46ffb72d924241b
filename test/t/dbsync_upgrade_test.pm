# Shared by the TAP tests of the Odoo upgrade functions: a server on the
# simulator's Odoo module, its control endpoints (/_sim/odoo/*, path-keyed
# faults), the simulator's sparse download pattern, streamed checks of big
# files, and a backend's memory and I/O counters from /proc.
package dbsync_upgrade_test;

use strict;
use warnings;
use Digest::SHA;
use JSON::PP;
use Test::More;
use dbsync_test;
use Exporter 'import';

our @EXPORT = qw(odoo_server sim_odoo sim_odoo_state sim_path_fault sparse_block pattern_sha256
  check_pattern_file file_sha256 proc_status proc_io sqlstate_of make_sparse_file MiB GiB);

use constant MiB => 1 << 20;
use constant GiB => 1 << 30;

# An odoo_upgrade server on the simulator, with the current user's mapping (contract, e-mail).
sub odoo_server
{
	my ($node, $name) = @_;
	my $port = sim_port();
	$node->safe_psql('postgres', qq{
		CREATE SERVER $name FOREIGN DATA WRAPPER dbsync OPTIONS (api 'odoo_upgrade', url 'http://127.0.0.1:$port');
		CREATE USER MAPPING FOR CURRENT_USER SERVER $name OPTIONS (contract 'M123456-abcdef', email 'dba\@example.com');
	});
}

# The simulator's own view of a request (the status reply plus "sim": upload_bytes, upload_sha256, polls, ...).
# Never advances its state.
sub sim_odoo
{
	my ($id) = @_;
	return JSON::PP->new->utf8->decode(sim_get("/_sim/odoo/requests?request=$id"))->{requests}[0];
}

# Forces a request's state at the simulator (done: its upgraded dump can be downloaded).
sub sim_odoo_state
{
	my ($id, $state) = @_;
	return JSON::PP->new->utf8->decode(sim_post("/_sim/odoo/state?request=$id&state=$state"))->{request};
}

# Arms a fault for the requests of a path (P ending in "/*": every path under it).
sub sim_path_fault
{
	my ($path, $mode, %p) = @_;
	my $q = "path=$path&mode=$mode";
	$q .= "&$_=$p{$_}" for sort keys %p;
	return JSON::PP->new->utf8->decode(sim_post("/_sim/fault?$q"));
}

# The 1 MiB the simulator's sparse downloads repeat (odoo.py sparse_block()).
my $block;

sub sparse_block
{
	$block //= join '', map { Digest::SHA::sha256("dbsync-sim sparse $_") } 0 .. (MiB / 32 - 1);
	return $block;
}

# SHA-256 (hex) of the first $bytes of the sparse pattern, computed here.
sub pattern_sha256
{
	my ($bytes) = @_;
	my $sha = Digest::SHA->new(256);
	my $b = sparse_block();
	for (my $left = $bytes; $left > 0; $left -= MiB)
	{
		$sha->add($left >= MiB ? $b : substr($b, 0, $left));
	}
	return $sha->hexdigest;
}

# Reads a file once, 1 MiB at a time: (bytes, sha256 hex, offset of the first
# byte that differs from the sparse pattern or undef).
sub check_pattern_file
{
	my ($path) = @_;
	my $b = sparse_block();
	my $sha = Digest::SHA->new(256);
	my ($bytes, $bad) = (0, undef);
	open(my $fh, '<:raw', $path) or die "open $path: $!";
	while (1)
	{
		my $buf;
		my $n = sysread($fh, $buf, MiB);
		die "read $path: $!" unless defined $n;
		last if $n == 0;
		my $at = $bytes % MiB;
		if (!defined $bad)
		{
			# Regular files give whole MiB reads, so $at is 0 but for a short read.
			my $want = $at == 0 ? ($n == MiB ? $b : substr($b, 0, $n)) : substr($b x 2, $at, $n);
			if ($buf ne $want)
			{
				my $i = 0;
				$i++ while substr($buf, $i, 1) eq substr($want, $i, 1);
				$bad = $bytes + $i;
			}
		}
		$sha->add($buf);
		$bytes += $n;
	}
	close $fh;
	return ($bytes, $sha->hexdigest, $bad);
}

sub file_sha256
{
	my ($path) = @_;
	my $sha = Digest::SHA->new(256);
	open(my $fh, '<:raw', $path) or die "open $path: $!";
	while (1)
	{
		my $buf;
		my $n = sysread($fh, $buf, 4 * MiB);
		die "read $path: $!" unless defined $n;
		last if $n == 0;
		$sha->add($buf);
	}
	close $fh;
	return $sha->hexdigest;
}

# A file of $size bytes that starts with $head and is a hole after it.
sub make_sparse_file
{
	my ($path, $size, $head) = @_;
	open(my $fh, '>:raw', $path) or die "create $path: $!";
	print $fh ($head // '') or die "write $path: $!";
	truncate($fh, $size) or die "truncate $path: $!";
	close $fh or die "close $path: $!";
	return $path;
}

# /proc/<pid>/status as name => kB (VmHWM, VmRSS, RssAnon, ...).
sub proc_status
{
	my ($pid) = @_;
	my %s;
	open(my $fh, '<', "/proc/$pid/status") or die "/proc/$pid/status: $!";
	while (<$fh>) { $s{$1} = $2 if /^(\w+):\s+(\d+) kB$/; }
	close $fh;
	return \%s;
}

# /proc/<pid>/io as name => count (rchar, wchar, ...).
sub proc_io
{
	my ($pid) = @_;
	my %s;
	open(my $fh, '<', "/proc/$pid/io") or die "/proc/$pid/io: $!";
	while (<$fh>) { $s{$1} = $2 if /^(\w+):\s+(\d+)$/; }
	close $fh;
	return \%s;
}

# The SQLSTATE of the first ERROR in psql's output (VERBOSITY verbose), or ''.
sub sqlstate_of
{
	my ($stderr) = @_;
	return ($stderr // '') =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : '';
}

1;
