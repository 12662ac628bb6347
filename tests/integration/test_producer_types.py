"""pgcdc-producer against real PostgreSQL 15 and Kafka: a column of every type of
EVENTS.md's "Column values" table, each with edge values, streamed and read back with
confluent-kafka; the events must equal hand-written JSON (not what the producer's own
code would compute)."""

import base64
import json

from producer_harness import cdc  # noqa: F401 - pytest fixture

# name, SQL type. Types of EVENTS.md's table, user types (enum, domains, composite,
# arrays of them) and extension types from postgresql-contrib (citext, hstore).
COLUMNS = [
    ("c_bool", "bool"),
    ("c_int2", "int2"),
    ("c_int4", "int4"),
    ("c_int8", "int8"),
    ("c_oid", "oid"),
    ("c_float4", "float4"),
    ("c_float8", "float8"),
    ("c_numeric", "numeric"),
    ("c_text", "text"),
    ("c_varchar", "varchar(20)"),
    ("c_char", "char(3)"),
    ("c_json", "json"),
    ("c_jsonb", "jsonb"),
    ("c_bytea", "bytea"),
    ("c_date", "date"),
    ("c_ts", "timestamp"),
    ("c_tstz", "timestamptz"),
    ("c_time", "time"),
    ("c_timetz", "timetz"),
    ("c_interval", "interval"),
    ("c_uuid", "uuid"),
    ("c_inet", "inet"),
    ("c_cidr", "cidr"),
    ("c_macaddr", "macaddr"),
    ("c_money", "money"),
    ("c_xml", "xml"),
    ("c_bit", "bit(4)"),
    ("c_varbit", "varbit"),
    ("c_int4range", "int4range"),
    ("c_tstzrange", "tstzrange"),
    ("c_point", "point"),
    ("c_box", "box"),
    ("c_tsvector", "tsvector"),
    ("c_enum", "mood"),
    ("c_posint", "posint"),
    ("c_price", "price"),
    ("c_pair", "pair"),
    ("c_int_arr", "int4[]"),
    ("c_text_arr", "text[]"),
    ("c_float_arr", "float8[]"),
    ("c_numeric_arr", "numeric[]"),
    ("c_bool_arr", "bool[]"),
    ("c_jsonb_arr", "jsonb[]"),
    ("c_bytea_arr", "bytea[]"),
    ("c_date_arr", "date[]"),
    ("c_ts_arr", "timestamp[]"),
    ("c_tstz_arr", "timestamptz[]"),
    ("c_box_arr", "box[]"),
    ("c_uuid_arr", "uuid[]"),
    ("c_enum_arr", "mood[]"),
    ("c_pair_arr", "pair[]"),
    ("c_posint_arr", "posint[]"),
    ("c_tags", "tags"),
    ("c_citext", "citext"),
    ("c_hstore", "hstore"),
    ("c_citext_arr", "citext[]"),
]

