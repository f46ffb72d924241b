# Odoo upgrade requests against the simulator, end to end: a 3 GiB dump goes
# up and a 3 GiB upgraded dump comes down byte-exact while the backend's
# memory stays flat, and 200 MB come down into a large object;
# pg_cancel_backend interrupts an upload or a download at once and leaves
# nothing half-written; the worker alone follows a processed request to 'done'
# and tells LISTEN dbsync_upgrade of every state; truncated, terminated and reset
# transfers fail cleanly; no request key (nor a URL, which carries it)
# reaches the server log or an error.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use dbsync_test;
use dbsync_sync_test;    # wait_until
use dbsync_upgrade_test;

my $t_start = time;
sim_post('/_sim/reset');    # request ids from 10534, default poll counts, no faults armed

# log_statement is off: with it, PostgreSQL itself would log statement texts.
my $node = new_dbsync_node('upgrade',
	"dbsync.databases = 'postgres'\n"
	  . "dbsync.upgrade_poll_interval = '1s'\n"
	  . "log_statement = none\n"
	  . "log_min_messages = debug1\n");
odoo_server($node, 'odoo');

my $dir = PostgreSQL::Test::Utils::tempdir;
my $head = "--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15.4\n\n";
my $small = "$dir/small.dump";
{
	open(my $fh, '>:raw', $small) or die "create $small: $!";
	print $fh $head, map { "INSERT INTO t VALUES ($_, 'row $_');\n" } 1 .. 20000;
	close $fh;
}
my $small_bytes = -s $small;
my $small_sha = file_sha256($small);

# Every error text a client saw (checked for keys at the end).
my @error_texts;

# A session of its own: verbose errors (with their SQLSTATE), a fresh timeout per query.
sub session
{
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->set_query_timer_restart;
	$s->query_safe('\set VERBOSITY verbose');
	return $s;
}

# Runs a statement that must fail in a session: (SQLSTATE, error text).
sub run_fail
{
	my ($s, $sql) = @_;
	$s->query($sql);
	my $err = $s->{stderr};
	$s->{stderr} = '';
	push @error_texts, $err;
	return (sqlstate_of($err), $err);
}

sub create_request
{
	my ($s, $filename) = @_;
	return $s->query_safe(
		"SELECT id FROM dbsync_upgrade_create('odoo', target => '16.0', aim => 'test', filename => '$filename')");
}

sub row
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

sub active_in
{
	my ($pid, $function) = @_;
	return row("SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND state = 'active' "
		  . "AND query LIKE '%$function%'") eq '1';
}

# pg_cancel_backend of a session busy in a call: (seconds until the session answered again, SQLSTATE, error).
sub cancel_session
{
	my ($s, $pid) = @_;
	my $t0 = time;
	row("SELECT pg_cancel_backend($pid)");
	my ($state, $err) = run_fail($s, 'SELECT 1');
	return (time - $t0, $state, $err);
}

######## 1. Streaming: 3 GiB up and down in flat memory; 200 MB into a large object

my $s = session();
my $pid = $s->query_safe('SELECT pg_backend_pid()');

# Warm-up in the measured session (libcurl, OpenSSL, PL/pgSQL, plans): what
# follows measures the transfers only.
my $warm = create_request($s, 'warm.sparse-8M');
$s->query_safe("SELECT * FROM dbsync_upgrade_upload($warm, '$small')");
sim_odoo_state($warm, 'done');
is($s->query_safe("SELECT bytes FROM dbsync_upgrade_download($warm, '$dir/warm.out')"),
	8 * MiB, 'warm-up: an 8 MiB download');
unlink "$dir/warm.out";

my $src = make_sparse_file("$dir/big.dump", 3 * GiB, $head . "-- 3 GiB, a hole after this line\n");
my $big = create_request($s, 'big.sparse-3G');
my $m0 = proc_status($pid);
my $t0 = time;
my ($up_bytes, $up_sha) =
  split /\|/, $s->query_safe("SELECT bytes, sha256 FROM dbsync_upgrade_upload($big, '$src')");
