-- Switching the changes API on and off, and reading its state.
\getenv sim_port DBSYNC_SIM_PORT
\set sim_url 'http://127.0.0.1:' :sim_port
CREATE SERVER flexi_off FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'disabled');
CREATE SERVER flexi_locked FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'locked');
CREATE SERVER flexi_nolicense FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url :'sim_url', company 'nolicense');
CREATE USER MAPPING FOR CURRENT_USER SERVER flexi_off OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE USER MAPPING FOR CURRENT_USER SERVER flexi_locked OPTIONS (user 'api', password 'S3cr3t-pw');
CREATE USER MAPPING FOR CURRENT_USER SERVER flexi_nolicense OPTIONS (user 'api', password 'S3cr3t-pw');

SELECT dbsync_changes_status('flexi_off');
-- A company whose log is off: reading it says so.
SELECT * FROM dbsync_changes_fetch('flexi_off');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_changes_enable('flexi_off');
SELECT dbsync_changes_status('flexi_off');
SELECT count(*) FROM dbsync_changes_fetch('flexi_off');
SELECT dbsync_changes_disable('flexi_off');
SELECT dbsync_changes_status('flexi_off');

-- Enabling while users are logged in: the documented lock error, with what to do.

SELECT dbsync_changes_enable('flexi_locked');
\echo :LAST_ERROR_SQLSTATE
-- A licence without the REST API.
SELECT dbsync_changes_enable('flexi_nolicense');
\echo :LAST_ERROR_SQLSTATE
SELECT dbsync_changes_status('flexi_nolicense');
\echo :LAST_ERROR_SQLSTATE

SELECT dbsync_changes_status('flexi_locked');
