-- Every failure of the remote side gives an ERROR with a fitting SQLSTATE and
-- a message that names the server and the URL path, never a credential.
\getenv sim_port DBSYNC_SIM_PORT
\set sim_url 'http://127.0.0.1:' :sim_port
\set https_url 'https://127.0.0.1:' :sim_port
CREATE SERVER f_status_500 FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'status-500');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_status_500 OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_status_503 FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'status-503');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_status_503 OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_status_404 FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'status-404');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_status_404 OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_status_400 FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'status-400');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_status_400 OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_malformed FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'malformed');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_malformed OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_truncated FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'truncated');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_truncated OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_truncated_json FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'truncated-json');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_truncated_json OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_reset FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'reset');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_reset OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_wrongshape FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'wrongshape');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_wrongshape OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_badvalues FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'badvalues');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_badvalues OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_redirect_loop FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'redirect-loop');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_redirect_loop OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_nosuchcompany FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'nosuchcompany');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_nosuchcompany OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_slow_30 FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'slow-30');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_slow_30 OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER f_huge FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'huge');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_huge OPTIONS (user 'api', password 'S3cr3t-pw');
-- HTTP errors carry the remote system's own message.
SELECT * FROM dbsync_changes_fetch('f_status_500');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('f_status_503');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('f_status_404');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('f_status_400');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('f_nosuchcompany');
\echo :LAST_ERROR_SQLSTATE
-- A body that is not JSON, or is cut short, is an error, never a partial result.
SELECT * FROM dbsync_changes_fetch('f_malformed');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('f_truncated');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('f_truncated_json');
\echo :LAST_ERROR_SQLSTATE
-- The server closes the connection without answering.
SELECT * FROM dbsync_changes_fetch('f_reset');
\echo :LAST_ERROR_SQLSTATE
-- Valid JSON of the wrong shape, and wrong values.
SELECT * FROM dbsync_changes_fetch('f_wrongshape');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_changes_status('f_wrongshape');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM dbsync_changes_fetch('f_badvalues');
\echo :LAST_ERROR_SQLSTATE
-- Redirects are bounded.
SELECT * FROM dbsync_changes_fetch('f_redirect_loop');
\echo :LAST_ERROR_SQLSTATE
-- The size cap (the server's max_response_size, default 64MB).
SELECT count(*) FROM dbsync_changes_fetch('f_huge', "limit" => 1000);
ALTER SERVER f_huge OPTIONS (ADD max_response_size '1MB');
SELECT count(*) FROM dbsync_changes_fetch('f_huge', "limit" => 1000);
\echo :LAST_ERROR_SQLSTATE
-- Wrong credentials: 401, and the password appears nowhere.
CREATE SERVER f_wrongpw FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'demo');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_wrongpw OPTIONS (user 'api', password 'Wrong-S3cr3t');
SELECT * FROM dbsync_changes_fetch('f_wrongpw');
\echo :LAST_ERROR_SQLSTATE
ALTER USER MAPPING FOR CURRENT_USER SERVER f_wrongpw OPTIONS (DROP password);
SELECT * FROM dbsync_changes_fetch('f_wrongpw');
\echo :LAST_ERROR_SQLSTATE
-- Nobody listening.
CREATE SERVER f_down FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://127.0.0.1:1', company 'demo');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_down OPTIONS (user 'api', password 'S3cr3t-pw');
SELECT * FROM dbsync_changes_fetch('f_down');
\echo :LAST_ERROR_SQLSTATE
-- TLS to a server that does not speak it.
CREATE SERVER f_tls FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'https_url', company 'demo');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_tls OPTIONS (user 'api', password 'S3cr3t-pw');
\set VERBOSITY terse
SELECT * FROM dbsync_changes_fetch('f_tls');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- TLS is verified by default: the simulator's certificate is signed by a throwaway CA.
\getenv tls_port DBSYNC_SIM_TLS_PORT
\getenv sim_ca DBSYNC_SIM_CA
\set tls_url 'https://127.0.0.1:' :tls_port
\set localhost_tls_url 'https://localhost:' :tls_port
CREATE SERVER f_tls_unknown_ca FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'tls_url', company 'demo');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_tls_unknown_ca OPTIONS (user 'api', password 'S3cr3t-pw');
SELECT * FROM dbsync_changes_fetch('f_tls_unknown_ca');
\echo :LAST_ERROR_SQLSTATE
-- With the CA, it is trusted; by IP address and by name.
CREATE SERVER f_tls_ca FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'tls_url', company 'demo', ca_file :'sim_ca');
CREATE USER MAPPING FOR CURRENT_USER SERVER f_tls_ca OPTIONS (user 'api', password 'S3cr3t-pw');
SELECT count(*) FROM dbsync_changes_fetch('f_tls_ca', "limit" => 7);
ALTER SERVER f_tls_ca OPTIONS (SET url :'localhost_tls_url');
SELECT count(*) FROM dbsync_changes_fetch('f_tls_ca', "limit" => 7);
-- verify_tls 'false' turns checking off (unsafe, but sometimes needed).
ALTER SERVER f_tls_unknown_ca OPTIONS (ADD verify_tls 'false');
SELECT count(*) FROM dbsync_changes_fetch('f_tls_unknown_ca', "limit" => 7);
-- A CA file that does not exist.
ALTER SERVER f_tls_ca OPTIONS (SET ca_file '/nonexistent/ca.pem');
SELECT * FROM dbsync_changes_fetch('f_tls_ca');
\echo :LAST_ERROR_SQLSTATE

-- A server slower than the timeout option.
ALTER SERVER f_slow_30 OPTIONS (ADD timeout '300ms');
SELECT * FROM dbsync_changes_fetch('f_slow_30');
\echo :LAST_ERROR_SQLSTATE
-- statement_timeout cancels a hung request: SQLSTATE 57014.
ALTER SERVER f_slow_30 OPTIONS (SET timeout '1min');
SET statement_timeout = '500ms';
SELECT * FROM dbsync_changes_fetch('f_slow_30');
\echo :LAST_ERROR_SQLSTATE
RESET statement_timeout;
-- After all of that, the same session still works.
SELECT count(*) FROM dbsync_changes_fetch('flexi', "limit" => 10);
-- No error text (message, detail, hint, context) ever holds a password.
DO $$
DECLARE
  s text;
  msg text; det text; hin text; ctx text;
BEGIN
  FOREACH s IN ARRAY ARRAY['f_wrongpw', 'f_status_500', 'f_status_404', 'f_malformed', 'f_truncated', 'f_reset',
                           'f_down', 'f_badvalues', 'f_tls', 'f_redirect_loop', 'f_huge']
  LOOP
    BEGIN
      PERFORM * FROM dbsync_changes_fetch(s);
      RAISE EXCEPTION 'server % did not fail', s;
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT,
                              ctx = PG_EXCEPTION_CONTEXT;
      IF concat_ws(' ', msg, det, hin, ctx) ~ '(S3cr3t|Wrong-S3cr3t|YXBp)' THEN
        RAISE EXCEPTION 'credential leaked by server %: %', s, msg;
      END IF;
    END;
  END LOOP;
  RAISE NOTICE 'no credential in any error text';
END $$;
