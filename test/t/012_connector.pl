# The connector layer and the job queue, with the background worker running:
# (1) after each pull the worker applies the mapped records (partner, invoice and
# invoice_line, linked by references) exactly as the simulator has them, records
# waiting for a missing reference in checkpoints, deletes included; also a change
# that carries the initial load's own version;
# (2) the queue: two runners at once and never more, priorities, a job coming due
# while the only runner is busy, the backoff of a failing job, run_at in the future;
# (3) jobs added by a transaction wake the runners at COMMIT, not before;
# (5) job_purge removes old finished one-off jobs only;
# (4) the runner SIGKILLed or terminated in the middle of a big apply, also while a
# second apply of the subscription is queued: nothing lost, nothing applied twice.
# Sections run in the order 1, 2, 3, 5, 4 (the kills last).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use dbsync_test;
use dbsync_sync_test;

# PostgreSQL::Test::Cluster turns restart_after_crash off; a SIGKILLed runner must not end the test.
my $node = new_worker_node('connector', extra => "restart_after_crash = on\n"
	  . "dbsync.max_runners = 2\n"
	  . "dbsync.max_backoff = 2\n"
	  . "dbsync.map_batch_size = 250\n");

sub sql { return $node->safe_psql('postgres', $_[0]) }

sub json_sql { return query_json($node, $_[0]) }

# Sets a sighup setting (undef: back to postgresql.conf) and waits until new sessions see it.
sub set_conf
{
	my ($name, $value, $shown) = @_;
	sql(defined $value ? "ALTER SYSTEM SET $name = '$value'" : "ALTER SYSTEM RESET $name");
	sql('SELECT pg_reload_conf()');
	return wait_until(10, sub { sql("SHOW $name") eq $shown });
}

# The version a subscription's mappings have applied once they are done: records are final below
# the cursor (the next version to read), the initial load's own version (the cursor's) included
# while no change of that version has been read.
sub final_version_sql
{
	my ($s) = @_;
	return "CASE WHEN EXISTS (SELECT FROM dbsync.record r WHERE r.subscription_id = $s.id AND r.version = $s.cursor_version)"
	  . " AND NOT EXISTS (SELECT FROM dbsync.change c WHERE c.subscription_id = $s.id AND c.version = $s.cursor_version)"
	  . " THEN $s.cursor_version ELSE $s.cursor_version - 1 END";
}