# Row id -> {column: (SQL literal, expected JSON value)}; columns left out are NULL.
ROWS = {
    # Ordinary values.
    1: {
        "c_bool": ("true", True),
        "c_int2": ("-32768", -32768),
        "c_int4": ("2147483647", 2147483647),
        "c_int8": ("-9223372036854775808", -9223372036854775808),
        "c_oid": ("4294967295", 4294967295),
        "c_float4": ("1.5", 1.5),
        "c_float8": ("0.1", 0.1),
        "c_numeric": ("-123456789012345678901234567890.000000000000000000001",
                      "-123456789012345678901234567890.000000000000000000001"),
        "c_text": ("'lamp'", "lamp"),
        "c_varchar": ("'café'", "café"),
        "c_char": ("'ab'", "ab "),
        "c_json": ("""'{"a": [1, {"b": null}], "c": "x"}'""",
                   {"a": [1, {"b": None}], "c": "x"}),
        "c_jsonb": ("""'{"b": {"c": [1, 2.50, true]}, "a": "ü"}'""",
                    {"a": "ü", "b": {"c": [1, 2.5, True]}}),
        "c_bytea": (r"'\x00ff0001'", base64.b64encode(b"\x00\xff\x00\x01").decode()),
        "c_date": ("'2024-02-29'", "2024-02-29"),
        "c_ts": ("'2024-01-31 10:00:00.123456'", "2024-01-31T10:00:00.123456"),
        "c_tstz": ("'2024-01-31 12:00:00.5+02'", "2024-01-31T10:00:00.5Z"),
        "c_time": ("'23:59:59.999999'", "23:59:59.999999"),
        "c_timetz": ("'10:00:00-03:30'", "10:00:00-03:30"),
        "c_interval": ("'1 year 2 months 3 days 04:05:06.5'", "P1Y2M3DT4H5M6.5S"),
        "c_uuid": ("'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "c_inet": ("'192.168.0.1/24'", "192.168.0.1/24"),
        "c_cidr": ("'10.0.0.0/8'", "10.0.0.0/8"),
        "c_macaddr": ("'08:00:2B:01:02:03'", "08:00:2b:01:02:03"),
        "c_money": ("'12.34'", "$12.34"),
        "c_xml": ("'<a>x</a>'", "<a>x</a>"),
        "c_bit": ("B'1010'", "1010"),
        "c_varbit": ("B'101'", "101"),
        "c_int4range": ("'[1,10]'", "[1,11)"),
        "c_tstzrange": ("'[2024-01-01 00:00+02,)'", '["2023-12-31 22:00:00+00",)'),
        "c_point": ("'(1.5,-2)'", "(1.5,-2)"),
        "c_box": ("'(1,2),(3,4)'", "(3,4),(1,2)"),
        "c_tsvector": ("'fat cat'", "'cat' 'fat'"),
        "c_enum": ("'happy 😀'", "happy 😀"),
        "c_posint": ("5", 5),
        "c_price": ("19.9", "19.90"),
        "c_pair": ("ROW(1, 'a b')", '(1,"a b")'),
        "c_int_arr": ("'{1,2,3}'", [1, 2, 3]),
        "c_text_arr": ("""ARRAY['a', 'b,c', 'with "quote"', NULL, 'NULL', '']""",
                       ["a", "b,c", 'with "quote"', None, "NULL", ""]),
        "c_float_arr": ("'{1.5,NaN,Infinity,-Infinity}'", [1.5, "NaN", "Infinity", "-Infinity"]),
        "c_numeric_arr": ("'{1.10,NaN}'", ["1.10", "NaN"]),
        "c_bool_arr": ("'{t,f,NULL}'", [True, False, None]),
        "c_jsonb_arr": ("""ARRAY['{"a": 1}'::jsonb, '[]', 'null', NULL]""", [{"a": 1}, [], None, None]),
        "c_bytea_arr": (r"ARRAY['\x00'::bytea, '\x']", ["AA==", ""]),
        "c_date_arr": ("'{2024-01-31,infinity}'", ["2024-01-31", "infinity"]),
        "c_ts_arr": ("'{\"2024-01-31 10:00:00\"}'", ["2024-01-31T10:00:00"]),
        "c_tstz_arr": ("ARRAY['2024-01-31 10:00+00'::timestamptz, 'infinity']",
                       ["2024-01-31T10:00:00Z", "infinity"]),
        "c_box_arr": ("ARRAY[box '(1,1),(0,0)', box '(2,2),(1,1)']", ["(1,1),(0,0)", "(2,2),(1,1)"]),
        "c_uuid_arr": ("'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]),
        "c_enum_arr": ("""'{sad,"happy 😀"}'""", ["sad", "happy 😀"]),
        "c_pair_arr": ("""ARRAY[ROW(1, 'x')::pair, ROW(NULL, 'y "q"')::pair]""",
                       ["(1,x)", '(,"y ""q""")']),
        "c_posint_arr": ("'{1,2}'", [1, 2]),
        "c_tags": ("'{x,y}'", ["x", "y"]),
        "c_citext": ("'MiXeD'", "MiXeD"),
        "c_hstore": ("""'"a"=>"1", "b"=>NULL'""", '"a"=>"1", "b"=>NULL'),
        "c_citext_arr": ("'{A,b}'", ["A", "b"]),
    },
    # Every column NULL.
    2: {},
    # Edges: empty values, 4-byte UTF-8, NaN/Infinity, BC, infinity, nesting, NULLs in
    # multi-dimensional arrays, zero bytes.
    3: {
        "c_bool": ("false", False),
        "c_int2": ("0", 0),
        "c_int4": ("-2147483648", -2147483648),
        "c_int8": ("9223372036854775807", 9223372036854775807),
        "c_oid": ("0", 0),
        "c_float4": ("'NaN'", "NaN"),
        "c_float8": ("'-Infinity'", "-Infinity"),
        "c_numeric": ("'NaN'", "NaN"),
        "c_text": ("''", ""),
        "c_varchar": ("'𝄞😀'", "𝄞😀"),
        "c_char": ("''", "   "),
        "c_json": ("""'{"a":{"b":{"c":[[],[{}],[[null]]]}}}'""", {"a": {"b": {"c": [[], [{}], [[None]]]}}}),
        "c_jsonb": ("""'"just a string"'""", "just a string"),
        "c_bytea": (r"'\x'", ""),
        "c_date": ("'0044-03-15 BC'", "0044-03-15 BC"),
        "c_ts": ("'infinity'", "infinity"),
        "c_tstz": ("'-infinity'", "-infinity"),
        "c_time": ("'00:00:00'", "00:00:00"),
        "c_timetz": ("'23:59:59+14:59'", "23:59:59+14:59"),
        "c_interval": ("'-1 days -00:00:01'", "P-1DT-1S"),
        "c_money": ("'-0.01'", "-$0.01"),
        "c_xml": ("''", ""),
        "c_varbit": ("B''", ""),
        "c_int4range": ("'empty'", "empty"),
        "c_tsvector": ("''", ""),
        "c_enum": ("'sad'", "sad"),
        "c_posint": ("2147483647", 2147483647),
        "c_price": ("'-0.5'", "-0.50"),
        "c_pair": ("ROW(NULL, NULL)", "(,)"),
        "c_int_arr": ("'{{1,NULL},{3,4}}'", [[1, None], [3, 4]]),
        "c_text_arr": ("'{}'", []),
        "c_float_arr": ("'{{NaN,-0},{1e308,-1.5e-10}}'", [["NaN", 0], [1e308, -1.5e-10]]),
        "c_numeric_arr": ("'{{-0.000001,NULL},{1e-20,99999999999999999999999999}}'",
                          [["-0.000001", None], ["0.00000000000000000001",
                                                  "99999999999999999999999999"]]),
        "c_bool_arr": ("'{{{t}},{{NULL}}}'", [[[True]], [[None]]]),
        "c_jsonb_arr": ("'{}'", []),
        "c_bytea_arr": (r"ARRAY[NULL, '\x000000'::bytea]", [None, "AAAA"]),
        "c_ts_arr": ("'{infinity,-infinity,\"0044-03-15 10:00:00 BC\"}'",
                     ["infinity", "-infinity", "0044-03-15 10:00:00 BC"]),
        "c_enum_arr": ("'{}'", []),
        "c_pair_arr": ("ARRAY[NULL::pair]", [None]),
        "c_tags": ("'{}'", []),
        "c_citext": ("''", ""),
        "c_hstore": ("''", ""),
    },
    # More edges: control characters everywhere, numeric infinities, time zones, BC with
    # a time, backslashes and braces in arrays.
    4: {
        "c_float4": ("'Infinity'", "Infinity"),
        "c_float8": ("'-0'", 0),
        "c_numeric": ("'-Infinity'", "-Infinity"),
        "c_text": (r"E'a\x01b\tc\nd\x7f\"\\ \u2028 \x1f'", 'a\x01b\tc\nd\x7f"\\ \u2028 \x1f'),
        "c_varchar": ("'\U0001F600'", "\U0001F600"),
        "c_char": ("'é'", "é  "),
        "c_json": (r"""'{"ctl": "\u0001\n", "deep": [[[[[[[[[[1]]]]]]]]]]}'""",
                   {"ctl": "\x01\n", "deep": [[[[[[[[[[1]]]]]]]]]]}),
        "c_jsonb": (r"""'[1, "\u0001x", {"k": [true, null]}]'""",
                    [1, "\x01x", {"k": [True, None]}]),
        "c_bytea": (r"'\x5c0022270a'", base64.b64encode(b"\\\x00\"'\n").decode()),
        "c_date": ("'5874897-12-31'", "5874897-12-31"),
        "c_ts": ("'0044-03-15 10:00:00 BC'", "0044-03-15 10:00:00 BC"),
        "c_tstz": ("'2024-01-01 00:00:00 Asia/Kathmandu'", "2023-12-31T18:15:00Z"),
        "c_timetz": ("'00:00:00+00'", "00:00:00+00"),
        "c_interval": ("'0'", "PT0S"),
        "c_text_arr": (r"ARRAY[E'back\\slash', E'tab\there', E'new\nline', '{braces}', ' spaced ', E'ctl\x01']",
                       ["back\\slash", "tab\there", "new\nline", "{braces}", " spaced ", "ctl\x01"]),
        "c_int_arr": ("'{{{1,2}},{{3,NULL}}}'", [[[1, 2]], [[3, None]]]),
        "c_tstz_arr": ("ARRAY['2024-07-01 12:00:00 America/New_York'::timestamptz, NULL]",
                       ["2024-07-01T16:00:00Z", None]),
        "c_date_arr": ("ARRAY['0001-01-01 BC'::date]", ["0001-01-01 BC"]),
        "c_hstore": (r"""'"k\"ey"=>"va\\lue"'""", r'"k\"ey"=>"va\\lue"'),
        "c_citext_arr": ("ARRAY[NULL, '', 'NULL']::citext[]", [None, "", "NULL"]),
    },
}

DDL = [
    "CREATE EXTENSION citext",
    "CREATE EXTENSION hstore",
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy 😀')",
    "CREATE DOMAIN posint AS integer CHECK (VALUE > 0)",
    "CREATE DOMAIN price AS numeric(12,2)",
    "CREATE DOMAIN tags AS text[]",
    "CREATE TYPE pair AS (a int, b text)",
    "CREATE TABLE all_types (id int PRIMARY KEY, "
    + ", ".join(f"{name} {typ}" for name, typ in COLUMNS) + ")",
]


def insert_sql(row_id, values):
    names = ["id"] + list(values)
    literals = [str(row_id)] + [values[n][0] for n in values]
    return f"INSERT INTO all_types ({', '.join(names)}) VALUES ({', '.join(literals)})"


def expected_after(row_id, values):
    after = {"id": row_id}
    for name, _ in COLUMNS:
        after[name] = values[name][1] if name in values else None
    return after


def test_every_type_and_edge_value_streams_as_hand_written_json(cdc):
    cdc.create(*DDL, reference=False)
    # One transaction per row, rows 3 and 4 together in one.
    cdc.in_schema(insert_sql(1, ROWS[1]))
    cdc.in_schema(insert_sql(2, ROWS[2]))
    cdc.in_schema(insert_sql(3, ROWS[3]), insert_sql(4, ROWS[4]))
    txid_34 = None
    proc = cdc.run()
    assert "endpos reached" in proc.log()

    records = cdc.read(cdc.topic("all_types"))
    assert len(records) == 4, [r.value for r in records]
    by_id = {r.key["id"]: r for r in records}
    assert sorted(by_id) == [1, 2, 3, 4]

    db = cdc.one("SELECT current_database()")
    for row_id, values in ROWS.items():
        rec = by_id[row_id]
        assert rec.key == {"id": row_id}
        assert rec.raw_key == json.dumps({"id": row_id}, separators=(",", ":")).encode()
        ev = rec.value
        # Every control character is escaped: the record's bytes hold none.
        assert not [b for b in rec.raw_value if b < 0x20 or b == 0x7F], rec.raw_value
        rec.raw_value.decode("utf-8")  # valid UTF-8
        assert ev["op"] == "c"
        assert ev["before"] is None
        assert "unchanged_toast" not in ev
        want = expected_after(row_id, values)
        got = ev["after"]
        assert list(got) == list(want), "columns in table order"
        mismatches = {k: (got[k], want[k]) for k in want if got[k] != want[k]
                      or type(got[k]) is not type(want[k])}
        assert not mismatches, f"row {row_id}: (got, expected) {mismatches}"
        src = ev["source"]
        assert src["db"] == db
        assert src["schema"] == cdc.schema
        assert src["table"] == "all_types"
        assert src["snapshot"] is False
        assert src["lsn"] == rec.lsn, "pgcdc-lsn header equals source.lsn"
        assert src["commit_lsn"] >= src["lsn"]
        assert isinstance(src["txid"], int) and src["txid"] > 0
        assert isinstance(src["ts_ms"], int) and isinstance(ev["ts_ms"], int)
        assert ev["ts_ms"] >= src["ts_ms"]
        assert list(ev) == ["op", "before", "after", "source", "ts_ms", "types"]
        # EVENTS.md "types": every column, in table order, format_type's text.
        assert list(ev["types"]) == list(want)
        types = ev["types"]
        assert {c: types[c] for c in ("id", "c_int4", "c_varchar", "c_char", "c_tstz",
                                       "c_enum", "c_posint", "c_price", "c_int_arr", "c_bit",
                                       "c_numeric", "c_jsonb")} == {
            "id": "integer", "c_int4": "integer", "c_varchar": "character varying(20)",
            "c_char": "character(3)", "c_tstz": "timestamp with time zone",
            "c_enum": f"enum {cdc.schema}.mood", "c_posint": "integer", "c_price": "numeric(12,2)",
            "c_int_arr": "integer[]", "c_bit": "bit(4)", "c_numeric": "numeric",
            "c_jsonb": "jsonb"}
        assert list(src) == ["db", "schema", "table", "lsn", "commit_lsn", "txid", "seq",
                             "ts_ms", "snapshot"]
    # Rows 3 and 4 were one transaction: same txid and commit_lsn, seq 0 and 1.
    s3, s4 = by_id[3].value["source"], by_id[4].value["source"]
    txid_34 = s3["txid"]
    assert s4["txid"] == txid_34 and s4["commit_lsn"] == s3["commit_lsn"]
    assert (s3["seq"], s4["seq"]) == (0, 1)
    assert s3["lsn"] < s4["lsn"]
    assert by_id[1].value["source"]["seq"] == 0
    assert by_id[1].value["source"]["txid"] < txid_34
