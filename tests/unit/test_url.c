/* SPDX-License-Identifier: MIT */
/*
 * test_url.c — unit tests of the URL parser (base/url.h).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "url.h"

#define SECRET "S3cr3tPw"

/* Parses text, failing the test with the reason if it does not parse. */
static void parse_ok(const char *text, struct fp_url *u)
{
        char err[512];
        int r;

        r = fp_url_parse(text, u, err, sizeof(err));
        if (r < 0)
                fail_msg("'%s' did not parse: %s", text, err);
}

/* Checks that text is refused with a reason containing needle. */
static void parse_fails(const char *text, const char *needle)
{
        struct fp_url u;
        char err[512];
        int r;

        memset(&u, 0xa5, sizeof(u));
        r = fp_url_parse(text, &u, err, sizeof(err));
        if (r != -EINVAL)
                fail_msg("'%s' gave %d, expected -EINVAL", text, r);
        if (!strstr(err, needle))
                fail_msg("'%s': reason '%s' lacks '%s'", text, err, needle);
        assert_null(strchr(err, '\n'));
        /* Refused: *ret is zeroed. */
        assert_null(u.scheme);
        assert_null(u.password);
        assert_int_equal(u.n_params, 0);
}

static void test_full(void **state)
{
        struct fp_url u;

        (void)state;
        parse_ok("postgresql://scott:tiger@db.example.com:6432/appdb"
                 "?application_name=web&connect_timeout=5",
                 &u);
        assert_string_equal(u.scheme, "postgresql");
        assert_string_equal(u.user, "scott");
        assert_string_equal(u.password, "tiger");
        assert_string_equal(u.host, "db.example.com");
        assert_string_equal(u.port, "6432");
        assert_string_equal(u.database, "appdb");
        assert_int_equal(u.n_params, 2);
        assert_string_equal(u.param_keys[0], "application_name");
        assert_string_equal(u.param_values[0], "web");
        assert_string_equal(u.param_keys[1], "connect_timeout");
        assert_string_equal(u.param_values[1], "5");
        fp_url_free(&u);
        assert_null(u.scheme);
        assert_null(u.password);
        assert_int_equal(u.n_params, 0);
        fp_url_free(&u); /* a zeroed struct is fine */
}

static void test_percent_decoding(void **state)
{
        struct fp_url u;

        (void)state;
        parse_ok("postgresql://scott:kx%25jj5%2Fg@localhost/test", &u);
        assert_string_equal(u.user, "scott");
        assert_string_equal(u.password, "kx%jj5/g");
        assert_string_equal(u.host, "localhost");
        assert_string_equal(u.database, "test");
        fp_url_free(&u);

        parse_ok("postgresql://us%40er:p%3Aw%40d@h/my%20db?options=-c%20search_path%3Dx"
                 "&application_name=a+b%2Bc",
                 &u);
        assert_string_equal(u.user, "us@er");
        assert_string_equal(u.password, "p:w@d");
        assert_string_equal(u.database, "my db");
        assert_string_equal(u.param_values[0], "-c search_path=x");
        /* '+' is a space in the query only, %2B a plus. */
        assert_string_equal(u.param_values[1], "a b+c");
        fp_url_free(&u);

        /* '+' stays a plus outside the query. */
        parse_ok("postgresql://a+b:c+d@h/e+f", &u);
        assert_string_equal(u.user, "a+b");
        assert_string_equal(u.password, "c+d");
        assert_string_equal(u.database, "e+f");
        fp_url_free(&u);

        /* A password only the first ':' splits off. */
        parse_ok("postgresql://u:a:b:c@h", &u);
        assert_string_equal(u.user, "u");
        assert_string_equal(u.password, "a:b:c");
        fp_url_free(&u);
}

static void test_unencoded_at_in_password(void **state)
{
        struct fp_url u;

        (void)state;
        /* Split at the last '@' before the path. */
        parse_ok("postgresql://u:p@ss@w@rd@host:5432/db", &u);
        assert_string_equal(u.user, "u");
        assert_string_equal(u.password, "p@ss@w@rd");
        assert_string_equal(u.host, "host");
        assert_string_equal(u.port, "5432");
        fp_url_free(&u);

        /* A raw '@' in a query value is fine. */
        parse_ok("postgresql://u:pw@host/db?application_name=me@there", &u);
        assert_string_equal(u.password, "pw");
        assert_string_equal(u.host, "host");
        assert_string_equal(u.param_values[0], "me@there");
        fp_url_free(&u);
}