my $t_up = time - $t0;
my $m1 = proc_status($pid);
note sprintf('upload of 3 GiB: %.1f s (%.0f MiB/s)', $t_up, 3072 / $t_up);
is($up_bytes, 3 * GiB, 'upload: dbsync_upgrade_upload reports 3221225472 bytes sent');
my $sim = sim_odoo($big);
is($sim->{sim}{upload_bytes}, 3 * GiB, 'upload: the simulator received exactly 3221225472 bytes');
is($up_sha, $sim->{sim}{upload_sha256}, "upload: the SHA-256 dbsync returned is the simulator's of what it received");
$t0 = time;
my $want_up_sha = file_sha256($src);
note sprintf('SHA-256 of the 3 GiB source computed here in %.1f s', time - $t0);
is($up_sha, $want_up_sha, 'upload: and the SHA-256 of the source file computed here');
is(row("SELECT uploaded_bytes, uploaded_sha256 = '$want_up_sha', filesize, postgresql, compressions, state "
		  . "FROM dbsync.upgrade_request WHERE id = $big"),
	'3221225472|t|3.00 Gb|15|{sql}|draft',
	"upload: recorded, with the service's reading of the dump (3.00 Gb, PostgreSQL 15, plain SQL)");

sim_odoo_state($big, 'done');
my $out = "$dir/upgraded.dump";
$t0 = time;
my ($dl_bytes, $dl_sha) =
  split /\|/, $s->query_safe("SELECT bytes, sha256 FROM dbsync_upgrade_download($big, '$out')");
my $t_dl = time - $t0;
my $m2 = proc_status($pid);
note sprintf('download of 3 GiB: %.1f s (%.0f MiB/s)', $t_dl, 3072 / $t_dl);
is($dl_bytes, 3 * GiB, 'download: dbsync_upgrade_download reports 3221225472 bytes');
is(-s $out, 3 * GiB, 'download: the server file has 3221225472 bytes');
ok(!-e "$out.partial", 'download: no .partial file is left');
$t0 = time;
my ($f_bytes, $f_sha, $bad) = check_pattern_file($out);
note sprintf('the 3 GiB download checked here in %.1f s', time - $t0);
is($f_bytes, 3 * GiB, 'download: 3221225472 bytes read back');
ok(!defined $bad, "download: every byte is the simulator's (sparse pattern)")
  or diag("first wrong byte at offset $bad");
is($f_sha, $dl_sha, 'download: the SHA-256 of the file computed here is the one dbsync returned');
is(row("SELECT downloaded_bytes, downloaded_sha256 = '$f_sha', downloaded_to FROM dbsync.upgrade_request WHERE id = $big"),
	"3221225472|t|$out", 'download: recorded with its size, SHA-256 and file');
is(sim_odoo($big)->{sim}{downloads}, 1, 'download: one GET of the dump reached the simulator');
unlink $out;

my $kb = sub { my ($m) = @_; sprintf('VmHWM %d kB, VmRSS %d kB, RssAnon %d kB', @$m{qw(VmHWM VmRSS RssAnon)}) };
note "backend $pid before the transfers: " . $kb->($m0);
note "backend $pid after the 3 GiB upload: " . $kb->($m1);
note "backend $pid after the 3 GiB download: " . $kb->($m2);
note sprintf('growth over both transfers: VmHWM %+d kB, RssAnon %+d kB',
	$m2->{VmHWM} - $m0->{VmHWM}, $m2->{RssAnon} - $m0->{RssAnon});
my $limit_kb = int(20_000_000 / 1024);    # 20 MB
cmp_ok($m1->{VmHWM} - $m0->{VmHWM}, '<', $limit_kb, 'memory: the 3 GiB upload raised peak RSS (VmHWM) by less than 20 MB');
cmp_ok($m2->{VmHWM} - $m0->{VmHWM}, '<', $limit_kb, 'memory: upload and download together raised VmHWM by less than 20 MB');
cmp_ok($m2->{RssAnon} - $m0->{RssAnon}, '<', $limit_kb, 'memory: anonymous RSS grew by less than 20 MB');

