/* test_pgvalue.c: PostgreSQL text values to EVENTS.md JSON, by type: the
 * scalar classes, array literals, string escaping and invalid UTF-8. */
#include <stdlib.h>
#include <string.h>

#include "pgvalue.h"
#include "tap.h"

static cdc_buf out = CDC_BUF_INIT;
static cdc_buf scratch = CDC_BUF_INIT;
static char err[256];

/* The JSON of `text` as a value of built-in type `oid`, or "ERROR: ...". */
static const char *conv_len(uint32_t oid, const char *text, size_t len)
{
    pgvalue_type t;
    if (!pgvalue_builtin_type(oid, &t))
        return "NOT BUILTIN";
    cdc_buf_reset(&out);
    err[0] = '\0';
    if (pgvalue_append_json(&out, &t, text, len, &scratch, err, sizeof err) < 0) {
        cdc_buf_reset(&out);
        cdc_buf_printf(&out, "ERROR: %s", err);
    }
    return out.data ? out.data : "";
}

static const char *conv(uint32_t oid, const char *text)
{
    return conv_len(oid, text, strlen(text));
}

static const char *str(const char *s, size_t len)
{
    cdc_buf_reset(&out);
    pgvalue_append_json_string(&out, s, len);
    return out.data;
}

static void test_scalars(void)
{
    TAP_STREQ(conv(16, "t"), "true", "bool t is true");
    TAP_STREQ(conv(16, "f"), "false", "bool f is false");
    TAP_STREQ(conv(21, "-32768"), "-32768", "int2 is a number");
    TAP_STREQ(conv(20, "9223372036854775807"), "9223372036854775807", "int8 keeps every digit");
    TAP_STREQ(conv(26, "4294967295"), "4294967295", "oid is a number");
    TAP_STREQ(conv(23, "007"), "\"007\"", "int text with leading zeros falls back to a string");
    TAP_STREQ(conv(701, "1e+100"), "1e+100", "float8 with exponent is a number");
    TAP_STREQ(conv(701, "-1.5e-07"), "-1.5e-07", "negative float8 is a number");
    TAP_STREQ(conv(701, "NaN"), "\"NaN\"", "float8 NaN is a string");
    TAP_STREQ(conv(700, "Infinity"), "\"Infinity\"", "float4 Infinity is a string");
    TAP_STREQ(conv(701, "-Infinity"), "\"-Infinity\"", "float8 -Infinity is a string");
    TAP_STREQ(conv(701, "1."), "\"1.\"", "float text outside the JSON grammar is a string");
    TAP_STREQ(conv(1700, "19.90"), "\"19.90\"", "numeric is an exact string");
    TAP_STREQ(conv(1700, "NaN"), "\"NaN\"", "numeric NaN is a string");
    TAP_STREQ(conv(114, "{\"a\": [1, 2]}"), "{\"a\": [1, 2]}", "json is embedded as is");
    TAP_STREQ(conv(3802, "\"s\""), "\"s\"", "jsonb scalar string is embedded");
    TAP_STREQ(conv(114, "\"\xff\""), "\"\\\"\xef\xbf\xbd\\\"\"",
              "json that is not UTF-8 becomes a sanitized string");
    TAP_STREQ(conv(1082, "2024-01-31"), "\"2024-01-31\"", "date is a string");
    TAP_STREQ(conv(1082, "0044-03-15 BC"), "\"0044-03-15 BC\"", "BC date keeps its text form");
    TAP_STREQ(conv(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
              "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"", "uuid is a string");
    TAP_STREQ(conv(25, ""), "\"\"", "empty text is an empty string");
}

static void test_bytea(void)
{
    TAP_STREQ(conv(17, "\\x"), "\"\"", "empty bytea is an empty base64 string");
    TAP_STREQ(conv(17, "\\x00"), "\"AA==\"", "one zero byte is AA==");
    TAP_STREQ(conv(17, "\\x0001"), "\"AAE=\"", "two bytes pad with one =");
    TAP_STREQ(conv(17, "\\x000102"), "\"AAEC\"", "three bytes need no padding");
    TAP_STREQ(conv(17, "\\xDEADbeef"), "\"3q2+7w==\"", "hex digits of both cases decode");
    TAP_STREQ(conv(17, "a\\\\b\\000"), "\"YVxiAA==\"", "escape-format bytea decodes too");
    TAP_STREQ(conv(17, "\\x0"), "\"\\\\x0\"", "odd hex length falls back to a string");
    TAP_STREQ(conv(17, "\\xzz"), "\"\\\\xzz\"", "bad hex digit falls back to a string");
}

static void test_timestamps(void)
{
    TAP_STREQ(conv(1114, "2024-01-31 10:00:00.123456"), "\"2024-01-31T10:00:00.123456\"",
              "timestamp gets a T");
    TAP_STREQ(conv(1114, "10000-01-01 00:00:00"), "\"10000-01-01T00:00:00\"",
              "timestamp with a five-digit year gets a T");
    TAP_STREQ(conv(1114, "infinity"), "\"infinity\"", "timestamp infinity keeps its text");
    TAP_STREQ(conv(1114, "0044-03-15 10:00:00 BC"), "\"0044-03-15 10:00:00 BC\"",
              "BC timestamp keeps its text");
    TAP_STREQ(conv(1184, "2024-01-31 10:00:00.123456+00"), "\"2024-01-31T10:00:00.123456Z\"",
              "timestamptz in UTC ends in Z");
    TAP_STREQ(conv(1184, "2024-01-31 10:00:00+00"), "\"2024-01-31T10:00:00Z\"",
              "timestamptz without fraction ends in Z");
    TAP_STREQ(conv(1184, "2024-01-31 10:00:00+05:30"), "\"2024-01-31T10:00:00+05:30\"",
              "timestamptz keeps a non-UTC offset");
    TAP_STREQ(conv(1184, "2024-01-31 10:00:00-05"), "\"2024-01-31T10:00:00-05:00\"",
              "timestamptz hour-only offset gets minutes");
    TAP_STREQ(conv(1184, "-infinity"), "\"-infinity\"", "timestamptz -infinity keeps its text");
    TAP_STREQ(conv(1184, "0044-03-15 10:00:00+00 BC"), "\"0044-03-15 10:00:00+00 BC\"",
              "BC timestamptz keeps its text");
    TAP_STREQ(conv(1184, "2024-01-31 10:00:00"), "\"2024-01-31 10:00:00\"",
              "timestamptz without an offset keeps its text");
    TAP_STREQ(conv(1114, "2024-01-31 10:00:00\"\x01"), "\"2024-01-31 10:00:00\\\"\\u0001\"",
              "timestamp-shaped text with a quote or control is escaped, not copied");
}

static void test_strings(void)
{
    TAP_STREQ(str("a\"b\\c/", 6), "\"a\\\"b\\\\c/\"", "quote and backslash are escaped");
    TAP_STREQ(str("\t\n\r\b\f", 5), "\"\\t\\n\\r\\b\\f\"", "short escapes for common controls");
    TAP_STREQ(str("\x01\x1f\x7f", 3), "\"\\u0001\\u001f\\u007f\"", "other C0 controls and DEL use \\u");
    TAP_STREQ(str("a\0b", 3), "\"a\\u0000b\"", "NUL is escaped");
    TAP_STREQ(str("\xc2\x85\xc2\x9f\xc2\xa0", 6), "\"\\u0085\\u009f\xc2\xa0\"",
              "C1 controls are escaped, NBSP is not");
    TAP_STREQ(str("\xe2\x80\xa8\xe2\x80\xa9", 6), "\"\\u2028\\u2029\"", "U+2028 and U+2029 are escaped");
    TAP_STREQ(str("\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 8), "\"\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"",
              "4-byte UTF-8 up to U+10FFFF is kept");
    TAP_STREQ(str("a\x80z", 3), "\"a\xef\xbf\xbdz\"", "a lone continuation byte becomes U+FFFD");
    TAP_STREQ(str("\xc0\x80", 2), "\"\xef\xbf\xbd\xef\xbf\xbd\"", "an overlong NUL becomes U+FFFD twice");
    TAP_STREQ(str("\xed\xa0\x80", 3), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"",
              "an encoded surrogate is not emitted");
    TAP_STREQ(str("\xf4\x90\x80\x80", 4), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"",
              "a code point above U+10FFFF is not emitted");
    TAP_STREQ(str("\xe2\x82", 2), "\"\xef\xbf\xbd\xef\xbf\xbd\"", "a truncated sequence becomes U+FFFD");
    TAP_STREQ(str("\xf5\x80", 2), "\"\xef\xbf\xbd\xef\xbf\xbd\"", "byte F5 is never valid");
}

static void test_arrays(void)
{
    TAP_STREQ(conv(1007, "{}"), "[]", "empty array");
    TAP_STREQ(conv(1007, "{1,2,3}"), "[1,2,3]", "int array is a JSON array of numbers");
    TAP_STREQ(conv(1007, "{{1,NULL},{3,4}}"), "[[1,null],[3,4]]", "2-D array with a NULL nests");
    TAP_STREQ(conv(1007, "{{{1}},{{2}}}"), "[[[1]],[[2]]]", "3-D array nests");
    TAP_STREQ(conv(1007, "[0:1]={1,2}"), "[1,2]", "explicit lower bounds are dropped");
    TAP_STREQ(conv(1007, "[1:2][3:4]={{1,2},{3,4}}"), "[[1,2],[3,4]]", "bounds of 2 dimensions are dropped");
    TAP_STREQ(conv(1009, "{\"a\\\"b\",\"c\\\\d\",NULL,\"NULL\",\"\",\"x y\"}"),
              "[\"a\\\"b\",\"c\\\\d\",null,\"NULL\",\"\",\"x y\"]",
              "text array unquotes elements; only unquoted NULL is null");
    TAP_STREQ(conv(1009, "{null,Null}"), "[null,null]", "unquoted NULL is case-insensitive");
    TAP_STREQ(conv(1009, "{ a , b }"), "[\"a\",\"b\"]", "blanks around unquoted elements are dropped");
    TAP_STREQ(conv(1009, "{a\\,b}"), "[\"a,b\"]", "backslash escapes in unquoted elements");
    TAP_STREQ(conv(1022, "{NaN,-Infinity,1.5}"), "[\"NaN\",\"-Infinity\",1.5]", "float array maps elements");
    TAP_STREQ(conv(1000, "{t,f,NULL}"), "[true,false,null]", "bool array");
    TAP_STREQ(conv(1231, "{1.10,NaN}"), "[\"1.10\",\"NaN\"]", "numeric array keeps exact strings");
    TAP_STREQ(conv(3807, "{\"{\\\"a\\\": 1}\",\"[]\"}"), "[{\"a\": 1},[]]", "jsonb array embeds elements");
    TAP_STREQ(conv(1001, "{\"\\\\x00ff\",\"\\\\x\"}"), "[\"AP8=\",\"\"]", "bytea array elements are base64");
    TAP_STREQ(conv(1115, "{\"2024-01-31 10:00:00\",infinity}"), "[\"2024-01-31T10:00:00\",\"infinity\"]",
              "timestamp array maps elements");
    TAP_STREQ(conv(1020, "{(1,1),(0,0);(2,2),(1,1)}"), "[\"(1,1),(0,0)\",\"(2,2),(1,1)\"]",
              "box array splits on semicolons");
    TAP_STREQ(conv(1009, "{\"\xff\"}"), "[\"\xef\xbf\xbd\"]", "invalid UTF-8 in an element is replaced");
    TAP_OK(strncmp(conv(1007, "{1,2"), "ERROR: malformed array literal", 30) == 0,
           "array without closing brace is rejected");
    TAP_OK(strncmp(conv(1007, "{1,,2}"), "ERROR:", 6) == 0, "empty element is rejected");
    TAP_OK(strncmp(conv(1007, "{1}x"), "ERROR:", 6) == 0, "text after the array is rejected");
    TAP_OK(strncmp(conv(1007, "1,2"), "ERROR:", 6) == 0, "text without braces is rejected");
    TAP_OK(strncmp(conv(1009, "{\"a}"), "ERROR:", 6) == 0, "unterminated quote is rejected");
    TAP_OK(strncmp(conv(1009, "{a\"b\"}"), "ERROR:", 6) == 0, "quote inside an unquoted element is rejected");
    TAP_OK(strncmp(conv(1007, "{1 2}"), "ERROR:", 6) != 0, "inner blank stays part of an unquoted element");
    TAP_OK(strncmp(conv(1007, "{{{{{{{{{{{{{{{{{1}}}}}}}}}}}}}}}}}"), "ERROR:", 6) == 0,
           "more than 16 dimensions are rejected");
}

static void test_builtin_lookup(void)
{
    pgvalue_type t;
    TAP_OK(!pgvalue_builtin_type(16384, &t), "user OIDs are not built-in");
    TAP_OK(pgvalue_builtin_type(22, &t) && !t.is_array && t.cls == PGVALUE_TEXT,
           "int2vector is text, not an array");
    TAP_OK(pgvalue_builtin_type(1020, &t) && t.is_array && t.delim == ';',
           "box[] uses the ';' delimiter");
    TAP_OK(pgvalue_builtin_type(1185, &t) && t.is_array && t.cls == PGVALUE_TIMESTAMPTZ &&
           t.elem_oid == 1184, "timestamptz[] is an array of timestamptz");
}

int main(void)
{
    test_scalars();
    test_bytea();
    test_timestamps();
    test_strings();
    test_arrays();
    test_builtin_lookup();
    cdc_buf_free(&out);
    cdc_buf_free(&scratch);
    return tap_done();
}