static void test_schemes(void **state)
{
        static const char *const ok[] = {
                "postgresql://h/db",         "postgres://h/db",        "postgresql+psycopg2://h/db",
                "postgresql+asyncpg://h/db", "postgres+pg8000://h/db", "PostgreSQL://h/db",
        };
        struct fp_url u;

        (void)state;
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                parse_ok(ok[i], &u);
                assert_string_equal(u.scheme, "postgresql");
                assert_string_equal(u.host, "h");
                fp_url_free(&u);
        }
}

static void test_bad_scheme(void **state)
{
        (void)state;
        parse_fails("http://h/db",
                    "unsupported scheme 'http' (expected postgresql://, mysql:// or mariadb://)");
        parse_fails("sqlite://u@h/db", "unsupported scheme 'sqlite'");
        parse_fails("mssql+pyodbc://u@h/db", "unsupported scheme 'mssql+pyodbc'");
        parse_fails("mysqlx://u@h/db", "unsupported scheme 'mysqlx'");
        parse_fails("mysql+://h/db", "invalid driver name");
        parse_fails("postgresqlx://h/db", "unsupported scheme 'postgresqlx'");
        parse_fails("postgresql+://h/db", "invalid driver name");
        parse_fails("postgresql+a-b://h/db", "invalid driver name");
        parse_fails("localhost:5432", "not a URL");
        parse_fails("", "not a URL");
        parse_fails("://h/db", "not a URL");
        parse_fails("postgresql:/h/db", "not a URL");
        parse_fails("postgresql://h/db\n", "control character");
}

static void test_ipv6(void **state)
{
        struct fp_url u;

        (void)state;
        parse_ok("postgresql://[::1]:5432/db", &u);
        assert_string_equal(u.host, "::1");
        assert_string_equal(u.port, "5432");
        assert_string_equal(u.database, "db");
        fp_url_free(&u);

        parse_ok("postgresql://app:pw@[2001:db8::7]/db", &u);
        assert_string_equal(u.user, "app");
        assert_string_equal(u.host, "2001:db8::7");
        assert_null(u.port);
        fp_url_free(&u);

        parse_ok("postgresql://[fe80::1%25eth0]:6432", &u);
        assert_string_equal(u.host, "fe80::1%eth0");
        assert_string_equal(u.port, "6432");
        assert_null(u.database);
        fp_url_free(&u);

        parse_fails("postgresql://[::1/db", "unterminated '['");
        parse_fails("postgresql://[::1]5432/db", "unexpected text after ']'");
        parse_fails("postgresql://[]:5432/db", "empty IPv6 address");
        parse_fails("postgresql://::1/db", "in brackets");
        parse_fails("postgresql://fe80::1:5432/db", "in brackets");
        parse_fails("postgresql://[::1]:/db", "empty port");
        parse_fails("postgresql://[::1]:0/db", "invalid port");
}

static void test_missing_parts(void **state)
{
        struct fp_url u;

        (void)state;
        parse_ok("postgresql://", &u);
        assert_string_equal(u.scheme, "postgresql");
        assert_null(u.user);
        assert_null(u.password);
        assert_null(u.host);
        assert_null(u.port);
        assert_null(u.database);
        assert_int_equal(u.n_params, 0);
        fp_url_free(&u);

        parse_ok("postgresql:///appdb", &u);
        assert_null(u.host);
        assert_string_equal(u.database, "appdb");
        fp_url_free(&u);

        parse_ok("postgresql://host", &u);
        assert_string_equal(u.host, "host");
        assert_null(u.database);
        fp_url_free(&u);

        parse_ok("postgresql://host/", &u);
        assert_string_equal(u.host, "host");
        assert_null(u.database);
        fp_url_free(&u);

        parse_ok("postgresql://user@host", &u);
        assert_string_equal(u.user, "user");
        assert_null(u.password);
        fp_url_free(&u);

        /* An empty password is no password. */
        parse_ok("postgresql://user:@host", &u);
        assert_string_equal(u.user, "user");
        assert_null(u.password);
        fp_url_free(&u);

        parse_ok("postgresql://:pw@host", &u);
        assert_null(u.user);
        assert_string_equal(u.password, "pw");
        fp_url_free(&u);

        parse_ok("postgresql://:5433/db", &u);
        assert_null(u.host);
        assert_string_equal(u.port, "5433");
        fp_url_free(&u);

        parse_ok("postgresql://host?connect_timeout=3", &u);
        assert_string_equal(u.host, "host");
        assert_null(u.database);
        assert_string_equal(u.param_keys[0], "connect_timeout");
        fp_url_free(&u);

        /* Empty query segments are skipped. */
        parse_ok("postgresql://host/db?&keepalives=1&&", &u);
        assert_int_equal(u.n_params, 1);
        fp_url_free(&u);
}