# 200 MB into a large object.
{
	my $lo = create_request($s, 'lo.sparse-200M');
	$s->query_safe("SELECT * FROM dbsync_upgrade_upload($lo, '$small')");
	sim_odoo_state($lo, 'done');
	my $l0 = proc_status($pid);
	$t0 = time;
	my ($oid, $bytes, $sha) = split /\|/, $s->query_safe("SELECT dump, bytes, sha256 FROM dbsync_upgrade_download($lo)");
	my $l1 = proc_status($pid);
	note sprintf('download of 200 MiB into large object %s: %.1f s; backend RssAnon %d -> %d kB, VmHWM %d -> %d kB',
		$oid, time - $t0, $l0->{RssAnon}, $l1->{RssAnon}, $l0->{VmHWM}, $l1->{VmHWM});
	is($bytes, 200 * MiB, 'large object: dbsync_upgrade_download reports 209715200 bytes');
	is(row("SELECT lo_lseek64(lo_open($oid, 262144), 0, 2)"), 200 * MiB, 'large object: it holds 209715200 bytes');
	my $want = pattern_sha256(200 * MiB);
	is($sha, $want, "large object: the SHA-256 dbsync returned is the simulator pattern's, computed here");
	is(row("SELECT encode(sha256(lo_get($oid)), 'hex')"), $want, 'large object: and its content hashes to it');
	is(row("SELECT downloaded_bytes, downloaded_to FROM dbsync.upgrade_request WHERE id = $lo"),
		"209715200|large object $oid", 'large object: recorded as downloaded to it');
	row("SELECT lo_unlink($oid)");
}

######## 2. Cancel: an upload and a download end at once, nothing half-written

# An upload in the middle of a 64 GiB (sparse) file.
{
	my $c = create_request($s, 'cancel.dump');
	$s->query_safe("SELECT * FROM dbsync_upgrade_upload($c, '$small')");
	my $huge = make_sparse_file("$dir/huge.dump", 64 * GiB, $head);
	my $rchar0 = proc_io($pid)->{rchar};
	$s->query_until(qr/started/, "\\echo started\nSELECT * FROM dbsync_upgrade_upload($c, '$huge');\n");
	ok(wait_until(30, sub { active_in($pid, 'dbsync_upgrade_upload') && proc_io($pid)->{rchar} - $rchar0 > 256 * MiB }),
		'cancel upload: the session is active in dbsync_upgrade_upload and has read over 256 MiB of the file');
	my ($elapsed, $state, $err) = cancel_session($s, $pid);
	my $read = proc_io($pid)->{rchar} - $rchar0;
	note sprintf('cancel of the upload took %.3f s, after %.0f MiB of 64 GiB', $elapsed, $read / MiB);
	is($state, '57014', 'cancel upload: SQLSTATE 57014');
	like($err, qr/canceling statement due to user request/, 'cancel upload: the standard cancel error');
	cmp_ok($elapsed, '<', 5, 'cancel upload: the session answered again within 5 s');
	is(row("SELECT uploaded_bytes, uploaded_sha256 = '$small_sha', state FROM dbsync.upgrade_request WHERE id = $c"),
		"$small_bytes|t|draft", 'cancel upload: uploaded_bytes and uploaded_sha256 are those of the earlier upload');
	my $r = sim_odoo($c);
	is("$r->{sim}{upload_bytes} $r->{sim}{upload_sha256} $r->{state}", "$small_bytes $small_sha draft",
		'cancel upload: the service kept the earlier upload');
	is($s->query_safe("SELECT bytes || ' ' || sha256 FROM dbsync_upgrade_upload($c, '$small')"),
		"$small_bytes $small_sha", 'cancel upload: the same session uploads again normally');
	unlink $huge;
}

