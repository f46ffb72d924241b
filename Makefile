# dbsync: PGXS build. `make && make install` as root, tests with `test/check` (see README.md).
EXTENSION = dbsync
MODULE_big = dbsync
OBJS = \
	src/dbsync.o \
	src/server_options.o \
	src/fdw_validator.o \
	src/http.o \
	src/http_errors.o \
	src/json_layer.o \
	src/json_stream.o \
	src/flexi_client.o \
	src/flexi_parse.o \
	src/flexi_records.o \
	src/flexi_sql.o \
	src/bg_txn.o \
	src/jobs.o \
	src/sync_round.o \
	src/sync_store.o \
	src/sync_sql.o \
	src/worker_shmem.o \
	src/worker_launcher.o \
	src/job_runner.o \
	src/sha256_thread.o \
	src/stream_io.o \
	src/transfer.o \
	src/zip_sink.o \
	src/odoo_client.o \
	src/upgrade_sql.o \
	src/upgrade_jobs.o \
	src/octoplant_token.o \
	src/octoplant_client.o \
	src/export_sql.o \
	src/export_jobs.o \
	src/ilog_image.o \
	src/ilog_layout.o \
	src/ilog_horizon.o \
	src/ilog_store.o \
	src/ilog_trigger.o \
	src/ilog_decode.o \
	src/pg_target.o \
	src/repl_source.o \
	src/repl_batch.o \
	src/repl_strict.o \
	src/repl_sync.o \
	src/repl_sql.o \
	src/job_wake.o \
	src/job_kinds.o \
	src/extension_version.o

DATA = $(wildcard sql/dbsync--*.sql)
PGFILEDESC = "dbsync - sync PostgreSQL with remote systems"

# Warnings are errors; override with WERROR= for experiments only.
WERROR ?= -Werror
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers $(WERROR)
# The SQL version this build is for (the runner refuses a database at another one).
EXT_VERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" dbsync.control)
PG_CPPFLAGS = -I$(srcdir)/src -I$(shell $(PG_CONFIG) --includedir) -DDBSYNC_VERSION='"$(EXT_VERSION)"'
SHLIB_LINK = -lcurl -ljansson -lcrypto -lpthread -lpq

REGRESS = fdw_options changes_fetch changes_control http_errors security sync upgrade_api export_api ilog replication connector upgrade
REGRESS_OPTS = --inputdir=test --temp-instance=tmp_check_regress --temp-config=test/dbsync.conf

# Isolation specs live in test/specs/, their expected output in expected/.
ISOLATION = ilog_read_order ilog_read_interleaved ilog_read_readonly ilog_concurrent_writers ilog_clear_no_block
ISOLATION_OPTS = --inputdir=test --outputdir=. --temp-instance=tmp_check_iso --temp-config=test/dbsync.conf

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = tmp_check_regress tmp_check_iso results output_iso regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track headers: rebuild every object when one changes.
$(OBJS): $(wildcard $(srcdir)/src/*.h)