static void test_socket_dir(void **state)
{
        const char *keys[16], *values[16];
        struct fp_url u;
        int n;

        (void)state;
        parse_ok("postgresql://user@/db?host=/var/run/postgresql", &u);
        assert_string_equal(u.user, "user");
        assert_null(u.host);
        assert_string_equal(u.database, "db");
        assert_int_equal(u.n_params, 1);
        assert_string_equal(u.param_keys[0], "host");
        assert_string_equal(u.param_values[0], "/var/run/postgresql");
        n = fp_url_pg_keywords(&u, keys, values, 16);
        assert_int_equal(n, 5);
        assert_string_equal(keys[0], "user");
        assert_string_equal(keys[1], "dbname");
        assert_string_equal(keys[2], "host");
        assert_string_equal(values[2], "/var/run/postgresql");
        fp_url_free(&u);

        /* ?host= and ?port= win over the authority, which is left out. */
        parse_ok("postgresql://u@localhost:5432/db?host=/tmp&port=5433", &u);
        n = fp_url_pg_keywords(&u, keys, values, 16);
        assert_int_equal(n, 6);
        assert_string_equal(keys[0], "user");
        assert_string_equal(keys[1], "dbname");
        assert_string_equal(keys[2], "host");
        assert_string_equal(values[2], "/tmp");
        assert_string_equal(keys[3], "port");
        assert_string_equal(values[3], "5433");
        fp_url_free(&u);

        /* A socket directory percent-encoded in the host works too. */
        parse_ok("postgresql://%2Fvar%2Frun%2Fpostgresql/db", &u);
        assert_string_equal(u.host, "/var/run/postgresql");
        fp_url_free(&u);
}

static void test_ports(void **state)
{
        struct fp_url u;

        (void)state;
        parse_ok("postgresql://h:1/db", &u);
        assert_string_equal(u.port, "1");
        fp_url_free(&u);
        parse_ok("postgresql://h:65535/db", &u);
        assert_string_equal(u.port, "65535");
        fp_url_free(&u);
        parse_ok("postgresql://h:05432/db", &u);
        assert_string_equal(u.port, "5432");
        fp_url_free(&u);

        parse_fails("postgresql://h:0/db", "invalid port '0': expected a number from 1 to 65535");
        parse_fails("postgresql://h:65536/db", "invalid port '65536'");
        parse_fails("postgresql://h:99999999999999999999/db", "invalid port");
        parse_fails("postgresql://h:abc/db", "invalid port 'abc'");
        parse_fails("postgresql://h:-1/db", "invalid port");
        parse_fails("postgresql://h:+5432/db", "invalid port");
        parse_fails("postgresql://h:54 32/db", "invalid port");
        parse_fails("postgresql://h:/db", "empty port");
        parse_fails("postgresql://h:5432:1/db", "more than one ':'");
}