# True once the server's mappings have applied everything final, with no apply waiting or running.
sub wait_applied
{
	my ($server, $timeout) = @_;
	my $last = '';
	my $final = final_version_sql('s');
	my $ok = wait_until($timeout, sub {
		my $r = try_query($node, qq{
			SELECT s.phase || ' cursor ' || s.cursor_version || ' final ' || $final
			       || ' applied ' || string_agg(m.applied_version::text, ',')
			       || ' jobs ' || (SELECT count(*) FROM dbsync.job j WHERE j.subscription_id = s.id
			                          AND j.kind = 'map_apply' AND j.state IN ('pending', 'running')),
			       s.phase = 'sync' AND bool_and(m.applied_version = $final)
			       AND NOT EXISTS (SELECT FROM dbsync.job j WHERE j.subscription_id = s.id
			                          AND j.kind = 'map_apply' AND j.state IN ('pending', 'running'))
			  FROM dbsync.subscription s JOIN dbsync.mapping m ON m.subscription_id = s.id
			 WHERE s.server = '$server' GROUP BY s.id});
		return 0 unless defined $r;
		my ($state, $done) = split /\|/, $r;
		$last = $state // '';
		return ($done // '') eq 't';
	});
	diag("the apply of $server did not finish: $last\n" . (try_query($node, qq{
		SELECT j.id, j.state, j.priority, j.created_at, j.started_at, j.finished_at, j.result->'last_round'
		  FROM dbsync.job j JOIN dbsync.subscription s ON s.id = j.subscription_id
		 WHERE s.server = '$server' AND j.kind = 'map_apply' ORDER BY j.id DESC LIMIT 8}) // '')) unless $ok;
	return $ok;
}

sub job_ids_after
{
	my ($server, $after) = @_;
	return sql(qq{SELECT coalesce(string_agg(j.id::text, ',' ORDER BY j.id), '') FROM dbsync.job j
		JOIN dbsync.subscription s ON s.id = j.subscription_id
		WHERE s.server = '$server' AND j.kind = 'map_apply' AND j.id > $after});
}

######## (1) the worker applies mapped records after each pull

# 958 changes of the generator: its rounds 0..190 (records 1..64 of every evidence) and the deletes of
# record 64 in round 191 but for objednavka-prijata (unmapped).
my $company = 'live958';
my $server = 'c1';
my %maps = (
	'adresar' => { table => 'partner', ok => q{t.code = r.payload->>'kod' AND t.name = r.payload->>'nazev'} },
	'faktura-vydana' => {
		table => 'invoice',
		ok => q{t.code = r.payload->>'kod' AND t.total = (r.payload->>'sumCelkem')::numeric},
		ref => [ 'firma', 'adresar', 'partner_id' ] },
	'faktura-vydana-polozka' => {
		table => 'invoice_line',
		ok => q{t.name = r.payload->>'nazev'},
		ref => [ 'doklFak', 'faktura-vydana', 'invoice_id' ] });
my @evidences = ('adresar', 'faktura-vydana', 'faktura-vydana-polozka');

# Per staged record of a mapping (up to the cursor): its binding(s), target row, the key its
# reference resolves to, and its open checkpoints.
my $record_state_sql = <<'SQL';
SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM (
  SELECT r.record_id AS id, r.version, r.deleted,
         (SELECT count(*) FROM dbsync.binding b2 WHERE b2.mapping_id = m.id AND b2.remote_id = r.record_id) AS nbind,
         b.local_key, b.deleted AS bdeleted, b.version AS bversion,
         (SELECT count(*) FROM __TABLE__ t WHERE t.id::text = b.local_key) AS nrows,
         (SELECT __OK__ FROM __TABLE__ t WHERE t.id::text = b.local_key) AS values_ok,
         (SELECT __REFCOL__ FROM __TABLE__ t WHERE t.id::text = b.local_key) AS ref_value,
         __REFID__ AS ref_id,
         (SELECT rb.local_key FROM dbsync.binding rb JOIN dbsync.mapping rm ON rm.id = rb.mapping_id
           WHERE rm.subscription_id = s.id AND rm.evidence = '__REFEV__' AND rb.remote_id = __REFID__
             AND rb.local_key IS NOT NULL AND NOT rb.deleted) AS ref_key,
         (SELECT coalesce(json_agg(json_build_object('reason', c.reason, 'waiting_evidence', c.waiting_evidence,
                                   'waiting_id', c.waiting_id, 'error', c.error) ORDER BY c.id), '[]')
            FROM dbsync.checkpoint c WHERE c.mapping_id = m.id AND c.remote_id = r.record_id AND NOT c.reviewed) AS checkpoints
    FROM dbsync.record r
    JOIN dbsync.subscription s ON s.id = r.subscription_id
    JOIN dbsync.mapping m ON m.subscription_id = s.id AND m.evidence = r.evidence AND m.target = '__TABLE__'::regclass
    LEFT JOIN dbsync.binding b ON b.mapping_id = m.id AND b.remote_id = r.record_id
   WHERE s.server = '__SERVER__' AND r.evidence = '__EV__' AND r.version <= s.cursor_version) x
SQL

my $table_state_sql = <<'SQL';
SELECT json_build_object(
  'rows', (SELECT count(*) FROM __TABLE__),
  'live_bindings', (SELECT count(*) FROM dbsync.binding b WHERE b.mapping_id = m.id AND b.local_key IS NOT NULL AND NOT b.deleted),
  'unbound_rows', (SELECT count(*) FROM __TABLE__ t WHERE NOT EXISTS
                     (SELECT FROM dbsync.binding b WHERE b.mapping_id = m.id AND b.local_key = t.id::text AND NOT b.deleted)))
  FROM dbsync.mapping m JOIN dbsync.subscription s ON s.id = m.subscription_id
 WHERE s.server = '__SERVER__' AND m.evidence = '__EV__'
SQL

sub fill
{
	my ($tpl, $ev) = @_;
	my $m = $maps{$ev};
	my $ref = $m->{ref};
	my %v = (
		TABLE => $m->{table}, OK => $m->{ok}, SERVER => $server, EV => $ev,
		REFCOL => $ref ? "t.$ref->[2]::text" : 'NULL::text',
		REFEV => $ref ? $ref->[1] : '',
		REFID => $ref ? "substring(r.payload->>'$ref->[0]\@ref' FROM '/([0-9]+)\\.json\$')::bigint" : 'NULL::bigint');
	(my $sql = $tpl) =~ s/__([A-Z]+)__/$v{$1}/g;
	return $sql;
}

# Each staged, existing record of each evidence is either applied (one binding at its version,
# one target row holding its payload's values, its reference column the key bound to the record
# it refers to) or, when that record is not bound, waits in one open 'reference' checkpoint naming
# it. Deleted records have no target row. No target row without a binding. Returns applied counts.
sub check_mapped
{
	my ($label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my (%applied, %waiting, @problems);
	for my $ev (@evidences)
	{
		my $m = $maps{$ev};
		my $rows = json_sql(fill($record_state_sql, $ev));
		my ($napplied, $nwaiting, $ndeleted) = (0, 0, 0);
		for my $r (@$rows)
		{
			my $what = "$ev $r->{id}";
			if ($r->{deleted})
			{
				$ndeleted++;
				push @problems, "$what: deleted, but its target row is still there" if $r->{nrows} > 0;
				push @problems, "$what: deleted, but its binding is not" if $r->{nbind} > 0 && (!$r->{bdeleted} || defined $r->{local_key});
				next;
			}
			if ($m->{ref} && !defined $r->{ref_key})
			{
				$nwaiting++;
				push @problems, "$what: applied although $m->{ref}[1] " . ($r->{ref_id} // 'NULL') . ' is not bound'
				  if $r->{nbind} > 0 || $r->{nrows} > 0;
				my $cps = $r->{checkpoints};
				push @problems, "$what: waits for $m->{ref}[1] " . ($r->{ref_id} // 'NULL')
				  . ' without one open reference checkpoint naming it: ' . JSON::PP->new->canonical->encode($cps)
				  unless @$cps == 1 && $cps->[0]{reason} eq 'reference'
				  && ($cps->[0]{waiting_evidence} // '') eq $m->{ref}[1]
				  && defined $cps->[0]{waiting_id} && defined $r->{ref_id} && $cps->[0]{waiting_id} == $r->{ref_id};
				next;
			}
			$napplied++;
			push @problems, "$what: $r->{nbind} bindings" unless $r->{nbind} == 1;
			push @problems, "$what: its binding is marked deleted" if $r->{bdeleted};
			push @problems, "$what: binding at version " . ($r->{bversion} // 'NULL') . ", record at $r->{version}"
			  unless defined $r->{bversion} && $r->{bversion} == $r->{version};
			push @problems, "$what: $r->{nrows} target rows" unless $r->{nrows} == 1;
			push @problems, "$what: the target row differs from the payload" unless $r->{values_ok};
			push @problems, "$what: $m->{ref}[2] " . ($r->{ref_value} // 'NULL') . " instead of $r->{ref_key}"
			  if $m->{ref} && ($r->{ref_value} // '') ne $r->{ref_key};
			push @problems, "$what: applied, yet has open checkpoints" if @{ $r->{checkpoints} };
		}
		my $t = json_sql(fill($table_state_sql, $ev));
		push @problems, "$m->{table}: $t->{rows} rows, $t->{live_bindings} live bindings, $napplied applied records"
		  unless $t->{rows} == $napplied && $t->{live_bindings} == $napplied;
		push @problems, "$m->{table}: $t->{unbound_rows} rows without a binding" if $t->{unbound_rows};
		$applied{$ev} = $napplied;
		$waiting{$ev} = $nwaiting;
		note "$label: $ev: $napplied applied, $nwaiting waiting, $ndeleted deleted";
	}
	ok(!@problems, "$label: each staged record is applied once with its payload's values, or waits for its reference")
	  or diag(join("\n", @problems[0 .. ($#problems < 19 ? $#problems : 19)]) . "\n(" . scalar(@problems) . ' problems)');
	is(sql(qq{SELECT count(*) FROM dbsync.checkpoint c JOIN dbsync.mapping m ON m.id = c.mapping_id
		JOIN dbsync.subscription s ON s.id = m.subscription_id WHERE s.server = '$server' AND c.reason = 'error'}),
		'0', "$label: no record failed");
	return (\%applied, \%waiting);
}

# The target tables against the simulator's records: partners are its existing adresar records,
# invoices those whose firma exists (with that partner), lines those whose invoice was applied;
# the others wait in checkpoints for exactly the record they name.
sub check_against_simulator
{
	my ($label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my %sim;
	for my $ev (@evidences)
	{
		$sim{$ev} = { map { $_->{id} => $_ } @{ sim_json("/_sim/records?company=$company&evidence=$ev")->{records} } };
	}
	my $ref_id = sub { my ($rec, $field) = @_; ($rec->{"$field\@ref"} // '') =~ m{/([0-9]+)\.json$} ? $1 : undef };
	my (@partners, @invoices, @lines, @waiting, %invoice_applied);
	push @partners, "$_->{kod}|$_->{nazev}" for values %{ $sim{adresar} };
	for my $inv (values %{ $sim{'faktura-vydana'} })
	{
		my $firm = $ref_id->($inv, 'firma');
		if (defined $firm && $sim{adresar}{$firm})
		{
			push @invoices, "$inv->{kod}|$sim{adresar}{$firm}{kod}|$inv->{sumCelkem}";
			$invoice_applied{ $inv->{id} } = $inv;
		}
		else { push @waiting, "faktura-vydana $inv->{id} adresar " . ($firm // 'NULL'); }
	}
	for my $line (values %{ $sim{'faktura-vydana-polozka'} })
	{
		my $parent = $ref_id->($line, 'doklFak');
		if (defined $parent && $invoice_applied{$parent}) { push @lines, "$line->{nazev}|$invoice_applied{$parent}{kod}"; }
		else { push @waiting, "faktura-vydana-polozka $line->{id} faktura-vydana " . ($parent // 'NULL'); }
	}
	my $rows = sub { my @r = split /\n/, sql($_[0]); return join("\n", sort @r) };
	is($rows->(q{SELECT code || '|' || name FROM partner}), join("\n", sort @partners),
		"$label: partner holds the simulator's " . scalar(@partners) . ' existing adresar records');
	is($rows->(q{SELECT i.code || '|' || coalesce(p.code, 'NULL') || '|' || coalesce(i.total::text, 'NULL')
		FROM invoice i LEFT JOIN partner p ON p.id = i.partner_id}), join("\n", sort @invoices),
		"$label: invoice holds the " . scalar(@invoices) . ' invoices whose firma exists, each with its partner and total');
	is($rows->(q{SELECT l.name || '|' || coalesce(i.code, 'NULL') FROM invoice_line l LEFT JOIN invoice i ON i.id = l.invoice_id}),
		join("\n", sort @lines), "$label: invoice_line holds the " . scalar(@lines) . ' lines of applied invoices, each with its invoice');
	is($rows->(qq{SELECT m.evidence || ' ' || c.remote_id || ' ' || c.waiting_evidence || ' ' || c.waiting_id
		FROM dbsync.checkpoint c JOIN dbsync.mapping m ON m.id = c.mapping_id JOIN dbsync.subscription s ON s.id = m.subscription_id
		WHERE s.server = '$server' AND NOT c.reviewed AND c.reason = 'reference'}), join("\n", sort @waiting),
		"$label: the " . scalar(@waiting) . ' records whose reference does not exist wait for it');
	return scalar(@partners) + scalar(@invoices) + scalar(@lines);
}

flexi_server($node, $server, $company);
my ($g0) = sim_log($company);
# A second subscription, on live955, whose first change after the load (version = the load's
# global version) deletes invoice 64.
my $company2 = 'live955';
flexi_server($node, 'c2', $company2);
my ($g2) = sim_log($company2);
sql(q{
	CREATE TABLE partner (id bigserial PRIMARY KEY, code text UNIQUE, name text NOT NULL);
	CREATE TABLE invoice (id bigserial PRIMARY KEY, code text UNIQUE, total numeric(12,2), partner_id bigint REFERENCES partner);
	CREATE TABLE invoice_line (id bigserial PRIMARY KEY, invoice_id bigint NOT NULL REFERENCES invoice ON DELETE CASCADE, name text);
	CREATE TABLE invoice2 (id bigserial PRIMARY KEY, code text UNIQUE, total numeric(12,2));
	BEGIN;
	SELECT dbsync_subscribe('c1', pull_interval => '1s', page_size => 100);
	SELECT dbsync_map('c1', 'adresar', 'partner', fields => '{"kod": "code", "nazev": "name"}');
	SELECT dbsync_map('c1', 'faktura-vydana', 'invoice', fields => '{"kod": "code", "sumCelkem": "total"}',
	                  refs => '{"firma": "partner_id"}');
	SELECT dbsync_map('c1', 'faktura-vydana-polozka', 'invoice_line', fields => '{"nazev": "name"}',
	                  refs => '{"doklFak": "invoice_id"}');
	COMMIT;
	BEGIN;
	SELECT dbsync_subscribe('c2', pull_interval => '1s', page_size => 100);
	SELECT dbsync_map('c2', 'faktura-vydana', 'invoice2', fields => '{"kod": "code", "sumCelkem": "total"}');
	COMMIT;
});
ok(wait_caught_up($node, $server, $company, $g0, 30), 'the worker loaded the live company');
ok(wait_applied($server, 30), 'the worker applied the loaded records (no dbsync_map_apply call)');
my ($applied0) = check_mapped('after the load');
my $n0 = check_against_simulator('after the load');
is($applied0->{adresar} + $applied0->{'faktura-vydana'} + $applied0->{'faktura-vydana-polozka'}, $n0,
	"as many applied records as the simulator's mapped ones ($n0)");
is(sql(qq{SELECT string_agg(DISTINCT (m.applied_version = s.cursor_version - 1)::text, ',') FROM dbsync.mapping m
	JOIN dbsync.subscription s ON s.id = m.subscription_id WHERE s.server = '$server'}), 'true',
	"the mappings' applied_version is just below the cursor: the load stamps its records one below it");
is(sql(q{SELECT count(*) FROM dbsync.job WHERE kind = 'map_apply' AND state = 'failed'}), '0', 'no apply job failed');

# 132 more changes: rounds 191 (the rest) to 217, records 65..73 (invoice 68 refers to adresar 19,
# which does not exist).
{
	my $before = sql(q{SELECT max(id) FROM dbsync.job});
	my ($applied_before) = check_mapped('before the appends');
	sim_append($company, 132);
	ok(wait_caught_up($node, $server, $company, $g0, 30), 'the worker pulled 132 more changes');
	ok(wait_applied($server, 30), 'and applied them');
	my ($applied) = check_mapped('after the appends');
	check_against_simulator('after the appends');
	my $new = 0;
	$new += $applied->{$_} - $applied_before->{$_} for @evidences;
	my $jobs = job_ids_after($server, $before);
	ok($jobs ne '', "the pull queued map_apply jobs ($jobs)");
	is(sql(qq{SELECT count(*) FILTER (WHERE state = 'done' AND priority = 5) || ' '
		|| coalesce(sum((result->'last_round'->>'inserted')::int), 0) FROM dbsync.job WHERE id IN ($jobs)}),
		scalar(split(/,/, $jobs)) . " $new", "they ran at priority 5 and inserted each of the $new new records once");
	is(sql(q{SELECT string_agg(m.evidence || ' ' || c.remote_id || ' ' || c.waiting_id, ', ' ORDER BY m.evidence)
		FROM dbsync.checkpoint c JOIN dbsync.mapping m ON m.id = c.mapping_id WHERE NOT c.reviewed AND c.remote_id = 68}),
		'faktura-vydana 68 19, faktura-vydana-polozka 68 68', 'invoice 68 waits for adresar 19, its line for invoice 68');
	is(sql(qq{SELECT count(*) FROM dbsync.binding b JOIN dbsync.mapping m ON m.id = b.mapping_id
		JOIN dbsync.subscription s ON s.id = m.subscription_id
		WHERE s.server = '$server' AND b.remote_id = 73 AND NOT b.deleted AND b.local_key IS NOT NULL}), '3',
		'record 73 of each evidence is bound (invoice 73 to partner 24)');
	is(sql(qq{SELECT string_agg(DISTINCT (m.applied_version = s.cursor_version - 1)::text, ',') FROM dbsync.mapping m
		JOIN dbsync.subscription s ON s.id = m.subscription_id WHERE s.server = '$server'}), 'true',
		"the mappings' applied_version is the version below the cursor");
}

# Round 218 deletes record 73 of every evidence.
{
	my $before = sql(q{SELECT max(id) FROM dbsync.job});
	sim_append($company, 5);
	ok(wait_caught_up($node, $server, $company, $g0, 30), 'the worker pulled the deletes of record 73');
	ok(wait_applied($server, 30), 'and applied them');
	check_mapped('after the deletes');
	check_against_simulator('after the deletes');
	is(sql(qq{SELECT count(*) FROM dbsync.binding b JOIN dbsync.mapping m ON m.id = b.mapping_id
		JOIN dbsync.subscription s ON s.id = m.subscription_id
		WHERE s.server = '$server' AND b.remote_id = 73 AND b.deleted AND b.local_key IS NULL}), '3',
		"record 73's bindings are marked deleted, without a key");
	is(sql(q{SELECT (SELECT count(*) FROM partner WHERE code = 'X73') + (SELECT count(*) FROM invoice WHERE code = 'X73')
		+ (SELECT count(*) FROM invoice_line WHERE name = 'faktura-vydana-polozka 73')}), '0', "record 73's rows are gone");
	my $jobs = job_ids_after($server, $before);
	ok($jobs ne '', "the pull queued map_apply jobs ($jobs)");
	is(sql(qq{SELECT count(*) FILTER (WHERE state = 'done' AND priority = 5) || ' '
		|| coalesce(sum((result->'last_round'->>'deleted')::int), 0) FROM dbsync.job WHERE id IN ($jobs)}),
		scalar(split(/,/, $jobs)) . ' 3', 'they ran at priority 5 and deleted the 3 rows');
}
is(sql(q{SELECT count(*) FROM dbsync.job WHERE kind = 'map_apply' AND state = 'failed'}), '0', 'no apply job failed');

# c2: the first change read after the load has the load's own version (the simulator's
# @globalVersion is the version of the next change), the version the loaded records carry.
{
	my $sim_invoices = sub {
		join(',', sort map { $_->{kod} } @{ sim_json("/_sim/records?company=$company2&evidence=faktura-vydana")->{records} });
	};
	my $invoices = sub { join(',', sort split /\n/, sql(q{SELECT code FROM invoice2})) };
	ok(wait_caught_up($node, 'c2', $company2, $g2, 30) && wait_applied('c2', 30), 'c2 loaded and applied');
	is($invoices->(), $sim_invoices->(), 'invoice2 holds the loaded invoices');
	sim_append($company2, 5);    # its first change (version = the load's) deletes invoice 64
	ok(wait_caught_up($node, 'c2', $company2, $g2, 30) && wait_applied('c2', 30), 'c2 pulled and applied the deletes of record 64');
	is(sql(q{SELECT version || ' ' || deleted FROM dbsync.record r JOIN dbsync.subscription s ON s.id = r.subscription_id
		WHERE s.server = 'c2' AND r.evidence = 'faktura-vydana' AND r.record_id = 64}), "$g2 true",
		"invoice 64 is staged as deleted, at the load's version $g2");
	# Fails until fixed: the apply took the loaded records of version $g2 as final (applied_version
	# $g2), so the change of that same version is neither in a later window (version > applied_version)
	# nor newer than the binding (version $g2): invoice 64 is never deleted.
	is($invoices->(), $sim_invoices->(), 'invoice2 lost invoice 64, deleted by the first change after the load');
	is(sql(q{SELECT deleted || ' ' || (local_key IS NULL) FROM dbsync.binding b JOIN dbsync.mapping m ON m.id = b.mapping_id
		JOIN dbsync.subscription s ON s.id = m.subscription_id WHERE s.server = 'c2' AND b.remote_id = 64}), 'true true',
		"its binding is marked deleted");
}

# The rest of the test wants a quiet queue.
sql(q{SELECT dbsync_subscription_alter('c1', enabled => false); SELECT dbsync_subscription_alter('c2', enabled => false)});
ok(wait_until(20, sub { sql(q{SELECT count(*) FROM dbsync.job WHERE state = 'running'}) eq '0' }), 'the queue is quiet');

######## (2) the job queue

sql(q{
	CREATE TABLE calls (id bigserial PRIMARY KEY, tag text NOT NULL, pid integer NOT NULL,
	                    t_start timestamptz NOT NULL, t_end timestamptz NOT NULL);
	CREATE FUNCTION public.slow_call(a jsonb) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS $$
	DECLARE
	    t0 timestamptz := clock_timestamp();
	BEGIN
	    PERFORM pg_sleep(coalesce((a->>'sleep')::float8, 0));
	    INSERT INTO public.calls (tag, pid, t_start, t_end) VALUES (a->>'tag', pg_backend_pid(), t0, clock_timestamp());
	    RETURN pg_backend_pid();
	END $$;
	CREATE FUNCTION public.blocked_call(a jsonb) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS $$
	DECLARE
	    t0 timestamptz := clock_timestamp();
	BEGIN
	    PERFORM pg_advisory_xact_lock((a->>'lock')::bigint);
	    INSERT INTO public.calls (tag, pid, t_start, t_end) VALUES (a->>'tag', pg_backend_pid(), t0, clock_timestamp());
	    RETURN pg_backend_pid();
	END $$;
	CREATE FUNCTION public.failing_call(a jsonb) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS $$
	BEGIN
	    INSERT INTO public.calls (tag, pid, t_start, t_end) VALUES (a->>'tag', pg_backend_pid(), clock_timestamp(), clock_timestamp());
	    RAISE EXCEPTION 'call failed: %', a->>'tag';
	END $$;
});

sub jobs_json
{
	my ($ids) = @_;
	return json_sql(qq{SELECT json_agg(json_build_object('id', id, 'state', state, 'attempts', attempts,
		'priority', priority, 'returned', result->'returned', 'error', last_error,
		'start', extract(epoch FROM started_at), 'end', extract(epoch FROM finished_at),
		'run_at', extract(epoch FROM run_at)) ORDER BY id) FROM dbsync.job WHERE id IN ($ids)});
}

# Four calls of 1.5 s with two runners.
{
	my $ids = sql(q{SELECT string_agg(dbsync_job_enqueue('call', jsonb_build_object('function', 'public.slow_call',
		'sleep', 1.5, 'tag', 'par' || i))::text, ',') FROM generate_series(1, 4) i});
	my $max_runners_seen = 0;
	ok(wait_until(20, sub {
		my $n = scalar(worker_pids($node, 'dbsync job runner', 'postgres'));
		$max_runners_seen = $n if $n > $max_runners_seen;
		sql(qq{SELECT count(*) FROM dbsync.job WHERE id IN ($ids) AND state = 'done'}) eq '4' }),
		'four 1.5 s call jobs are done');
	my $jobs = jobs_json($ids);
	is(join(' ', map { "$_->{state}/$_->{attempts}" } @$jobs), 'done/0 done/0 done/0 done/0', 'each ran without a failure');
	is(sql(q{SELECT count(*) || ' ' || count(DISTINCT tag) FROM calls WHERE tag LIKE 'par%'}), '4 4',
		'the function was called exactly once per job');
	is(sql(qq{SELECT count(*) FROM dbsync.job j JOIN calls c ON c.tag = j.args->>'tag'
		WHERE j.id IN ($ids) AND (j.result->>'returned')::int = c.pid}), '4', "each job's result is the pid that called the function");
	my %pids = map { ($_->{returned} // 'NULL') => 1 } @$jobs;
	is(scalar(keys %pids), 2, 'the jobs ran on 2 distinct runners: ' . join(' ', sort keys %pids));
	my $max_at_once = 0;
	for my $a (@$jobs)
	{
		my $n = grep { $_->{start} <= $a->{start} && $a->{start} < $_->{end} } @$jobs;
		$max_at_once = $n if $n > $max_at_once;
	}
	is($max_at_once, 2, 'two of them ran at once, never more (started_at / finished_at)');
	cmp_ok($max_runners_seen, '<=', 2, "at most 2 runners in the database ($max_runners_seen seen)");
}

# Priorities: both runners are held by jobs waiting on advisory locks while five more arrive.
{
	my $locker = $node->background_psql('postgres');
	$locker->query_safe('SELECT pg_advisory_lock(901), pg_advisory_lock(902)');
	my $blockers = sql(q{SELECT dbsync_job_enqueue('call', '{"function": "public.blocked_call", "lock": 901, "tag": "block901"}')
		|| ',' || dbsync_job_enqueue('call', '{"function": "public.blocked_call", "lock": 902, "tag": "block902"}')});
	ok(wait_until(10, sub { sql(qq{SELECT count(*) FROM dbsync.job WHERE id IN ($blockers) AND state = 'running'}) eq '2' }),
		'both runners are busy with a blocked job');
	my $ids = sql(q{SELECT string_agg(dbsync_job_enqueue('call', jsonb_build_object('function', 'public.slow_call', 'tag', 'prio' || p),
		priority => p)::text, ',') FROM unnest(ARRAY[30, 10, 50, 20, 40]) p});
	Time::HiRes::sleep(0.7);
	is(sql(qq{SELECT count(*) FROM dbsync.job WHERE id IN ($ids) AND state = 'pending'}), '5',
		'none of the five new jobs starts while both runners are busy');
	cmp_ok(scalar(worker_pids($node, 'dbsync job runner', 'postgres')), '<=', 2, 'no third runner was started');
	$locker->query_safe('SELECT pg_advisory_unlock(901)');
	ok(wait_until(10, sub { sql(qq{SELECT count(*) FROM dbsync.job WHERE id IN ($ids) AND state = 'done'}) eq '5' }),
		'the runner set free ran the five jobs');
	is(sql(qq{SELECT string_agg(priority::text, ' ' ORDER BY started_at, id) FROM dbsync.job WHERE id IN ($ids)}),
		'10 20 30 40 50', 'it claimed them in priority order (started_at)');
	is(sql(qq{SELECT string_agg(substr(tag, 5), ' ' ORDER BY id) FROM calls WHERE tag LIKE 'prio%'}), '10 20 30 40 50',
		'and called them in that order');
	is(sql(qq{SELECT count(DISTINCT result->>'returned') || ' ' || bool_and(result->>'returned' =
		(SELECT result->>'returned' FROM dbsync.job WHERE args->>'tag' = 'block901')) FROM dbsync.job WHERE id IN ($ids)}),
		'1 true', 'all on the runner whose blocked job ended');
	$locker->query_safe('SELECT pg_advisory_unlock(902)');
	$locker->quit;
	ok(wait_until(10, sub { sql(qq{SELECT count(*) FROM dbsync.job WHERE id IN ($blockers) AND state = 'done'}) eq '2' }),
		'the blocked jobs finished once their locks were free');
}

# A job that comes due while the only runner is busy: a second runner (dbsync.max_runners = 2) runs it.
{
	my $locker = $node->background_psql('postgres');
	$locker->query_safe('SELECT pg_advisory_lock(903)');
	my $blocker = sql(q{SELECT dbsync_job_enqueue('call', '{"function": "public.blocked_call", "lock": 903, "tag": "block903"}')});
	ok(wait_until(10, sub { sql(qq{SELECT state FROM dbsync.job WHERE id = $blocker}) eq 'running' }),
		'a runner is held by a blocked job');
	my ($id, $at) = split /\|/, sql(q{SELECT dbsync_job_enqueue('call', '{"function": "public.slow_call", "tag": "due-later"}',
		run_at => now() + interval '2 s'), extract(epoch FROM now() + interval '2 s')});
	my $ran = wait_until(6, sub { sql(qq{SELECT state FROM dbsync.job WHERE id = $id}) eq 'done' });
	# Fails until fixed: the runner woken by the enqueue finds nothing due yet and exits, leaving the
	# job's run_at as the database's next_due; but the launcher (start_due_runners, worker_launcher.c)
	# starts a runner at next_due only when none is alive, and while one is busy it acts on wake-ups
	# alone. So the job waits until the busy runner is free.
	ok($ran, 'a job due 2 s later ran at its run_at while the other runner stayed busy')
	  or diag('state of the job 6 s later: ' . sql(qq{SELECT state FROM dbsync.job WHERE id = $id}));
	$locker->query_safe('SELECT pg_advisory_unlock(903)');
	$locker->quit;
	ok(wait_until(10, sub { sql(qq{SELECT count(*) FROM dbsync.job WHERE id IN ($id, $blocker) AND state = 'done'}) eq '2' }),
		'both jobs are done once the lock is free');
	cmp_ok(jobs_json($id)->[0]{start}, '>=', $at, 'the job did not start before its run_at');
}

# A failing call job backs off and fails for good after max_attempts; a job with a future run_at waits for it.
{
	my $fail_id = sql(q{SELECT dbsync_job_enqueue('call', '{"function": "public.failing_call", "tag": "f1"}', max_attempts => 3)});
	my ($future_id, $future_at) = split /\|/, sql(q{SELECT dbsync_job_enqueue('call', '{"function": "public.slow_call",
		"tag": "future"}', run_at => now() + interval '2.5 s'), extract(epoch FROM now() + interval '2.5 s')});
	my %after;    # attempts -> the job's row once that attempt had failed
	my $failed = wait_until(25, sub {
		my $j = jobs_json($fail_id)->[0];
		$after{ $j->{attempts} } //= $j if $j->{attempts} > 0 && $j->{state} ne 'running';
		$j->{state} eq 'failed';
	});
	ok($failed, 'the failing job ended');
	my $j = jobs_json($fail_id)->[0];
	is("$j->{state} $j->{attempts}", 'failed 3', "state 'failed' after max_attempts (3) attempts");
	is($j->{error}, 'call failed: f1', 'last_error holds the message of the exception');
	ok($after{1} && $after{2} && $after{3}, 'each of the three attempts was seen');
	if ($after{1} && $after{2} && $after{3})
	{
		my @backoff = map { $after{$_}{run_at} - $after{$_}{end} } (1, 2);
		note sprintf('backoff after attempt 1: %.3f s, after attempt 2: %.3f s', @backoff);
		ok($backoff[0] > 0 && $backoff[0] <= 2.01, 'the first retry waits, at most dbsync.max_backoff (2 s)');
		cmp_ok(sprintf('%.1f', $backoff[1]), '>=', sprintf('%.1f', $backoff[0]), 'the second wait is not shorter than the first');
		ok($after{2}{start} >= $after{1}{run_at} && $after{3}{start} >= $after{2}{run_at},
			'no attempt started before its run_at');
	}
	is(sql(qq{SELECT count(*) FROM calls WHERE tag = 'f1'}), '0', 'nothing the failed calls wrote was kept');

	ok(wait_until(15, sub { sql(qq{SELECT state FROM dbsync.job WHERE id = $future_id}) eq 'done' }), 'the future job ran');
	my $f = jobs_json($future_id)->[0];
	cmp_ok($f->{start}, '>=', $future_at, 'not before its run_at');
	is(sql(qq{SELECT count(*) FROM calls c, dbsync.job j WHERE j.id = $future_id AND c.tag = 'future' AND c.t_start >= j.run_at}),
		'1', 'its function was called once, after run_at');
	cmp_ok($f->{start} - $future_at, '<', 3, 'and soon after it');
}

######## (3) jobs added by a transaction wake the runners at COMMIT

{
	ok(set_conf('dbsync.naptime', 10, '10s'), 'dbsync.naptime is 10 s: no runner comes by itself for a while');
	# Wait until no runner is left, and none comes back (a runner that left with the old naptime).
	my $quiet = wait_until(20, sub {
		return 0 if worker_pids($node, 'dbsync job runner', 'postgres');
		Time::HiRes::sleep(1.5);
		return !worker_pids($node, 'dbsync job runner', 'postgres');
	});
	ok($quiet, 'no runner is left in database postgres');
	my $tx = $node->background_psql('postgres');
	$tx->query_safe('BEGIN');
	my $id = $tx->query_safe(q{SELECT dbsync_job_enqueue('call', '{"function": "public.slow_call", "tag": "wake"}')});
	# A second session watches for runners for 1 s while the transaction stays open.
	my $runners_seen = 0;
	my $t_end = time + 1;
	while (time < $t_end)
	{
		$runners_seen += scalar(worker_pids($node, 'dbsync job runner', 'postgres'));
		Time::HiRes::sleep(0.05);
	}
	is($runners_seen, 0, 'no runner was woken while the transaction that enqueued the job was open');
	is($tx->query_safe(qq{SELECT state || ' ' || (started_at IS NULL) FROM dbsync.job WHERE id = $id}), 'pending true',
		'1 s after the enqueue, in its open transaction, the job is pending');
	my $t_commit = time;
	$tx->query_safe('COMMIT');
	$tx->quit;
	ok(wait_until(8, sub { sql(qq{SELECT state FROM dbsync.job WHERE id = $id}) eq 'done' }), 'after COMMIT the job ran');
	my $latency = jobs_json($id)->[0]{start} - $t_commit;
	note sprintf('the job started %.3f s after COMMIT', $latency);
	cmp_ok($latency, '<', 2, 'within 2 s of the COMMIT, though dbsync.naptime is 10 s');
	ok(set_conf('dbsync.naptime', undef, '1s'), 'dbsync.naptime back to 1 s');
}

######## (5) job_purge

{
	ok(set_conf('dbsync.job_history', 1, '1s'), 'dbsync.job_history is 1 s');
	my $kept_pending = sql(q{SELECT dbsync_job_enqueue('noop', run_at => now() + interval '1 hour')});
	my $old = sql(q{SELECT string_agg(id::text, ',' ORDER BY id) FROM dbsync.job WHERE kind = 'call' AND state IN ('done', 'failed')
		AND args->>'tag' IN ('wake', 'f1')});
	is(scalar(split /,/, $old), 2, 'a done and a failed one-off job');
	sql(qq{UPDATE dbsync.job SET finished_at = finished_at - interval '1 day' WHERE id IN ($old)});
	sql(q{UPDATE dbsync.job SET finished_at = now() - interval '1 day' WHERE repeat_every IS NOT NULL});
	my $recurring = sql(q{SELECT string_agg(id::text, ',' ORDER BY id) FROM dbsync.job WHERE repeat_every IS NOT NULL});
	my $finished = sql(q{SELECT count(*) FROM dbsync.job WHERE repeat_every IS NULL AND state IN ('done', 'failed')});
	Time::HiRes::sleep(1.2);    # every finished one-off job is older than dbsync.job_history now
	# A noop that finishes just before the purge (priority 1) is younger than 1 s and stays.
	my ($young, $purge) = split /\|/, sql(q{BEGIN;
		SELECT dbsync_job_enqueue('noop', priority => 1), dbsync_job_enqueue('job_purge');
		COMMIT;});
	ok(wait_until(10, sub { sql(qq{SELECT state FROM dbsync.job WHERE id = $purge}) eq 'done' }), 'the job_purge job ran');
	is(sql(qq{SELECT result->>'removed' FROM dbsync.job WHERE id = $purge}), $finished,
		"it removed the $finished finished one-off jobs older than 1 s");
	is(sql(qq{SELECT count(*) FROM dbsync.job WHERE id IN ($old)}), '0', 'the back-dated one-off jobs are gone');
	is(sql(q{SELECT string_agg(id::text, ',' ORDER BY id) FROM dbsync.job WHERE repeat_every IS NOT NULL}), $recurring,
		'every recurring job stays, though it finished a day ago');
	is(sql(qq{SELECT string_agg(id || ' ' || state, ', ' ORDER BY id) FROM dbsync.job
		WHERE repeat_every IS NULL AND (state IN ('done', 'failed') OR id = $kept_pending)}),
		"$kept_pending pending, $young done, $purge done",
		'left: the pending one-off job, the noop done a moment ago and the purge itself');
	ok(set_conf('dbsync.job_history', undef, '7d'), 'dbsync.job_history back to 7 days');
}

######## (4) the runner killed during a big apply: nothing lost, nothing twice

my $crashes = sub { my $n = () = slurp_file($node->logfile) =~ /all server processes terminated; reinitializing/g; $n };

sql(q{
	CREATE SERVER dead FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://127.0.0.1:9', company 'nowhere');
	CREATE USER MAPPING FOR CURRENT_USER SERVER dead OPTIONS (user 'api', password 'x');
	CREATE TABLE kpartner (id bigserial PRIMARY KEY, code text NOT NULL, name text NOT NULL);
	CREATE TABLE kevent (operation text NOT NULL, remote_id bigint NOT NULL, version bigint NOT NULL);
	CREATE FUNCTION public.kevent_add(e jsonb) RETURNS void LANGUAGE sql
	    AS $$ INSERT INTO public.kevent VALUES (e->>'operation', (e->>'remote_id')::bigint, (e->>'version')::bigint) $$;
	SELECT dbsync_subscribe('dead', ARRAY['adresar'], pull_interval => '1 hour', start_version => 1, enabled => true);
	SELECT dbsync_map('dead', 'adresar', 'kpartner', fields => '{"kod": "code", "nazev": "name"}');
	SELECT dbsync_listen('dead', 'adresar', 'public.kevent_add');
});
my $ksub = sql(q{SELECT id FROM dbsync.subscription WHERE server = 'dead'});
my $kmap = sql(qq{SELECT id FROM dbsync.mapping WHERE subscription_id = $ksub});

# Stages records as a pull would: the records, then the cursor past them, in one transaction.
sub stage
{
	my ($sql, $cursor) = @_;
	sql(qq{BEGIN; $sql; UPDATE dbsync.subscription SET cursor_version = $cursor WHERE id = $ksub; COMMIT;});
}

# New records first_id..last_id, at versions from first_version on, their payload's nazev "<tag> <id>".
sub stage_new
{
	my ($first_id, $last_id, $first_version, $tag, $cursor) = @_;
	my $shift = $first_version - $first_id;
	stage(qq{INSERT INTO dbsync.record (subscription_id, evidence, record_id, version, deleted, payload)
		SELECT $ksub, 'adresar', i, i + $shift, false, jsonb_build_object('id', i::text, 'kod', 'K' || i, 'nazev', '$tag ' || i)
		  FROM generate_series($first_id, $last_id) i}, $cursor);
}

# Waits until an apply of 'dead' is running and has committed rounds past from; returns
# (upserted_version, runner pid, job id) of the oldest running one (rounds move upserted_version
# first; applied_version follows once the deletes are through).
sub wait_mid_apply
{
	my ($from) = @_;
	my @r;
	wait_until(15, sub {
		my $out = try_query($node, qq{SELECT m.upserted_version || '|' || j.runner_pid || '|' || j.id FROM dbsync.mapping m, dbsync.job j
			WHERE m.id = $kmap AND j.subscription_id = $ksub AND j.kind = 'map_apply' AND j.state = 'running'
			  AND j.runner_pid IS NOT NULL ORDER BY j.id LIMIT 1}) // '';
		@r = split /\|/, $out;
		return @r && $r[0] > $from;
	});
	return @r;
}

# Every staged record of 'dead' has one binding at its version and one row with its values; the
# listener heard each version of each record once; the mapping applied everything below the cursor.
sub check_kill
{
	my ($label, $n, $events) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $s = json_sql(qq{SELECT json_build_object(
		'records', (SELECT count(*) FROM dbsync.record WHERE subscription_id = $ksub AND NOT deleted),
		'bindings', (SELECT count(*) FROM dbsync.binding WHERE mapping_id = $kmap),
		'keys', (SELECT count(DISTINCT local_key) FROM dbsync.binding WHERE mapping_id = $kmap AND NOT deleted),
		'rows', (SELECT count(*) FROM kpartner),
		'codes', (SELECT count(DISTINCT code) FROM kpartner),
		'matching', (SELECT count(*) FROM dbsync.record r JOIN dbsync.binding b ON b.mapping_id = $kmap AND b.remote_id = r.record_id
		              JOIN kpartner k ON k.id::text = b.local_key
		             WHERE r.subscription_id = $ksub AND b.version = r.version AND NOT b.deleted
		               AND k.code = r.payload->>'kod' AND k.name = r.payload->>'nazev'),
		'checkpoints', (SELECT count(*) FROM dbsync.checkpoint WHERE mapping_id = $kmap),
		'events', (SELECT count(*) FROM kevent),
		'distinct_events', (SELECT count(DISTINCT (remote_id, version)) FROM kevent),
		'applied_version', (SELECT applied_version FROM dbsync.mapping WHERE id = $kmap),
		'cursor', (SELECT cursor_version FROM dbsync.subscription WHERE id = $ksub),
		'failed_jobs', (SELECT count(*) FROM dbsync.job WHERE subscription_id = $ksub AND kind = 'map_apply' AND state = 'failed'))});
	is(join(' ', map { "$_=$s->{$_}" } qw(records bindings keys rows codes matching)),
		join(' ', map { "$_=$n" } qw(records bindings keys rows codes matching)),
		"$label: each of the $n records has one binding at its version and one row with its values");
	is("$s->{checkpoints} $s->{failed_jobs}", '0 0', "$label: no checkpoint, no failed apply job");
	is("$s->{events} $s->{distinct_events}", "$events $events", "$label: the listener heard each of the $events applied versions once");
	is($s->{applied_version}, $s->{cursor} - 1,
		"$label: the mapping's applied_version is the last version below the cursor ($s->{cursor})");
}

# Waits for the crash restart that a SIGKILL causes, then for connections.
sub wait_crash_restart
{
	my ($before, $label) = @_;
	ok(wait_until(30, sub { $crashes->() > $before }), "$label: the server restarted after the crash");
	ok(wait_until(30, sub { defined try_query($node, 'SELECT 1') }), "$label: and accepts connections");
}

# SIGKILL: the crash restart ends every session; the next runner repairs the job.
{
	stage_new(1, 50000, 2, 'first', 50002);
	my ($at, $pid) = wait_mid_apply(1);
	ok(defined $pid, 'the worker is applying the 50000 staged records in rounds');
	my $off = log_offset($node);
	my $before = $crashes->();
	ok($pid && kill('KILL', $pid), 'SIGKILL to the runner (pid ' . ($pid // 'none') . ')');
	note 'upserted_version ' . ($at // 'none') . ' of 50001 at the kill';
	ok(defined $at && $at > 1 && $at < 50001, 'in the middle of the apply');
	wait_crash_restart($before, 'SIGKILL');
	ok(wait_applied('dead', 40), 'the apply finished after the restart');
	like(log_since($node, $off), qr/dbsync: \d+ job\(s\) interrupted by a stopped runner will run again/,
		'the interrupted job was repaired');
	check_kill('after SIGKILL', 50000, 50000);
}

# pg_terminate_backend during an apply of 25000 updates and 25000 new records.
{
	stage(q{UPDATE dbsync.record r SET version = 50001 + r.record_id,
		       payload = r.payload || jsonb_build_object('nazev', 'second ' || r.record_id)
		 WHERE r.subscription_id = (SELECT id FROM dbsync.subscription WHERE server = 'dead') AND r.record_id <= 25000},
		50002);
	stage_new(50001, 75000, 75002, 'first', 100002);
	my ($at, $pid) = wait_mid_apply(50001);
	ok(defined $pid, 'the worker is applying 25000 updates and 25000 new records');
	my $off = log_offset($node);
	is(sql('SELECT pg_terminate_backend(' . ($pid // 0) . ')'), 't', 'pg_terminate_backend of the runner (pid ' . ($pid // 'none') . ')');
	note 'upserted_version ' . ($at // 'none') . ' of 100001 when terminated';
	ok(defined $at && $at > 50001 && $at < 100001, 'in the middle of the apply');
	ok(wait_applied('dead', 40), 'the apply finished');
	my $log = log_since($node, $off);
	like($log, qr/terminating background worker "dbsync job runner" due to administrator command/, 'the runner was terminated');
	like($log, qr/dbsync: \d+ job\(s\) interrupted by a stopped runner will run again/, 'the interrupted job was repaired');
	check_kill('after pg_terminate_backend', 75000, 100000);
	is(sql(q{SELECT count(*) FROM kpartner WHERE name LIKE 'second %'}), '25000', 'the 25000 updates are in the table');
}

# A runner killed while its subscription has a second apply job: the cursor moved during the apply
# (a pull committed), which queued one. Each apply job its runner left 'running' is repaired.
sub killed_with_second_apply
{
	my ($label, $first_id, $cursor, $second_state) = @_;
	stage_new($first_id, $first_id + 19999, $cursor, 'first', $cursor + 20000);
	my ($at, $pid) = wait_mid_apply($cursor - 1);
	ok(defined $pid, "$label: the worker is applying 20000 more records");
	stage_new($first_id + 20000, $first_id + 20000, $cursor + 20000, 'late', $cursor + 20001);
	ok(wait_until(10, sub { sql(qq{SELECT string_agg(state, ' ' ORDER BY id) FROM dbsync.job WHERE subscription_id = $ksub
		AND kind = 'map_apply' AND state IN ('pending', 'running')}) eq "running $second_state" }),
		"$label: the moved cursor queued a second apply job, $second_state");
	my $off = log_offset($node);
	my $before = $crashes->();
	ok($pid && kill('KILL', $pid), "$label: SIGKILL to the runner of the first");
	wait_crash_restart($before, $label);
	ok(wait_applied('dead', 15), "$label: the apply finished after the restart");
	unlike(log_since($node, $off), qr/duplicate key value violates unique constraint "job_map_apply_idx"/,
		"$label: the repair of the interrupted jobs did not fail");
	# Should the repair have failed, unstick the queue so that the checks below see what the applies did.
	my $stuck = sql(q{WITH gone AS (DELETE FROM dbsync.job j WHERE j.kind = 'map_apply' AND j.state = 'running'
		AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = j.runner_pid) RETURNING 1) SELECT count(*) FROM gone});
	if ($stuck > 0)
	{
		note "$label: removed $stuck apply job(s) that the repair left 'running'; a new apply finishes the work";
		sql(q{SELECT dbsync_job_enqueue('map_apply', '{"server": "dead"}')});
		wait_applied('dead', 15);
	}
}

# With one runner the second apply waits (pending) behind the first.
ok(set_conf('dbsync.max_runners', 1, '1'), 'dbsync.max_runners is 1');
ok(wait_until(15, sub { worker_pids($node, 'dbsync job runner', 'postgres') <= 1 }), 'one runner at most');
killed_with_second_apply('second apply pending', 75001, 100002, 'pending');
check_kill('after SIGKILL with a second apply pending', 95001, 120001);

# With two runners the other one claims the second apply, which waits for the first's lock.
ok(set_conf('dbsync.max_runners', 2, '2'), 'dbsync.max_runners is 2 again');
# Fails until fixed: jobs_repair() (jobs.c) sets both interrupted applies back to 'pending', which
# violates job_map_apply_idx (one pending map_apply per subscription); every runner then fails at
# its start and no job of the database runs any more.
killed_with_second_apply('second apply claimed', 95002, 120003, 'running');
check_kill('after SIGKILL with a second apply claimed', 115002, 140002);

$node->stop;
done_testing();
