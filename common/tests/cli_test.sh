#!/bin/sh
# cli_test.sh: the command-line contract of a pgcdc binary, as TAP: usage
# errors exit 2 with one line naming the option, --help documents every
# option with its environment variable and default, --version answers.
# Usage: cli_test.sh BINARY INT_OPTION OUT_OF_RANGE_VALUE OPTION...
set -u
bin=$1 intopt=$2 badval=$3
shift 3
prog=$(basename "$bin")
envvar=PGCDC_$(printf '%s' "$intopt" | tr 'a-z-' 'A-Z_')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0

ok() { # ok COND_STATUS NAME
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi
}
show() { sed 's/^/#   /' "$@"; }

# run EXPECTED_STATUS ARGS... : stdout/stderr in $tmp/out, $tmp/err
run() {
    want=$1; shift
    "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "#   exit status $got, want $want: $*"; show "$tmp/err"; return 1
    fi
}
one_line_naming() { # the usage error is one line, names $1 and says $2
    [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q -e "^$prog: .*$1" "$tmp/err" &&
        grep -q -e "$2" "$tmp/err" || { show "$tmp/err"; return 1; }
}

run 2 "$bin" --bogus && one_line_naming -- '--bogus' 'unknown option'
ok $? "unknown_flag_exits_2_with_one_line_naming_it"

run 2 "$bin" --bogus=1 && one_line_naming -- '--bogus' 'unknown option'
ok $? "unknown_flag_with_value_exits_2"

run 2 "$bin" "--$intopt" "$badval" && one_line_naming "--$intopt" 'out of range'
ok $? "out_of_range_flag_exits_2_naming_option_and_bounds"

run 2 "$bin" "--$intopt=abc" && one_line_naming "--$intopt" 'not an integer'
ok $? "non_integer_flag_exits_2"

run 2 env "$envvar=abc" "$bin" && one_line_naming "$envvar" 'not an integer'
ok $? "bad_environment_value_exits_2_naming_the_variable"

run 2 env "$envvar=$badval" "$bin" && one_line_naming "$envvar" 'out of range'
ok $? "out_of_range_environment_value_exits_2"

run 2 "$bin" "--$intopt" && one_line_naming "--$intopt" 'needs a value'
ok $? "missing_value_exits_2"

run 2 "$bin" stray && one_line_naming "stray" 'unexpected argument'
ok $? "positional_argument_exits_2"

run 2 "$bin" -X nokey && one_line_naming "-X" 'KEY=VALUE'
ok $? "kafka_property_without_equals_exits_2"

run 2 "$bin" -X acks=0 && one_line_naming "-X acks=0" 'refused: .*; acks must stay all'
ok $? "kafka_property_breaking_a_guarantee_exits_2_naming_it"

run 2 env PGCDC_X=request.required.acks=1 "$bin" && one_line_naming "-X request.required.acks=1" 'refused: '
ok $? "kafka_property_breaking_a_guarantee_from_the_environment_exits_2"

# A PGCDC_* variable nothing reads is named, with the option it is likely a
# typo of; the tests' own variables are not. (-X acks=0 stops the program
# right after the warnings.)
run 2 env PGCDC_LOG_LEVL=debug PGCDC_NO_SUCH_THING=1 "$bin" -X acks=0 &&
    grep -q "warn $prog: environment variable PGCDC_LOG_LEVL is not an option of $prog and is ignored: did you mean PGCDC_LOG_LEVEL?" "$tmp/err" &&
    grep -q "environment variable PGCDC_NO_SUCH_THING is not an option of $prog and is ignored (--help" "$tmp/err" ||
    { show "$tmp/err"; false; }
ok $? "unknown_pgcdc_variable_is_named_with_the_closest_option"

run 2 env PGCDC_TEST_KAFKA=x PGCDC_E2E_SEED=1 PGCDC_BUILD_DIR=x PGCDC_KEEP_TMP=1 "$bin" -X acks=0 &&
    ! grep -q "environment variable" "$tmp/err" || { show "$tmp/err"; false; }
ok $? "the_tests_variables_are_not_warned_about"

run 2 "$bin" --log-level=loud && one_line_naming "--log-level" 'debug|info|warn|error'
ok $? "bad_enum_exits_2_listing_the_choices"

run 0 "$bin" --version && grep -Eq "^$prog [0-9]+\.[0-9]+\.[0-9]+ \(librdkafka [0-9.]+\)$" "$tmp/out"
ok $? "version_prints_program_version_and_librdkafka"

run 0 "$bin" --help && grep -q "^Usage: $prog" "$tmp/out"
ok $? "help_exits_0_with_usage"
cp "$tmp/out" "$tmp/help"

for opt in "$@" log-level log-format; do
    env_name=PGCDC_$(printf '%s' "$opt" | tr 'a-z-' 'A-Z_')
    # an option's block: from its "  --name" line to the next option line
    awk -v o="  --$opt" 'index($0, o) == 1 && (length($0) == length(o) || substr($0, length(o) + 1, 1) == " ") {p = 1; print; next}
                         /^  -/ {p = 0} p' "$tmp/help" >"$tmp/block"
    grep -q "env $env_name" "$tmp/block" && grep -q "default: " "$tmp/block"
    ok $? "help_lists_--${opt}_with_env_${env_name}_and_default"
done

run 0 env PGCDC_ES_PASSWORD=hunter2 PGCDC_PG='host=x password=hunter2' "$bin" --help &&
    ! grep -q hunter2 "$tmp/out"
ok $? "help_never_shows_a_secret_from_the_environment"

echo "1..$n"
[ "$failed" -eq 0 ]