static void test_bad_escapes(void **state)
{
        (void)state;
        parse_fails("postgresql://u:pw@h/d%zzb", "malformed percent-escape '%zz' in the database");
        parse_fails("postgresql://u:pw@h/db%2", "malformed percent-escape '%2' in the database");
        parse_fails("postgresql://u:pw@h/db%", "malformed percent-escape '%' in the database");
        parse_fails("postgresql://u%g1:pw@h/db", "malformed percent-escape '%g1' in the user name");
        parse_fails("postgresql://u:pw@h%2/db", "in the host");
        parse_fails("postgresql://u:pw@h/db?application_name=%zz", "query parameter value");
        parse_fails("postgresql://u:pw@h/db?a%zz=1", "query parameter name");
        parse_fails("postgresql://u:pw@h/db?application_name=a%00b", "%00");
        /* In the password: said, but not quoted. */
        parse_fails("postgresql://u:p%zzw@h/db", "malformed percent-escape in the password");
        parse_fails("postgresql://u:pw%2@h/db", "write a literal '%' as %25");
}

static void test_tls_refused(void **state)
{
        struct fp_url u;

        (void)state;
        parse_fails("postgresql://u:pw@h/db?sslmode=require",
                    "sslmode=require: TLS cannot be used on leased connections (a TLS session "
                    "cannot move between processes); use sslmode=disable or leave it out");
        parse_fails("postgresql://u:pw@h/db?sslmode=prefer", "sslmode=prefer: TLS cannot");
        parse_fails("postgresql://u:pw@h/db?sslmode=verify-full", "sslmode=verify-full");
        parse_fails("postgresql://u:pw@h/db?sslmode=", "sslmode=: TLS cannot");
        parse_fails("postgresql://u:pw@h/db?gssencmode=prefer",
                    "gssencmode=prefer: GSSAPI encryption cannot be used on leased connections");
        parse_fails("postgresql://u:pw@h/db?sslrootcert=/etc/ca.pem",
                    "sslrootcert: TLS cannot be used on leased connections");
        parse_fails("postgresql://u:pw@h/db?sslmode=disable&sslcert=/c.pem", "sslcert: TLS");
        parse_fails("postgresql://u:pw@h/db?sslnegotiation=direct", "sslnegotiation: TLS");

        parse_ok("postgresql://u:pw@h/db?sslmode=disable&gssencmode=disable", &u);
        assert_int_equal(u.n_params, 2);
        fp_url_free(&u);
}

static void test_query_params(void **state)
{
        static const char *const allowed[] = {
                "host",
                "port",
                "application_name",
                "options",
                "client_encoding",
                "connect_timeout",
                "keepalives",
                "keepalives_idle",
                "keepalives_interval",
                "keepalives_count",
                "tcp_user_timeout",
                "target_session_attrs",
                "passfile",
        };
        struct fp_url u;
        char text[256];

        (void)state;
        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
                snprintf(text, sizeof(text), "postgresql://h/db?%s=1", allowed[i]);
                parse_ok(text, &u);
                assert_string_equal(u.param_keys[0], allowed[i]);
                fp_url_free(&u);
        }
        parse_fails("postgresql://h/db?service=prod", "unknown query parameter 'service'");
        parse_fails("postgresql://h/db?user=x", "unknown query parameter 'user'");
        parse_fails("postgresql://h/db?password=x", "unknown query parameter 'password'");
        parse_fails("postgresql://h/db?dbname=x", "unknown query parameter 'dbname'");
        parse_fails("postgresql://h/db?foo=bar", "(allowed: host, port");
        parse_fails("postgresql://h/db?application_name", "'application_name' has no value");
        parse_fails("postgresql://h/db?=x", "without a name");
        parse_fails("postgresql://h/db?port=1&port=2", "'port' is given twice");
        parse_fails("postgresql://h/d@b", "'@' after the host, in the database name");
        parse_fails("postgresql://h/db?a@b=1", "malformed query parameter name");
}