# A download in the middle of a 64 GiB body.
my $d = create_request($s, 'cancel.sparse-64G');
$s->query_safe("SELECT * FROM dbsync_upgrade_upload($d, '$small')");
sim_odoo_state($d, 'done');
{
	my $target = "$dir/cancelled.dump";
	$s->query_until(qr/started/, "\\echo started\nSELECT * FROM dbsync_upgrade_download($d, '$target');\n");
	ok(wait_until(30, sub { active_in($pid, 'dbsync_upgrade_download') && (-s "$target.partial" // 0) > 256 * MiB }),
		'cancel download: the session is active in dbsync_upgrade_download and has written over 256 MiB');
	my ($elapsed, $state, $err) = cancel_session($s, $pid);
	note sprintf('cancel of the download took %.3f s', $elapsed);
	is($state, '57014', 'cancel download: SQLSTATE 57014');
	cmp_ok($elapsed, '<', 5, 'cancel download: the session answered again within 5 s');
	ok(!-e $target, 'cancel download: no target file');
	ok(!-e "$target.partial", 'cancel download: no .partial file');
	is(row("SELECT downloaded_bytes IS NULL AND downloaded_to IS NULL FROM dbsync.upgrade_request WHERE id = $d"),
		't', 'cancel download: nothing recorded as downloaded');
}

# A download whose server has not answered yet (slow fault): the .partial file exists, and goes.
{
	my $target = "$dir/slow.dump";
	sim_path_fault('/database/eu1/*', 'slow', seconds => 30);
	$s->query_until(qr/started/, "\\echo started\nSELECT * FROM dbsync_upgrade_download($d, '$target');\n");
	ok(wait_until(20, sub { active_in($pid, 'dbsync_upgrade_download') && -e "$target.partial" }),
		'cancel waiting download: the session waits for the answer, its .partial file created');
	Time::HiRes::sleep(0.5);
	my ($elapsed, $state, $err) = cancel_session($s, $pid);
	note sprintf('cancel of the download waiting for its answer took %.3f s', $elapsed);
	is($state, '57014', 'cancel waiting download: SQLSTATE 57014');
	cmp_ok($elapsed, '<', 5, 'cancel waiting download: the session answered again within 5 s');
	ok(!-e $target && !-e "$target.partial", 'cancel waiting download: neither the file nor its .partial is left');
	is($s->query_safe("SELECT bytes FROM dbsync_upgrade_download($warm, '$target')"), 8 * MiB,
		'cancel: the same session downloads to that path normally afterwards');
	unlink $target;
}

######## 3. The worker follows a processed request to its end

{
	my $listener = $node->background_psql('postgres');
	my $listener_pid = $listener->query_safe('SELECT pg_backend_pid()');
	$listener->query_safe('LISTEN dbsync_upgrade');
	my $w = session();
	my $wpid = $w->query_safe('SELECT pg_backend_pid()');
	my $wid = create_request($w, 'worker.dump');
	$w->query_safe("SELECT * FROM dbsync_upgrade_upload($wid, '$small')");
	my $t0 = time;
	is($w->query_safe("SELECT dbsync_upgrade_process($wid)"), 'pending', 'worker: dbsync_upgrade_process says pending');
	$w->quit;

	# From now on nothing calls dbsync: the simulator tells how far the request got.
	ok(wait_until(30, sub { sim_odoo($wid)->{state} eq 'done' }), 'worker: the service reached done by the worker polling it');
	ok(wait_until(10, sub { row("SELECT state FROM dbsync.upgrade_request WHERE id = $wid") eq 'done' }),
		'worker: dbsync.upgrade_request says done');
	note sprintf('from dbsync_upgrade_process to done: %.1f s (poll interval 1 s)', time - $t0);
	is(row("SELECT string_agg(state, ',' ORDER BY entered_at) FROM dbsync.upgrade_state WHERE request_id = $wid"),
		'draft,pending,progress,done', 'worker: dbsync.upgrade_state has draft, pending, progress, done, in order');
	is(row("SELECT state || ' ' || attempts || ' ' || (last_error IS NULL) || ' ' || (result->>'state') || ' ' "
			  . "|| (result->>'request_id') || ' ' || repeat_every FROM dbsync.job "
			  . "WHERE kind = 'upgrade_poll' AND args->>'request_id' = '$wid'"),
		"done 0 true done $wid 00:00:01", "worker: its upgrade_poll job ended in state 'done' with the request's state");

	my @notes;
	ok(wait_until(10, sub {
		my $out = $listener->query_safe('SELECT 1');
		while ($out =~ /Asynchronous notification "dbsync_upgrade" with payload "(.*)" received from server process with PID (\d+)\./g)
		{
			push @notes, { %{ JSON::PP->new->decode($1) }, pid => $2 };
		}
		return grep { $_->{id} == $wid && $_->{state} eq 'done' } @notes;
	}), 'worker: LISTEN dbsync_upgrade heard of done');
	my @mine = grep { $_->{id} == $wid } @notes;
	is(join(',', map { $_->{state} } @mine), 'draft,pending,progress,done',
		'worker: one notification per state change, in order');
	is(join(',', map { $_->{pid} == $wpid ? 'session' : $_->{pid} == $listener_pid ? 'listener' : 'other' } @mine),
		'session,session,other,other', 'worker: progress and done were notified by another backend than the caller (the runner)');
	$listener->quit;

	# The job ended: nobody asks the service any more.
	my $polls = sim_odoo($wid)->{sim}{polls};
	my $last = row("SELECT last_polled_at FROM dbsync.upgrade_request WHERE id = $wid");
	Time::HiRes::sleep(2.5);
	is(sim_odoo($wid)->{sim}{polls}, $polls, 'worker: no status call after done (2.5 s, poll interval 1 s)');
	is(row("SELECT last_polled_at FROM dbsync.upgrade_request WHERE id = $wid"), $last, 'worker: last_polled_at unchanged');
}

######## 5. Nothing half-written: a truncated, a terminated and an unrenamable download; a reset upload

{
	my $tr = create_request($s, 'trunc.sparse-64M');
	$s->query_safe("SELECT * FROM dbsync_upgrade_upload($tr, '$small')");
	sim_odoo_state($tr, 'done');
	my $target = "$dir/truncated.dump";
	sim_path_fault('/database/eu1/*', 'truncated');
	my ($state, $err) = run_fail($s, "SELECT * FROM dbsync_upgrade_download($tr, '$target')");
	is($state, '08006', 'truncated download: SQLSTATE 08006');
	like($err, qr/reply of server "odoo" to GET the upgraded dump of request $tr was truncated/,
		'truncated download: the error says so, naming the request, not the URL');
	like($err, qr/The connection closed after 33554432 bytes/, 'truncated download: after half the 64 MiB');
	ok(!-e $target, 'truncated download: no target file');
	ok(!-e "$target.partial", 'truncated download: no .partial file');
	is(row("SELECT downloaded_bytes IS NULL FROM dbsync.upgrade_request WHERE id = $tr"), 't',
		'truncated download: nothing recorded');

	my $los = row('SELECT count(*) FROM pg_largeobject_metadata');
	sim_path_fault('/database/eu1/*', 'truncated');
	($state, $err) = run_fail($s, "SELECT * FROM dbsync_upgrade_download($tr)");
	is($state, '08006', 'truncated download into a large object: SQLSTATE 08006');
	is(row('SELECT count(*) FROM pg_largeobject_metadata'), $los, 'truncated download into a large object: no large object left');

	my ($bytes, $sha) = split /\|/, $s->query_safe("SELECT bytes, sha256 FROM dbsync_upgrade_download($tr, '$target')");
	my ($f_bytes, $f_sha, $bad) = check_pattern_file($target);
	is("$bytes $f_bytes", (64 * MiB) . ' ' . (64 * MiB), 'truncated download: then a whole one, 67108864 bytes');
	ok(!defined $bad && $sha eq $f_sha && $sha eq pattern_sha256(64 * MiB), 'truncated download: its bytes and SHA-256 are exact');
	unlink $target;
}

# pg_terminate_backend in the middle of a download (as a fast shutdown does):
# the backend exits at once, and must not leave its .partial file behind.
{
	my $t = session();
	my $tpid = $t->query_safe('SELECT pg_backend_pid()');
	my $target = "$dir/terminated.dump";
	$t->query_until(qr/started/, "\\echo started\nSELECT * FROM dbsync_upgrade_download($d, '$target');\n");
	ok(wait_until(30, sub { active_in($tpid, 'dbsync_upgrade_download') && (-s "$target.partial" // 0) > 64 * MiB }),
		'terminate download: the session is active in dbsync_upgrade_download and has written over 64 MiB');
	my $t0 = time;
	row("SELECT pg_terminate_backend($tpid)");
	ok(wait_until(10, sub { row("SELECT count(*) FROM pg_stat_activity WHERE pid = $tpid") eq '0' }),
		'terminate download: the backend exited');
	note sprintf('the backend exited %.3f s after pg_terminate_backend', time - $t0);
	eval { $t->quit };    # its psql lost the connection
	ok(!-e $target, 'terminate download: no target file');
	ok(!-e "$target.partial", 'terminate download: no .partial file left behind')
	  or diag(sprintf('%s.partial is left, %d bytes', $target, -s "$target.partial"));
	my ($state, $err) = run_fail($s, "SELECT bytes FROM dbsync_upgrade_download($warm, '$target')");
	is($state, '', 'terminate download: the next download to that path works')
	  or diag($err);
	unlink $target, "$target.partial";
}

# A download that arrives whole but cannot take its name (the path is a
# directory): it fails, and its .partial file must not stay.
{
	my $target = "$dir/a-directory";
	mkdir $target or die "mkdir $target: $!";
	my ($state, $err) = run_fail($s, "SELECT * FROM dbsync_upgrade_download($warm, '$target')");
	like($err, qr/could not rename file "\Q$target\E.partial" to "\Q$target\E": Is a directory/,
		'download onto a directory: fails when it renames the finished file');
	ok(!-e "$target.partial", 'download onto a directory: no .partial file left behind')
	  or diag(sprintf('%s.partial is left, %d bytes', $target, -s "$target.partial"));
	ok(-d $target, 'download onto a directory: the directory is untouched');
	unlink "$target.partial";
	rmdir $target;
}

{
	my $rs = create_request($s, 'reset.dump');
	$s->query_safe("SELECT * FROM dbsync_upgrade_upload($rs, '$small')");
	my $mid = make_sparse_file("$dir/mid.dump", 256 * MiB, $head);
	sim_path_fault('/database/v1/upload', 'reset');
	# A fresh session, whose first request opens a new connection (libcurl
	# resends a request that fails on a reused one).
	my ($ret, $stdout, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT * FROM dbsync_upgrade_upload($rs, '$mid')",
		timeout => 60);
	push @error_texts, $err;
	is(sqlstate_of($err), '08006', 'reset upload: SQLSTATE 08006');
	like($err, qr{connection to server "odoo" was lost during POST /database/v1/upload}, 'reset upload: the error says so');
	is(row("SELECT uploaded_bytes, uploaded_sha256 = '$small_sha', state FROM dbsync.upgrade_request WHERE id = $rs"),
		"$small_bytes|t|draft", 'reset upload: the earlier upload is still the recorded one');
	my $r = sim_odoo($rs);
	is("$r->{sim}{upload_bytes} $r->{sim}{upload_sha256}", "$small_bytes $small_sha", 'reset upload: and the service kept it');
	my ($bytes, $sha) = split /\|/, $s->query_safe("SELECT bytes, sha256 FROM dbsync_upgrade_upload($rs, '$mid')");
	is("$bytes $sha", (256 * MiB) . ' ' . sim_odoo($rs)->{sim}{upload_sha256}, 'reset upload: then a whole one goes through');
	unlink $mid;
}

######## 4. Secrets: no key in the server log or in an error (last: the log then has every kind of failure)

my $off = -s $node->logfile;
{
	my $k = create_request($s, 'keys.dump');
	$s->query_safe("SELECT * FROM dbsync_upgrade_upload($k, '$small')");
	row("UPDATE dbsync.upgrade_request SET request_key = reverse(request_key) WHERE id = $k");
	my ($state, $err) = run_fail($s, "SELECT * FROM dbsync_upgrade_status($k)");
	is($state, '28000', 'wrong key: status fails with 28000');
	like($err, qr{refused /database/v1/status: Invalid key for request $k \(KEY:INVALID\)}, "wrong key: with the service's words");
	($state) = run_fail($s, "SELECT * FROM dbsync_upgrade_upload($k, '$small')");
	is($state, '28000', 'wrong key: upload fails with 28000');
	($state) = run_fail($s, "SELECT dbsync_upgrade_process($k)");
	is($state, '28000', 'wrong key: process fails with 28000');

	# A download URL with a wrong key in it.
	row("UPDATE dbsync.upgrade_request SET upgraded_dump_url = replace(upgraded_dump_url, request_key, reverse(request_key)) WHERE id = $big");
	my $target = "$dir/forbidden.dump";
	($state, $err) = run_fail($s, "SELECT * FROM dbsync_upgrade_download($big, '$target')");
	is($state, '42501', 'wrong key in the URL: the download fails with 42501 (HTTP 403)');
	like($err, qr/answered GET the upgraded dump of request $big with HTTP 403 Forbidden/, 'wrong key in the URL: the error names the request');
	ok(!-e $target && !-e "$target.partial", 'wrong key in the URL: no file, no .partial');

	# A download the service no longer has ready: 404.
	sim_odoo_state($warm, 'progress');
	($state, $err) = run_fail($s, "SELECT * FROM dbsync_upgrade_download($warm, '$target')");
	is($state, '42704', 'download not ready at the service: 42704 (HTTP 404)');
	ok(!-e $target && !-e "$target.partial", 'download not ready at the service: no file, no .partial');

	# A status reply cut short.
	sim_path_fault('/database/v1/status', 'truncated-json');
	($state, $err) = run_fail($s, "SELECT * FROM dbsync_upgrade_status($warm)");
	is($state, '22032', 'status reply cut short: 22032');

	# The worker meets a wrong key, then the right one again.
	my $wk = create_request($s, 'worker-key.dump');
	$s->query_safe("SELECT * FROM dbsync_upgrade_upload($wk, '$small')");
	$s->query_safe("BEGIN; SELECT dbsync_upgrade_process($wk); "
		  . "UPDATE dbsync.upgrade_request SET request_key = reverse(request_key) WHERE id = $wk; COMMIT;");
	my $job = "FROM dbsync.job WHERE kind = 'upgrade_poll' AND args->>'request_id' = '$wk'";
	ok(wait_until(30, sub { row("SELECT attempts >= 1 AND last_error LIKE '%KEY:INVALID%' $job") eq 't' }),
		"wrong key: the worker's poll failed and the job recorded why");
	push @error_texts, row("SELECT last_error $job");
	row("UPDATE dbsync.upgrade_request SET request_key = reverse(request_key) WHERE id = $wk");
	ok(wait_until(30, sub { row("SELECT state $job") eq 'done' }), 'right key again: the worker ended the request');
	is(row("SELECT state FROM dbsync.upgrade_request WHERE id = $wk"), 'done', 'right key again: the request is done');
}

{
	my $log = slurp_file($node->logfile);
	my $recent = substr($log, $off);
	# The checks below mean something only if the failures were logged.
	like($recent, qr/refused \/database\/v1\/status: Invalid key for request \d+ \(KEY:INVALID\)/, 'log: has the wrong-key errors');
	like($recent, qr/with HTTP 403 Forbidden/, 'log: has the forbidden download');
	like($recent, qr/is not valid JSON/, 'log: has the cut-short status reply');
	like($log, qr/was truncated/, 'log: has the truncated downloads');
	like($log, qr/canceling statement due to user request/, 'log: has the cancels');
	like($log, qr/connection to server "odoo" was lost/, 'log: has the reset upload');

	my %secret;
	for (split /\n/, row('SELECT id, request_key FROM dbsync.upgrade_request ORDER BY id'))
	{
		my ($id, $key) = split /\|/;
		my $bare = $key =~ s/=+$//r;
		$secret{"key of request $id"} = $bare;
		$secret{"start of the key of request $id"} = substr($bare, 0, 12);
		$secret{"reversed key of request $id"} = (scalar reverse $key) =~ s/^=+//r;
	}
	my @in_log = grep { index($log, $secret{$_}) >= 0 } sort keys %secret;
	is(scalar(@in_log), 0, 'log: no request key, whole or in part, right or wrong (' . scalar(keys %secret) . ' strings)')
	  or diag(join(', ', @in_log));
	unlike($log, qr{/database/eu1/}, "log: no download or status URL (they carry the key)");
	my $errors = join("\n", @error_texts);
	my @in_errors = grep { index($errors, $secret{$_}) >= 0 } sort keys %secret;
	is(scalar(@in_errors), 0, 'errors: no key in the ' . scalar(@error_texts) . ' error texts clients and the job saw')
	  or diag(join(', ', @in_errors));
	unlike($errors, qr{/database/eu1/}, 'errors: no URL in them');
}

$s->quit;
$node->stop;
note sprintf('007_upgrade took %.0f s', time - $t_start);
done_testing();
