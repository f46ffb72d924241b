-- Servers and user mappings: what the dbsync validator accepts and refuses.
CREATE EXTENSION dbsync;
\getenv sim_port DBSYNC_SIM_PORT
\set sim_url 'http://127.0.0.1:' :sim_port

-- A server of each api, with every option it knows.
CREATE SERVER flexi FOREIGN DATA WRAPPER dbsync
  OPTIONS (api 'flexi', url :'sim_url', company 'demo');
CREATE USER MAPPING FOR CURRENT_USER SERVER flexi OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE SERVER tuned FOREIGN DATA WRAPPER dbsync
  OPTIONS (api 'flexi', url 'https://erp.example:5434/', company 'demo_de.1-x', verify_tls 'false',
           ca_file '/etc/ssl/certs/ca-certificates.crt', connect_timeout '2s', timeout '1min',
           max_response_size '16MB');
CREATE SERVER odoo FOREIGN DATA WRAPPER dbsync
  OPTIONS (api 'odoo_upgrade', url 'https://upgrade.odoo.com');
CREATE SERVER plant FOREIGN DATA WRAPPER dbsync
  OPTIONS (api 'octoplant', url 'https://octoplant.local:64023', client_id 'public-api', client_secret 'ff99');
CREATE SERVER homolog FOREIGN DATA WRAPPER dbsync
  OPTIONS (api 'postgres', host '10.0.0.5', port '5432', dbname 'homologacao', sslmode 'require', connect_timeout '3s');
CREATE USER MAPPING FOR CURRENT_USER SERVER odoo OPTIONS (contract 'M123456-abcdef', email 'dba@example.com');
CREATE USER MAPPING FOR PUBLIC SERVER plant OPTIONS (user 'versiondog', password 'change-it');
SELECT srvname, regexp_replace(srvoptions::text, ':[0-9]+,', ':PORT,') AS srvoptions FROM pg_foreign_server ORDER BY srvname;

-- api is required and must be known.
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync;
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (url 'http://x', company 'c');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'soap', url 'http://x');
\echo :LAST_ERROR_SQLSTATE
-- Required options of each api.
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', company 'demo');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'odoo_upgrade');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'postgres', host 'x');
\echo :LAST_ERROR_SQLSTATE
-- Options of another api, or of none.
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company 'c', dbname 'x');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'odoo_upgrade', url 'http://x', company 'c');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'postgres', dbname 'x', url 'http://x');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company 'c', password 'p');
\echo :LAST_ERROR_SQLSTATE
-- URLs: only http and https, with a host, without credentials (never echoed).
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', company 'c', url 'ftp://files.example/');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', company 'c', url 'file:///etc/passwd');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', company 'c', url 'erp.example:5434');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', company 'c', url 'not a url');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', company 'c', url 'http://');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', company 'c', url 'https://api:Hidden-pw@erp.example');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', company 'c', url 'https://erp.example/#top');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', company 'c', url '');
\echo :LAST_ERROR_SQLSTATE
-- Values.
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company 'de mo');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company '../admin');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company '');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company 'c', verify_tls 'maybe');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company 'c', connect_timeout '0');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company 'c', timeout '-5s');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company 'c', timeout 'soon');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company 'c', timeout '25h');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company 'c', max_response_size '10');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company 'c', max_response_size '2GB');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company 'c', max_response_size 'big');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://x', company 'c', ca_file 'ca.pem');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'postgres', dbname 'x', port '70000');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER bad FOREIGN DATA WRAPPER dbsync OPTIONS (api 'postgres', dbname '');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS bad_servers FROM pg_foreign_server WHERE srvname = 'bad';

-- ALTER SERVER is checked the same way.
ALTER SERVER flexi OPTIONS (DROP company);
\echo :LAST_ERROR_SQLSTATE
ALTER SERVER flexi OPTIONS (ADD bogus 'x');
\echo :LAST_ERROR_SQLSTATE
ALTER SERVER flexi OPTIONS (SET api 'octoplant');
\echo :LAST_ERROR_SQLSTATE
ALTER SERVER tuned OPTIONS (SET timeout 'never');
\echo :LAST_ERROR_SQLSTATE
ALTER SERVER tuned OPTIONS (SET timeout '90s');

-- User mappings take credentials of any api, nothing else.
CREATE USER MAPPING FOR PUBLIC SERVER homolog OPTIONS (user 'repl', password 'pw', token 'x');
\echo :LAST_ERROR_SQLSTATE
CREATE USER MAPPING FOR PUBLIC SERVER homolog OPTIONS (email 'not-an-address');
\echo :LAST_ERROR_SQLSTATE
CREATE USER MAPPING FOR PUBLIC SERVER homolog OPTIONS (email 'a@b@c');
\echo :LAST_ERROR_SQLSTATE
CREATE USER MAPPING FOR PUBLIC SERVER homolog OPTIONS (user '');
\echo :LAST_ERROR_SQLSTATE
ALTER USER MAPPING FOR CURRENT_USER SERVER odoo OPTIONS (ADD api 'flexi');
\echo :LAST_ERROR_SQLSTATE

-- The wrapper itself takes no options.
ALTER FOREIGN DATA WRAPPER dbsync OPTIONS (ADD api 'flexi');
\echo :LAST_ERROR_SQLSTATE