/* Bad URLs with SECRET as their password: no reason may show any of it. */
static void test_password_never_in_errors(void **state)
{
        static const char *const bad[] = {
                "postgresql://u:" SECRET "@h:bad/db",
                "postgresql://u:" SECRET "@h:0/db",
                "postgresql://u:" SECRET "@h/db?sslmode=require",
                "postgresql://u:" SECRET "@h/db?nope=1",
                "postgresql://u:" SECRET "%zz@h/db",
                "postgresql://u:" SECRET "%2@h/db",
                "postgresql://u:%00" SECRET "@h/db",
                "postgresql://u:" SECRET "@[::1/db",
                "http://u:" SECRET "@h/db",
                "sqlite://u:" SECRET "@h/db",
                "mysql://u:" SECRET "@h/db?ssl_ca=/x",
                "mysql://u:" SECRET "@h/db?compress=true",
                "mysql://u:" SECRET "@h/db?nope=1",
                "mariadb://u:" SECRET "@h:0/db",
                "u:" SECRET "@h/db",
                "postgresql:u:" SECRET "@h/db",
                "postgresql://u:" SECRET "@h/db\t",
                /* Unencoded delimiters shift the cuts into the password. */
                "postgresql://u:S3cr/3tPw@h/db",
                "postgresql://u:S3cr?3tPw@h/db",
                "postgresql://u:S3cr?3tPw=1@h/db",
                "postgresql://u:1234?S3cr=3tPw@h:5432/db",
                "postgresql://u:1234?S3cr&3tPw@h/db",
                "postgresql://u:S3@cr?3t=Pw@h/db",
                "postgresql://u:S3@cr/3tPw@h/db",
                "postgresql://u:S3cr:3tPw/x@h/db",
                "postgresql://u:S3cr:3tPw?x@h/db",
        };
        char err[512];
        struct fp_url u;

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int r = fp_url_parse(bad[i], &u, err, sizeof(err));
                if (r >= 0)
                        fail_msg("'%s' parsed", bad[i]);
                if (strstr(err, "S3cr") || strstr(err, "3tPw") || strstr(err, "cr3t"))
                        fail_msg("'%s': the reason shows the password: %s", bad[i], err);
                assert_true(strlen(err) > 0);
        }
}

static void test_masked(void **state)
{
        char buf[512];
        struct fp_url u, again;
        int n;

        (void)state;
        parse_ok("postgresql+psycopg2://scott:" SECRET "@localhost:5432/test"
                 "?application_name=web&sslmode=disable",
                 &u);
        n = fp_url_format_masked(&u, buf, sizeof(buf));
        assert_string_equal(buf, "postgresql://scott:***@localhost:5432/test"
                                 "?application_name=web&sslmode=disable");
        assert_int_equal(n, (int)strlen(buf));
        assert_null(strstr(buf, SECRET));

        /* Truncated to fit, NUL-terminated, never showing the password. */
        n = fp_url_format_masked(&u, buf, 20);
        assert_int_equal(n, 19);
        assert_string_equal(buf, "postgresql://scott:");
        n = fp_url_format_masked(&u, buf, 1);
        assert_int_equal(n, 0);
        assert_string_equal(buf, "");
        assert_int_equal(fp_url_format_masked(&u, buf, 0), -EINVAL);
        fp_url_free(&u);

        /* No password, no "***". */
        parse_ok("postgresql://scott@h/db", &u);
        fp_url_format_masked(&u, buf, sizeof(buf));
        assert_string_equal(buf, "postgresql://scott@h/db");
        fp_url_free(&u);

        parse_ok("postgresql://", &u);
        fp_url_format_masked(&u, buf, sizeof(buf));
        assert_string_equal(buf, "postgresql://");
        fp_url_free(&u);

        parse_ok("postgresql://:pw@[::1]:6432", &u);
        fp_url_format_masked(&u, buf, sizeof(buf));
        assert_string_equal(buf, "postgresql://:***@[::1]:6432");
        fp_url_free(&u);

        /* Special characters are re-encoded: the text parses back the same. */
        parse_ok("postgresql://a%40b%3Ac:" SECRET "@h/my%20db%3F"
                 "?options=-c%20x%3Dy%26z&application_name=a%2Bb+c",
                 &u);
        fp_url_format_masked(&u, buf, sizeof(buf));
        assert_null(strstr(buf, SECRET));
        parse_ok(buf, &again);
        assert_string_equal(again.user, u.user);
        assert_string_equal(again.password, "***");
        assert_string_equal(again.host, u.host);
        assert_string_equal(again.database, u.database);
        assert_int_equal(again.n_params, u.n_params);
        for (size_t i = 0; i < u.n_params; i++) {
                assert_string_equal(again.param_keys[i], u.param_keys[i]);
                assert_string_equal(again.param_values[i], u.param_values[i]);
        }
        fp_url_free(&again);
        fp_url_free(&u);
}

