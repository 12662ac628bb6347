#!/bin/sh
# capture_fixtures.sh: regenerates producer/tests/fixtures/*.txt, raw
# pgoutput (protocol 1) messages captured from a real, throwaway PostgreSQL.
# Each scenario gets its own slot; its messages are read with
# pg_logical_slot_peek_binary_changes in a session set to the GUCs the
# walsender uses (EVENTS.md), one message a line: "<lsn>\t<xid>\t<hex>".
#
# Usage: producer/tests/capture_fixtures.sh [PGBINDIR | --seeds-only]
# (--seeds-only: only rewrite fuzz/corpus/pgoutput from the fixtures.)
# Regenerating the fixtures changes OIDs, LSNs and times: rewrite the
# expected files with PGCDC_GOLDEN_UPDATE=1 build/producer/tests/test_golden
# and review the diff.
# Runs PostgreSQL as the `postgres` user when started as root. The server
# lives in a temporary directory and is stopped and removed on exit.
set -eu

PGBIN=/usr/lib/postgresql/15/bin
[ -n "${1:-}" ] && [ "$1" != --seeds-only ] && PGBIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/fixtures
mkdir -p "$OUT"

# Seed corpus of fuzz/fuzz_pgoutput.c: each fixture as one stream of
# messages, each prefixed by its 2-byte big-endian length.
write_seeds() {
SEEDS=$HERE/../../fuzz/corpus/pgoutput
mkdir -p "$SEEDS"
for f in "$OUT"/*.txt; do
    python3 - "$f" "$SEEDS/$(basename "$f" .txt).bin" <<'PY'
import sys
out = bytearray()
for line in open(sys.argv[1]):
    if line.startswith('#') or not line.strip():
        continue
    msg = bytes.fromhex(line.rstrip('\n').split('\t')[2])
    if len(msg) > 0xffff:
        continue
    out += len(msg).to_bytes(2, 'big') + msg
open(sys.argv[2], 'wb').write(out)
PY
done
echo "fuzz seeds written to $SEEDS"
}

if [ "${1:-}" = --seeds-only ]; then
    write_seeds
    exit 0
fi

TMP=$(mktemp -d /tmp/pgcdc-capture.XXXXXX)
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
[ "$(id -u)" = 0 ] && chown postgres "$TMP"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$PGBIN/initdb" -D "$TMP/data" -U postgres -E UTF8 --locale=C.UTF-8 -A trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/log" -w -t 60 \
    -o "-c wal_level=logical -c port=$PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$TMP -c fsync=off" \
    start >/dev/null

psql_run() {
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"
}

psql_run >/dev/null <<'SQL'
CREATE PUBLICATION p FOR ALL TABLES;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN price AS numeric(10,2);
CREATE DOMAIN int_list AS int[];
CREATE TYPE pair AS (a int, b text);
SELECT pg_replication_origin_create('upstream');
SQL

# capture NAME [extra pgoutput options]: writes fixtures/NAME.txt from the
# slot NAME, which the scenario's SQL has filled.
# PROTO (default 1) and SESSION (extra SET commands) change the protocol and the
# decoding session's settings.
capture() {
    name=$1
    shift
    opts="'proto_version', '${PROTO:-1}', 'publication_names', 'p', 'messages', 'true'$*"
    {
        echo "# $name: pgoutput protocol ${PROTO:-1} messages captured by capture_fixtures.sh"
        echo "# from PostgreSQL $(psql_run -Atc 'SHOW server_version'); lsn<TAB>xid<TAB>hex"
        psql_run -At -F "$(printf '\t')" <<SQL
SET DateStyle = ISO; SET TimeZone = UTC; SET IntervalStyle = iso_8601;
SET extra_float_digits = 3; SET bytea_output = hex; ${SESSION:-}
SELECT lsn, xid, encode(data, 'hex')
  FROM pg_logical_slot_peek_binary_changes('$slot', NULL, NULL, $opts);
SQL
    } >"$OUT/$name.txt"
}

slot() {
    slot=$1
    psql_run -c "SELECT pg_create_logical_replication_slot('$slot', 'pgoutput')" >/dev/null
}

# --- a column of every type of EVENTS.md, with edge values -------------
psql_run >/dev/null <<'SQL'
CREATE TABLE t_types (
  id int PRIMARY KEY,
  c_bool bool, c_int2 int2, c_int4 int4, c_int8 int8, c_oid oid,
  c_float4 float4, c_float8 float8, c_numeric numeric,
  c_text text, c_varchar varchar(20), c_char char(3),
  c_json json, c_jsonb jsonb, c_bytea bytea,
  c_date date, c_timestamp timestamp, c_timestamptz timestamptz,
  c_time time, c_timetz timetz, c_interval interval,
  c_uuid uuid, c_inet inet, c_cidr cidr, c_macaddr macaddr, c_money money,
  c_xml xml, c_bit bit(4), c_varbit varbit, c_int4range int4range,
  c_tstzrange tstzrange, c_point point, c_box box, c_tsvector tsvector,
  c_int4_arr int4[], c_text_arr text[], c_float8_arr float8[],
  c_numeric_arr numeric[], c_bool_arr bool[], c_jsonb_arr jsonb[],
  c_bytea_arr bytea[], c_date_arr date[], c_ts_arr timestamp[],
  c_tstz_arr timestamptz[], c_box_arr box[], c_uuid_arr uuid[]
);
SQL
slot types
psql_run >/dev/null <<'SQL'
SET TimeZone = 'UTC';
INSERT INTO t_types VALUES (1,
  true, 42, 7, 9000000000, 12345,
  1.5, 3.141592653589793, 19.90,
  'lamp', 'café', 'ab',
  '{"k": 1, "l": [1, 2]}', '{"k": 1, "l": [1, 2]}', '\xdeadbeef',
  '2024-01-31', '2024-01-31 10:00:00.123456', '2024-01-31 10:00:00.123456+00',
  '10:00:00', '10:00:00+02', '1 day 02:03:04',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '10.0.0.0/8',
  '08:00:2b:01:02:03', 12.34,
  '<a>x</a>', B'1010', B'101', '[1,10)',
  '[2024-01-01 00:00:00+00,2024-02-01 00:00:00+00)', '(1,2)', '(3,4),(1,2)',
  'a fat cat',
  '{1,2,3}', '{a,b}', '{1.5,2}', '{19.90,0}', '{t,f}', ARRAY['{"a":1}'::jsonb, '[]'],
  '{"\\x00ff"}', '{2024-01-31}', '{"2024-01-31 10:00:00"}',
  '{"2024-01-31 10:00:00+00"}', '{(1,1),(0,0)}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}');
INSERT INTO t_types (id) VALUES (2);
INSERT INTO t_types VALUES (3,
  false, -32768, -2147483648, 9223372036854775807, 4294967295,
  'NaN', '-Infinity', '-123456789012345678901234567890.123456789012345678901234567890',
  '', 'é😀中', 'a',
  '{"a": [1, {"b": null}], "c": "\u00e9", "d": {"e": {"f": [[]]}}}',
  '{"a": [1, {"b": null}], "c": "é", "d": {"e": {"f": [[]]}}}', '\x00ff0000',
  '0044-03-15 BC', 'infinity', '-infinity',
  '24:00:00', '23:59:59.999999-05:30', '-1 years -2 mons +3 days -04:05:06.789',
  '00000000-0000-0000-0000-000000000000', '::1', '2001:db8::/32',
  'ff:ff:ff:ff:ff:ff', -0.01,
  '', B'0000', B'', 'empty',
  '(,)', '(-1.5,0)', '(0,0),(0,0)', '',
  '{{1,NULL},{3,4}}', '{"a\"b","c\\d",NULL,"NULL","","x y","{}",","}',
  '{NaN,Infinity,-Infinity,-0,1e-300}', '{NaN,-1e-20,123456789012345678901234567890}',
  '{{t,NULL},{NULL,f}}', ARRAY['{"a":{"b":[1,"x\"y"]}}'::jsonb, NULL],
  '{"\\x","\\x0000",NULL}', '{infinity,0044-03-15 BC,NULL}', '[0:1]={"2024-01-31 10:00:00",infinity}',
  '{{"2024-01-31 10:00:00+00"},{"0044-03-15 10:00:00+00 BC"}}', '{(1,1),(0,0);(2,2),(1,1)}', '{}');
INSERT INTO t_types (id, c_text, c_varchar, c_float4, c_float8, c_numeric, c_timestamptz,
                     c_timestamp, c_date, c_text_arr, c_json, c_jsonb, c_int4_arr)
VALUES (4, E'tab\there\nnl\r\x01\x1f\x7f\u0085\u2028 "q" \\ /', E'\U0001F600\U0010FFFF',
        '1e-45', 'Infinity', 'NaN', '2024-01-31 10:00:00.5+05:30',
        '10000-01-01 00:00:00', '10000-12-31', ARRAY[E'\x01\n', E'\U0001F600'],
        '"just a string"', '12345678901234567890.5', '[1:2][3:4]={{1,2},{3,4}}');
INSERT INTO t_types (id, c_numeric, c_bytea, c_text)
VALUES (5, repeat('9', 200)::numeric * -1, ''::bytea, repeat('é', 3));
UPDATE t_types SET c_int4 = 8 WHERE id = 1;
DELETE FROM t_types WHERE id = 2;
SQL
capture types

# --- replica identities and keys --------------------------------------
psql_run >/dev/null <<'SQL'
CREATE TABLE t_default (id int PRIMARY KEY, v text);
CREATE TABLE t_full (id int PRIMARY KEY, v text);
ALTER TABLE t_full REPLICA IDENTITY FULL;
CREATE TABLE t_index (a int NOT NULL, b text NOT NULL, v text);
CREATE UNIQUE INDEX t_index_ba ON t_index (b, a);
ALTER TABLE t_index REPLICA IDENTITY USING INDEX t_index_ba;
CREATE TABLE t_nothing (id int, v text);
ALTER TABLE t_nothing REPLICA IDENTITY NOTHING;
CREATE TABLE t_composite (v text, tenant text, id int, PRIMARY KEY (tenant, id));
SQL
slot identity
psql_run >/dev/null <<'SQL'
INSERT INTO t_default VALUES (1, 'a'), (2, 'b');
UPDATE t_default SET v = 'a2' WHERE id = 1;
UPDATE t_default SET id = 10 WHERE id = 2;
DELETE FROM t_default WHERE id = 1;
INSERT INTO t_full VALUES (1, 'a');
UPDATE t_full SET v = NULL WHERE id = 1;
DELETE FROM t_full WHERE id = 1;
INSERT INTO t_index VALUES (1, 'x', 'a');
UPDATE t_index SET v = 'b';
UPDATE t_index SET a = 2;
DELETE FROM t_index;
INSERT INTO t_nothing VALUES (1, 'a');
BEGIN;
INSERT INTO t_composite VALUES ('a', 't1', 7);
INSERT INTO t_default VALUES (3, 'c');
UPDATE t_composite SET v = 'b';
DELETE FROM t_composite;
COMMIT;
SQL
capture identity
capture identity_binary ", 'binary', 'true'"

# --- unchanged TOAST ---------------------------------------------------
psql_run >/dev/null <<'SQL'
CREATE TABLE t_toast (id int PRIMARY KEY, big text, n int, big2 text);
ALTER TABLE t_toast ALTER big SET STORAGE EXTERNAL, ALTER big2 SET STORAGE EXTERNAL;
SQL
slot toast
psql_run >/dev/null <<'SQL'
INSERT INTO t_toast VALUES (1, repeat('x', 3000), 1, repeat('y', 3000));
UPDATE t_toast SET n = 2;
UPDATE t_toast SET n = 3, big2 = 'small';
DELETE FROM t_toast;
SQL
capture toast

# --- truncate ------------------------------------------------------------
psql_run >/dev/null <<'SQL'
CREATE TABLE t_parent (id serial PRIMARY KEY);
CREATE TABLE t_child (id int PRIMARY KEY, parent int REFERENCES t_parent);
SQL
slot truncate
psql_run >/dev/null <<'SQL'
INSERT INTO t_parent DEFAULT VALUES;
INSERT INTO t_child VALUES (1, 1);
TRUNCATE t_parent RESTART IDENTITY CASCADE;
TRUNCATE t_child;
TRUNCATE t_parent, t_child;
SQL
capture truncate

# --- ALTER TABLE between changes --------------------------------------------
psql_run >/dev/null "-c" "CREATE TABLE t_alter (id int PRIMARY KEY, a text, b int)"
slot alter
psql_run >/dev/null <<'SQL'
INSERT INTO t_alter VALUES (1, 'x', 1);
ALTER TABLE t_alter ADD COLUMN c jsonb DEFAULT '{}';
INSERT INTO t_alter VALUES (2, 'y', 2, '{"z":1}');
ALTER TABLE t_alter DROP COLUMN a;
UPDATE t_alter SET b = 3 WHERE id = 1;
ALTER TABLE t_alter ALTER COLUMN b TYPE numeric;
INSERT INTO t_alter VALUES (3, 4.5, NULL);
SQL
capture alter

# --- user types: enum, domain, composite, arrays of them ---------------------
psql_run >/dev/null -c "CREATE TABLE t_user (id int PRIMARY KEY, m mood, p price, l int_list, pr pair, ms mood[], ps pair[], pa price[])"
slot user_types
psql_run >/dev/null <<'SQL'
INSERT INTO t_user VALUES (1, 'happy', 19.9, '{1,2}', '(1,"a b")', '{sad,ok}',
                           ARRAY['(1,x)'::pair, '(2,"y,z")'::pair, NULL], '{1.5,NULL}');
SQL
capture user_types

# --- logical decoding messages and origins ------------------------------------
slot messages
psql_run >/dev/null <<'SQL'
SELECT pg_logical_emit_message(false, 'pgcdc', 'not transactional');
BEGIN;
SELECT pg_logical_emit_message(true, 'pgcdc.tx', '\x00ff'::bytea);
INSERT INTO t_default VALUES (100, 'with message');
COMMIT;
SELECT pg_replication_origin_session_setup('upstream');
BEGIN;
SELECT pg_replication_origin_xact_setup('0/ABCDEF', '2024-01-31 10:00:00+00');
INSERT INTO t_default VALUES (101, 'from upstream');
COMMIT;
SQL
capture messages

# --- transactions streamed before their commit (protocol 2) ----------------------
# 64kB of decoding memory: each transaction of 300 rows streams in blocks. One
# commits with a subtransaction rolled back inside it (after it was streamed), one
# rolls back whole.
psql_run >/dev/null <<'SQL'
CREATE TABLE t_stream (id int PRIMARY KEY, pad text);
SQL
slot streamed
psql_run >/dev/null <<'SQL'
BEGIN;
INSERT INTO t_stream SELECT g, repeat('p', 100) FROM generate_series(1, 300) g;
SAVEPOINT s;
INSERT INTO t_stream SELECT g, repeat('s', 100) FROM generate_series(301, 600) g;
ROLLBACK TO s;
INSERT INTO t_stream SELECT g, 'after' FROM generate_series(601, 610) g;
COMMIT;
BEGIN;
INSERT INTO t_stream SELECT g, repeat('a', 100) FROM generate_series(1001, 1300) g;
ROLLBACK;
INSERT INTO t_stream VALUES (2000, 'last');
SQL
PROTO=2 SESSION="SET logical_decoding_work_mem = '64kB';" capture streamed ", 'streaming', 'on'"

echo "fixtures written to $OUT"
write_seeds