static void test_keywords(void **state)
{
        const char *keys[16], *values[16];
        struct fp_url u;
        int n;

        (void)state;
        parse_ok("postgresql://app:" SECRET "@db:6432/appdb"
                 "?sslmode=disable&application_name=web&gssencmode=disable&keepalives=1",
                 &u);
        n = fp_url_pg_keywords(&u, keys, values, 16);
        assert_int_equal(n, 9);
        static const char *const want_keys[] = {
                "host",       "port",    "user",       "password", "dbname", "application_name",
                "keepalives", "sslmode", "gssencmode",
        };
        static const char *const want_values[] = {
                "db", "6432", "app", SECRET, "appdb", "web", "1", "disable", "disable",
        };
        for (int i = 0; i < n; i++) {
                assert_string_equal(keys[i], want_keys[i]);
                assert_string_equal(values[i], want_values[i]);
        }
        assert_null(keys[n]);
        assert_null(values[n]);

        /* cap counts the terminating NULL. */
        assert_int_equal(fp_url_pg_keywords(&u, keys, values, 10), 9);
        assert_int_equal(fp_url_pg_keywords(&u, keys, values, 9), -ENOSPC);
        assert_int_equal(fp_url_pg_keywords(&u, keys, values, 0), -ENOSPC);
        fp_url_free(&u);

        /* Absent components are left out; TLS and GSS are off even if not asked. */
        parse_ok("postgresql://", &u);
        n = fp_url_pg_keywords(&u, keys, values, 16);
        assert_int_equal(n, 2);
        assert_string_equal(keys[0], "sslmode");
        assert_string_equal(values[0], "disable");
        assert_string_equal(keys[1], "gssencmode");
        assert_string_equal(values[1], "disable");
        assert_null(keys[2]);
        assert_int_equal(fp_url_pg_keywords(&u, keys, values, 3), 2);
        assert_int_equal(fp_url_pg_keywords(&u, keys, values, 2), -ENOSPC);
        fp_url_free(&u);
}

/* mysql:// and mariadb:// (with or without +DRIVER) are one driver, "mysql". */
static void test_mysql_schemes(void **state)
{
        static const char *const ok[] = {
                "mysql://h/db",
                "mariadb://h/db",
                "mysql+pymysql://h/db",
                "mysql+mysqldb://h/db",
                "MySQL://h/db",
                "mariadb+mariadbconnector://h/db",
                "mysql+mysqlconnector://h/db",
        };
        struct fp_url u;

        (void)state;
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                parse_ok(ok[i], &u);
                assert_string_equal(u.scheme, "mysql");
                assert_string_equal(u.host, "h");
                assert_string_equal(u.database, "db");
                fp_url_free(&u);
        }
}

static void test_mysql_options(void **state)
{
        struct fp_url u;
        struct fp_url_mysql o;

        (void)state;
        parse_ok("mysql+pymysql://app:kx%25jj5%2Fg@db.example.com:3307/shop%20db"
                 "?charset=utf8mb4&connect_timeout=5&multi_statements=true&found_rows=1"
                 "&init_command=SET+sql_mode%3D%27ANSI%27",
                 &u);
        assert_int_equal(fp_url_mysql_options(&u, &o), 0);
        assert_string_equal(o.host, "db.example.com");
        assert_int_equal(o.port, 3307);
        assert_string_equal(o.user, "app");
        assert_string_equal(o.password, "kx%jj5/g");
        assert_string_equal(o.database, "shop db");
        assert_null(o.unix_socket);
        assert_string_equal(o.charset, "utf8mb4");
        assert_string_equal(o.init_command, "SET sql_mode='ANSI'");
        assert_int_equal(o.connect_timeout_s, 5);
        assert_int_equal(o.multi_statements, 1);
        assert_int_equal(o.found_rows, 1);
        fp_url_free(&u);

        /* A Unix socket with an empty host, SQLAlchemy's spelling. */
        parse_ok("mariadb://app@/appdb?unix_socket=%2Frun%2Fmysqld%2Fmysqld.sock"
                 "&multi_statements=off",
                 &u);
        assert_int_equal(fp_url_mysql_options(&u, &o), 0);
        assert_null(o.host);
        assert_int_equal(o.port, 0);
        assert_null(o.password);
        assert_string_equal(o.unix_socket, "/run/mysqld/mysqld.sock");
        assert_null(o.charset);
        assert_int_equal(o.connect_timeout_s, 0);
        assert_int_equal(o.multi_statements, 0);
        assert_int_equal(o.found_rows, 0);
        fp_url_free(&u);

        /* Not a mysql:// URL. */
        parse_ok("postgresql://h/db", &u);
        assert_int_equal(fp_url_mysql_options(&u, &o), -EINVAL);
        fp_url_free(&u);
}

static void test_mysql_refused(void **state)
{
        (void)state;
        parse_fails("mysql://u@h/db?ssl=true", "ssl: TLS cannot be used on leased connections");
        parse_fails("mysql://u@h/db?ssl_ca=/etc/ca.pem", "ssl_ca: TLS cannot be used");
        parse_fails("mysql://u@h/db?ssl_mode=REQUIRED", "ssl_mode: TLS cannot be used");
        parse_fails("mariadb://u@h/db?tls_version=TLSv1.3", "tls_version: TLS cannot be used");
        parse_fails("mysql://u@h/db?compress=1", "compress: compression cannot be used on "
                                                 "leased connections");
        parse_fails("mysql://u@h/db?sslmode=disable", "sslmode: TLS cannot be used");
        parse_fails("mysql://u@h/db?application_name=x",
                    "unknown query parameter 'application_name' (allowed: unix_socket, charset");
        parse_fails("mysql://u@h/db?unix_socket=relative.sock", "unix_socket=relative.sock: "
                                                                "expected an absolute path");
        parse_fails("mysql://u@h/db?charset=utf8%3Bx", "charset=utf8;x: expected a character set");
        parse_fails("mysql://u@h/db?connect_timeout=0",
                    "connect_timeout=0: expected whole seconds");
        parse_fails("mysql://u@h/db?multi_statements=maybe",
                    "multi_statements=maybe: expected true or false");
        parse_fails("mysql://u@h/db?charset=latin1&charset=utf8mb4", "'charset' is given twice");
}

static void test_mysql_masked(void **state)
{
        struct fp_url u;
        char buf[256];

        (void)state;
        parse_ok("mariadb+pymysql://app:" SECRET "@h:3306/db?unix_socket=/tmp/my.sock", &u);
        assert_true(fp_url_format_masked(&u, buf, sizeof(buf)) > 0);
        assert_string_equal(buf, "mysql://app:***@h:3306/db?unix_socket=/tmp/my.sock");
        fp_url_free(&u);
}

static void test_null_and_errbuf(void **state)
{
        struct fp_url u;
        char err[8];

        (void)state;
        assert_int_equal(fp_url_parse(NULL, &u, err, sizeof(err)), -EINVAL);
        /* A short err buffer is cut, still terminated. */
        assert_int_equal(fp_url_parse("http://h", &u, err, sizeof(err)), -EINVAL);
        assert_int_equal(strlen(err), sizeof(err) - 1);
        /* No err buffer at all. */
        assert_int_equal(fp_url_parse("http://h", &u, NULL, 0), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full),
                cmocka_unit_test(test_percent_decoding),
                cmocka_unit_test(test_unencoded_at_in_password),
                cmocka_unit_test(test_schemes),
                cmocka_unit_test(test_bad_scheme),
                cmocka_unit_test(test_ipv6),
                cmocka_unit_test(test_missing_parts),
                cmocka_unit_test(test_socket_dir),
                cmocka_unit_test(test_ports),
                cmocka_unit_test(test_bad_escapes),
                cmocka_unit_test(test_tls_refused),
                cmocka_unit_test(test_query_params),
                cmocka_unit_test(test_password_never_in_errors),
                cmocka_unit_test(test_masked),
                cmocka_unit_test(test_keywords),
                cmocka_unit_test(test_mysql_schemes),
                cmocka_unit_test(test_mysql_options),
                cmocka_unit_test(test_mysql_refused),
                cmocka_unit_test(test_mysql_masked),
                cmocka_unit_test(test_null_and_errbuf),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
