/* SPDX-License-Identifier: MIT */
/*
 * test_config.c — unit tests of the configuration (agent/config.h). Files are
 * written into a fresh mkdtemp() directory, removed at the end.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "forkpool.h"

#define SECRET   "S3cr3tPw"
#define GOOD_URL "postgresql://app:" SECRET "@127.0.0.1:5432/appdb"

static char test_dir[256];
static char conf_path[300];

static int setup_dir(void **state)
{
        const char *tmp = getenv("TMPDIR");

        (void)state;
        snprintf(test_dir, sizeof(test_dir), "%s/forkpool-test-config-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(test_dir))
                return -1;
        snprintf(conf_path, sizeof(conf_path), "%s/forkpool.conf", test_dir);
        return 0;
}

static int teardown_dir(void **state)
{
        (void)state;
        unlink(conf_path);
        return rmdir(test_dir);
}

/* Writes the configuration file, readable by its owner only (it may hold passwords). */
static void write_conf(const char *text)
{
        FILE *f = fopen(conf_path, "w");

        assert_non_null(f);
        assert_int_equal(fchmod(fileno(f), 0600), 0);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

/* Writes text as the configuration file and loads it into a fresh cfg. */
static int load_text(const char *text, struct fp_config *cfg, char *err, size_t errlen)
{
        write_conf(text);
        fp_config_init(cfg);
        return fp_config_load(cfg, conf_path, err, errlen);
}

/* Loads text, failing the test with the reason if it is refused. */
static void load_ok(const char *text, struct fp_config *cfg)
{
        char err[FP_CONFIG_ERR_MAX];
        int r;

        r = load_text(text, cfg, err, sizeof(err));
        if (r < 0)
                fail_msg("refused: %s", err);
        r = fp_config_validate(cfg, err, sizeof(err));
        if (r < 0)
                fail_msg("invalid: %s", err);
}

/*
 * Checks that text is refused with exactly "PATH:LINE: want", and that cfg
 * was freed.
 */
static void load_fails(const char *text, int line, const char *want)
{
        char err[FP_CONFIG_ERR_MAX], expected[FP_CONFIG_ERR_MAX + 512];
        struct fp_config cfg;
        int r;

        r = load_text(text, &cfg, err, sizeof(err));
        if (r >= 0)
                fail_msg("accepted, expected %d: %s", line, want);
        snprintf(expected, sizeof(expected), "%s:%d: %s", conf_path, line, want);
        if (strcmp(err, expected) != 0)
                fail_msg("got      '%s'\nexpected '%s'", err, expected);
        assert_null(strchr(err, '\n'));
        assert_null(strstr(err, SECRET));
        /* Freed on failure. */
        assert_int_equal(cfg.n_pools, 0);
        assert_null(cfg.path);
        assert_null(cfg.socket_path);
        fp_config_free(&cfg);
}

/* Like load_fails(), for a reason that starts with want_start (the url module's). */
static void load_fails_prefix(const char *text, int line, const char *want_start)
{
        char err[FP_CONFIG_ERR_MAX], expected[FP_CONFIG_ERR_MAX + 512];
        struct fp_config cfg;
        int r;

        r = load_text(text, &cfg, err, sizeof(err));
        if (r >= 0)
                fail_msg("accepted, expected %d: %s", line, want_start);
        snprintf(expected, sizeof(expected), "%s:%d: %s", conf_path, line, want_start);
        if (strncmp(err, expected, strlen(expected)) != 0)
                fail_msg("got      '%s'\nexpected '%s...'", err, expected);
        assert_null(strstr(err, SECRET));
        fp_config_free(&cfg);
}

static void test_full_file(void **state)
{
        struct fp_config cfg;

        (void)state;
        load_ok("\xEF\xBB\xBF# forkpoold configuration\n"
                "[forkpool]\n"
                "socket = /run/forkpool/test.sock\n"
                "allow_users = root, 4242\n"
                "allow_groups = 0 4343\n"
                "log_level = debug\n"
                "shutdown_grace = 2.5\n"
                "max_connections_per_uid = 300\n"
                "max_connections_per_pid = 0\n"
                "max_waiting_per_connection = 7\n"
                "hello_timeout = 0.25\n"
                "\n"
                "; the main pool\n"
                "[pool main]\n"
                "    url = " GOOD_URL "   ; inline comment\n"
                "    pool_size = 8\n"
                "\tmax_overflow = -1\n"
                "pool_timeout = 12.5\n"
                "connect_timeout = 3\r\n"
                "reset_on_return = commit\n"
                "\n"
                "[ pool   reports.v2-ro ]  # comment\n"
                "url: postgresql://ro@/reports?host=/var/run/postgresql\n"
                "pool_size = 0\n"
                "max_overflow = 0\n"
                "pool_timeout = 0\n"
                "reset_on_return = none\n",
                &cfg);

        assert_string_equal(cfg.path, conf_path);
        assert_string_equal(cfg.socket_path, "/run/forkpool/test.sock");
        assert_int_equal(cfg.n_allow_uids, 2);
        assert_int_equal(cfg.allow_uids[0], 0);
        assert_int_equal(cfg.allow_uids[1], 4242);
        assert_int_equal(cfg.n_allow_gids, 2);
        assert_int_equal(cfg.allow_gids[0], 0);
        assert_int_equal(cfg.allow_gids[1], 4343);
        assert_int_equal(cfg.log_level, FP_LOG_DEBUG);
        assert_int_equal(cfg.shutdown_grace_ms, 2500);
        assert_int_equal(cfg.max_connections_per_uid, 300);
        assert_int_equal(cfg.max_connections_per_pid, 0);
        assert_int_equal(cfg.max_waiting_per_connection, 7);
        assert_int_equal(cfg.hello_timeout_ms, 250);
        assert_int_equal(cfg.n_pools, 2);

        const struct fp_pool_config *main_pool = fp_config_find_pool(&cfg, "main");
        assert_ptr_equal(main_pool, &cfg.pools[0]);
        assert_string_equal(main_pool->name, "main");
        assert_string_equal(main_pool->url_text, GOOD_URL);
        assert_string_equal(main_pool->url.user, "app");
        assert_string_equal(main_pool->url.password, SECRET);
        assert_string_equal(main_pool->url.host, "127.0.0.1");
        assert_string_equal(main_pool->url.database, "appdb");
        assert_int_equal(main_pool->pool_size, 8);
        assert_int_equal(main_pool->max_overflow, -1);
        assert_int_equal(main_pool->timeout_ms, 12500);
        assert_int_equal(main_pool->connect_timeout_ms, 3000);
        assert_int_equal(main_pool->reset_mode, FP_RESET_COMMIT);
        assert_int_equal(main_pool->line, 14);

        const struct fp_pool_config *ro = fp_config_find_pool(&cfg, "reports.v2-ro");
        assert_non_null(ro);
        assert_null(ro->url.host);
        assert_string_equal(ro->url.param_values[0], "/var/run/postgresql");
        assert_int_equal(ro->pool_size, 0);
        assert_int_equal(ro->max_overflow, 0);
        assert_int_equal(ro->timeout_ms, 0);
        assert_int_equal(ro->connect_timeout_ms, 10000);
        assert_int_equal(ro->reset_mode, FP_RESET_NONE);
        assert_int_equal(ro->line, 22);

        assert_null(fp_config_find_pool(&cfg, "Main"));
        fp_config_free(&cfg);
        assert_int_equal(cfg.n_pools, 0);
        assert_null(cfg.path);
        assert_null(cfg.socket_path);
        fp_config_free(&cfg); /* twice is fine */
}

static void test_defaults(void **state)
{
        struct fp_config cfg;

        (void)state;
        fp_config_init(&cfg);
        assert_null(cfg.path);
        assert_string_equal(cfg.socket_path, FORKPOOL_DEFAULT_SOCKET);
        assert_int_equal(cfg.n_allow_uids, 0);
        assert_int_equal(cfg.n_allow_gids, 0);
        assert_int_equal(cfg.log_level, FP_LOG_INFO);
        assert_int_equal(cfg.shutdown_grace_ms, 10000);
        assert_int_equal(cfg.max_connections_per_uid, 1024);
        assert_int_equal(cfg.max_connections_per_pid, 32);
        assert_int_equal(cfg.max_waiting_per_connection, 128);
        assert_int_equal(cfg.hello_timeout_ms, 5000);
        assert_int_equal(cfg.n_pools, 0);
        fp_config_free(&cfg);

        load_ok("[pool a]\nurl = postgresql:///a\n", &cfg);
        assert_string_equal(cfg.socket_path, FORKPOOL_DEFAULT_SOCKET);
        assert_int_equal(cfg.log_level, FP_LOG_INFO);
        assert_int_equal(cfg.shutdown_grace_ms, 10000);
        assert_int_equal(cfg.max_connections_per_uid, 1024);
        assert_int_equal(cfg.hello_timeout_ms, 5000);
        assert_int_equal(cfg.n_pools, 1);
        assert_string_equal(cfg.pools[0].name, "a");
        assert_int_equal(cfg.pools[0].pool_size, 5);
        assert_int_equal(cfg.pools[0].max_overflow, 10);
        assert_int_equal(cfg.pools[0].timeout_ms, 30000);
        assert_int_equal(cfg.pools[0].connect_timeout_ms, 10000);
        assert_int_equal(cfg.pools[0].reset_mode, FP_RESET_ROLLBACK);
        assert_int_equal(cfg.pools[0].line, 1);
        fp_config_free(&cfg);

        /* An empty [forkpool] keeps the defaults. */
        load_ok("[forkpool]\n[pool a]\nurl = postgresql:///a\n", &cfg);
        assert_string_equal(cfg.socket_path, FORKPOOL_DEFAULT_SOCKET);
        assert_int_equal(cfg.pools[0].line, 2);
        fp_config_free(&cfg);
}

static void test_bad_values(void **state)
{
        static const struct {
                const char *key;
                const char *value;
                const char *reason;
        } pool_cases[] = {
                {"pool_size", "five", "not an integer: 'five'"},
                {"pool_size", "5x", "not an integer: '5x'"},
                {"pool_size", "", "not an integer: ''"},
                {"pool_size", "+5", "not an integer: '+5'"},
                {"pool_size", "5.0", "not an integer: '5.0'"},
                {"pool_size", "0x10", "not an integer: '0x10'"},
                {"pool_size", "-1", "must be 0 (no limit) or more: '-1'"},
                {"pool_size", "99999999999", "out of range: '99999999999'"},
                {"pool_size", "5000", "more than the 1024 connections a pool can hold: '5000'"},
                {"max_overflow", "-2", "must be -1 (no limit) or 0 or more: '-2'"},
                {"max_overflow", "lots", "not an integer: 'lots'"},
                {"pool_timeout", "abc", "not a number of seconds: 'abc'"},
                {"pool_timeout", "30s", "not a number of seconds: '30s'"},
                {"pool_timeout", "5.", "not a number of seconds: '5.'"},
                {"pool_timeout", ".", "not a number of seconds: '.'"},
                {"pool_timeout", "1e3", "not a number of seconds: '1e3'"},
                {"pool_timeout", "-1", "must not be negative: '-1'"},
                {"pool_timeout", "0.0001",
                 "more than 3 decimals (the resolution is a "
                 "millisecond): '0.0001'"},
                {"pool_timeout", "9999999", "too large (at most 2147483 seconds): '9999999'"},
                {"pool_timeout", "2147483.648",
                 "too large (at most 2147483.647 seconds): '2147483.648'"},
                {"connect_timeout", "0", "must be more than 0 seconds: '0'"},
                {"connect_timeout", "0.000", "must be more than 0 seconds: '0.000'"},
                {"reset_on_return", "maybe",
                 "expected rollback, commit, none, discard or auto, not 'maybe'"},
                {"reset_on_return", "ROLLBACK",
                 "expected rollback, commit, none, discard or auto, not 'ROLLBACK'"},
        };
        static const struct {
                const char *key;
                const char *value;
                const char *reason;
        } global_cases[] = {
                {"log_level", "loud", "expected error, warning, info or debug, not 'loud'"},
                {"shutdown_grace", "soon", "not a number of seconds: 'soon'"},
                {"max_connections_per_uid", "-1", "must be 0 (no limit) or more: '-1'"},
                {"max_connections_per_pid", "many", "not an integer: 'many'"},
                {"max_waiting_per_connection", "1.5", "not an integer: '1.5'"},
                {"hello_timeout", "-2", "must not be negative: '-2'"},
                {"socket", "", "empty path"},
                {"allow_users", "forkpool-no-such-user", "unknown user 'forkpool-no-such-user'"},
                {"allow_users", "root, forkpool-no-such-user",
                 "unknown user 'forkpool-no-such-user'"},
                {"allow_groups", "forkpool-no-such-group",
                 "unknown group 'forkpool-no-such-group'"},
                {"allow_users", "4294967295", "user id out of range: '4294967295'"},
                {"allow_groups", "99999999999999999999999",
                 "group id out of range: '99999999999999999999999'"},
        };
        char text[1024], want[512];

        (void)state;
        for (size_t i = 0; i < sizeof(pool_cases) / sizeof(pool_cases[0]); i++) {
                snprintf(text, sizeof(text),
                         "# comment\n[pool main]\nurl = " GOOD_URL "\n\n%s = %s\n",
                         pool_cases[i].key, pool_cases[i].value);
                snprintf(want, sizeof(want), "%s: %s", pool_cases[i].key, pool_cases[i].reason);
                load_fails(text, 5, want);
        }
        for (size_t i = 0; i < sizeof(global_cases) / sizeof(global_cases[0]); i++) {
                snprintf(text, sizeof(text), "[forkpool]\n; line 2\n%s = %s\n", global_cases[i].key,
                         global_cases[i].value);
                snprintf(want, sizeof(want), "%s: %s", global_cases[i].key, global_cases[i].reason);
                load_fails(text, 3, want);
        }

        /* A socket path longer than sun_path. */
        memset(want, 'x', 120);
        want[120] = '\0';
        snprintf(text, sizeof(text), "[forkpool]\nsocket = /%s\n", want);
        load_fails(text, 2, "socket: too long for a Unix socket (at most 107 bytes)");

        /* The example in config.h. */
        load_fails("[pool main]\nurl = " GOOD_URL "\npool_size = five\n", 3,
                   "pool_size: not an integer: 'five'");
}

static void test_bad_urls(void **state)
{
        (void)state;
        load_fails("[pool main]\nurl = sqlite://app:" SECRET "@h/db\n", 2,
                   "url: unsupported scheme 'sqlite' (expected postgresql://, mysql:// or "
                   "mariadb://)");
        load_fails_prefix("[pool main]\npool_size = 3\nurl = postgresql://app:" SECRET
                          "@h/db?sslmode=require\n",
                          3, "url: sslmode=require: TLS cannot be used on leased connections");
        load_fails_prefix("[pool main]\nurl = postgresql://app:" SECRET "@h:99999/db\n", 2,
                          "url: invalid port '99999'");
        load_fails_prefix("[pool main]\nurl = postgresql://app:" SECRET "@h/db?service=x\n", 2,
                          "url: unknown query parameter 'service'");
        load_fails_prefix("[pool main]\nurl = postgresql://app:" SECRET "%zz@h/db\n", 2,
                          "url: malformed percent-escape in the password");
        load_fails_prefix("[pool main]\nurl = postgresql://app:S3cr/3tPw@h/db\n", 2,
                          "url: '@' after the host");
        load_fails_prefix("[pool main]\nurl =\n", 2, "url: not a URL");
}

static void test_structure_errors(void **state)
{
        (void)state;
        load_fails("[pool main]\nurl = " GOOD_URL "\nfoo = 1\n", 3,
                   "unknown key 'foo' in [pool main]");
        load_fails("[forkpool]\nlisten = 1\n", 2, "unknown key 'listen' in [forkpool]");
        load_fails("[forkpool]\nurl = " GOOD_URL "\n", 2, "unknown key 'url' in [forkpool]");
        load_fails("[pool a]\nurl = " GOOD_URL "\nsocket = /x\n", 3,
                   "unknown key 'socket' in [pool a]");
        load_fails("[pool a]\nurl = " GOOD_URL "\n[database]\nx = 1\n", 3,
                   "unknown section [database] (expected [forkpool] or [pool NAME])");
        load_fails("[Forkpool]\n", 1,
                   "unknown section [Forkpool] (expected [forkpool] or [pool NAME])");
        load_fails("[pools main]\n", 1,
                   "unknown section [pools main] (expected [forkpool] or [pool NAME])");
        load_fails("pool_size = 1\n[pool a]\n", 1,
                   "pool_size: outside any section (start with [forkpool] or [pool NAME])");
        load_fails("[pool main]\nurl = " GOOD_URL "\n\n[pool main]\nurl = " GOOD_URL "\n", 4,
                   "duplicate pool 'main' (first defined on line 1)");
        load_fails("[forkpool]\n[pool a]\nurl = " GOOD_URL "\n[forkpool]\n", 4,
                   "duplicate section [forkpool] (first on line 1)");
        load_fails("[pool a]\nurl = " GOOD_URL "\npool_size = 1\npool_size = 2\n", 4,
                   "pool_size: set twice in [pool a] (first on line 3)");
        load_fails("[forkpool]\nlog_level = info\nlog_level = info\n", 3,
                   "log_level: set twice in [forkpool] (first on line 2)");
        /* Each pool has its own keys. */
        {
                struct fp_config cfg;
                load_ok("[pool a]\nurl = " GOOD_URL "\npool_size = 1\n"
                        "[pool b]\nurl = " GOOD_URL "\npool_size = 2\n",
                        &cfg);
                assert_int_equal(cfg.pools[1].pool_size, 2);
                fp_config_free(&cfg);
        }
        /* A pool without its url, wherever it ends. */
        load_fails("[pool a]\npool_size = 1\n[pool b]\nurl = " GOOD_URL "\n", 1,
                   "url: missing in [pool a] (required)");
        load_fails("[forkpool]\n\n[pool last]\n", 3, "url: missing in [pool last] (required)");
        /* Section headers. */
        load_fails("[pool]\n", 1, "missing pool name: write [pool NAME]");
        load_fails("[pool bad name]\n", 1,
                   "invalid pool name 'bad name' (1 to 63 characters of A-Z, a-z, 0-9, '_', '.' "
                   "and '-')");
        load_fails("[pool a/b]\n", 1,
                   "invalid pool name 'a/b' (1 to 63 characters of A-Z, a-z, 0-9, '_', '.' "
                   "and '-')");
        load_fails("[pool main\nurl = x\n", 1, "section header without ']'");
        load_fails("[pool main] url = x\n", 1, "unexpected text after ']'");
        load_fails("[forkpool]\nthis line has no equals sign\n", 2,
                   "syntax error: expected 'key = value', '[section]' or a comment");
}

static void test_crlf_and_indent(void **state)
{
        struct fp_config cfg;

        (void)state;
        /* Windows line ends, indented section headers and keys, blanks around '='. */
        load_ok("[forkpool]\r\n"
                "\tlog_level=warning\r\n"
                "  [pool a]   \r\n"
                "\t\turl\t=\t" GOOD_URL "\r\n"
                "    pool_size    =    3    \r\n",
                &cfg);
        assert_int_equal(cfg.log_level, FP_LOG_WARNING);
        assert_int_equal(cfg.n_pools, 1);
        assert_string_equal(cfg.pools[0].url_text, GOOD_URL);
        assert_int_equal(cfg.pools[0].pool_size, 3);
        assert_int_equal(cfg.pools[0].line, 3);
        fp_config_free(&cfg);

        /* An indented key after another is a key, not a continuation line. */
        load_fails("[pool a]\n  url = " GOOD_URL "\n  pool_size = x\n", 3,
                   "pool_size: not an integer: 'x'");
}

static void test_pool_names(void **state)
{
        char name[80], text[256], want[256];
        struct fp_config cfg;

        (void)state;
        memset(name, 'n', 63);
        name[63] = '\0';
        snprintf(text, sizeof(text), "[pool %s]\nurl = " GOOD_URL "\n", name);
        load_ok(text, &cfg);
        assert_string_equal(cfg.pools[0].name, name);
        fp_config_free(&cfg);

        name[63] = 'n';
        name[64] = '\0';
        snprintf(text, sizeof(text), "[pool %s]\nurl = " GOOD_URL "\n", name);
        snprintf(want, sizeof(want),
                 "invalid pool name '%s' (1 to 63 characters of A-Z, a-z, 0-9, '_', '.' and '-')",
                 name);
        load_fails(text, 1, want);
}

static void test_long_line(void **state)
{
        char text[1024];
        int n;

        (void)state;
        n = snprintf(text, sizeof(text), "[pool a]\nurl = postgresql://h/db?application_name=");
        memset(text + n, 'a', 300);
        snprintf(text + n + 300, sizeof(text) - (size_t)n - 300, "\n");
        load_fails(text, 2, "line too long (more than 199 characters)");

        /* A long comment is fine. */
        struct fp_config cfg;
        n = snprintf(text, sizeof(text), "[pool a]\n# ");
        memset(text + n, 'c', 400);
        snprintf(text + n + 400, sizeof(text) - (size_t)n - 400, "\nurl = " GOOD_URL "\n");
        load_ok(text, &cfg);
        assert_int_equal(cfg.n_pools, 1);
        fp_config_free(&cfg);
}

static void test_decimals(void **state)
{
        static const struct {
                const char *text;
                int ms;
        } cases[] = {
                {"30", 30000},
                {"2.5", 2500},
                {"0.25", 250},
                {".5", 500},
                {"1.000", 1000},
                {"0.001", 1},
                {"0", 0},
                {"007", 7000},
                {"2147483", 2147483000},
                {"2147483.647", INT_MAX},
        };
        char text[256];
        struct fp_config cfg;

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                snprintf(text, sizeof(text), "[pool a]\nurl = " GOOD_URL "\npool_timeout = %s\n",
                         cases[i].text);
                load_ok(text, &cfg);
                assert_int_equal(cfg.pools[0].timeout_ms, cases[i].ms);
                fp_config_free(&cfg);
        }
}

static void test_allow_ids(void **state)
{
        struct fp_config cfg;

        (void)state;
        load_ok("[forkpool]\nallow_users = root 1001,,root ,  1001\nallow_groups = root\n"
                "[pool a]\nurl = " GOOD_URL "\n",
                &cfg);
        assert_int_equal(cfg.n_allow_uids, 2);
        assert_int_equal(cfg.allow_uids[0], 0);
        assert_int_equal(cfg.allow_uids[1], 1001);
        assert_int_equal(cfg.n_allow_gids, 1);
        assert_int_equal(cfg.allow_gids[0], 0);
        fp_config_free(&cfg);

        /* An empty list allows nobody extra. */
        load_ok("[forkpool]\nallow_users =\n[pool a]\nurl = " GOOD_URL "\n", &cfg);
        assert_int_equal(cfg.n_allow_uids, 0);
        fp_config_free(&cfg);

        load_fails("[forkpool]\nallow_users = root,nosuchuser-forkpool\n", 2,
                   "allow_users: unknown user 'nosuchuser-forkpool'");
}

static void test_missing_file(void **state)
{
        char err[FP_CONFIG_ERR_MAX], want[FP_CONFIG_ERR_MAX + 512], path[300];
        struct fp_config cfg;

        (void)state;
        snprintf(path, sizeof(path), "%s/absent.conf", test_dir);
        fp_config_init(&cfg);
        assert_int_equal(fp_config_load(&cfg, path, err, sizeof(err)), -ENOENT);
        snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
        assert_string_equal(err, want);
        assert_null(cfg.path);
        fp_config_free(&cfg);
}

static void test_quick_pool(void **state)
{
        char err[FP_CONFIG_ERR_MAX];
        struct fp_config cfg;

        (void)state;
        fp_config_init(&cfg);
        assert_int_equal(fp_config_quick_pool(&cfg, GOOD_URL, "7", "-1", "2.5", err, sizeof(err)),
                         0);
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), 0);
        assert_int_equal(cfg.n_pools, 1);
        assert_string_equal(cfg.pools[0].name, "default");
        assert_string_equal(cfg.pools[0].url_text, GOOD_URL);
        assert_string_equal(cfg.pools[0].url.password, SECRET);
        assert_int_equal(cfg.pools[0].pool_size, 7);
        assert_int_equal(cfg.pools[0].max_overflow, -1);
        assert_int_equal(cfg.pools[0].timeout_ms, 2500);
        assert_int_equal(cfg.pools[0].connect_timeout_ms, 10000);
        assert_int_equal(cfg.pools[0].reset_mode, FP_RESET_ROLLBACK);
        assert_int_equal(cfg.pools[0].line, 0);
        fp_config_free(&cfg);

        /* Only the URL: defaults. */
        fp_config_init(&cfg);
        assert_int_equal(fp_config_quick_pool(&cfg, GOOD_URL, NULL, NULL, NULL, err, sizeof(err)),
                         0);
        assert_int_equal(cfg.pools[0].pool_size, 5);
        assert_int_equal(cfg.pools[0].max_overflow, 10);
        assert_int_equal(cfg.pools[0].timeout_ms, 30000);

        /* Errors name the option and change nothing. */
        assert_int_equal(fp_config_quick_pool(&cfg, GOOD_URL, "x", NULL, NULL, err, sizeof(err)),
                         -EINVAL);
        assert_string_equal(err, "--pool-size: not an integer: 'x'");
        assert_int_equal(fp_config_quick_pool(&cfg, NULL, NULL, "-2", NULL, err, sizeof(err)),
                         -EINVAL);
        assert_string_equal(err, "--max-overflow: must be -1 (no limit) or 0 or more: '-2'");
        assert_int_equal(fp_config_quick_pool(&cfg, NULL, NULL, NULL, "soon", err, sizeof(err)),
                         -EINVAL);
        assert_string_equal(err, "--pool-timeout: not a number of seconds: 'soon'");
        assert_int_equal(fp_config_quick_pool(&cfg,
                                              "postgresql://u:" SECRET "@h/db?sslmode=require",
                                              NULL, NULL, NULL, err, sizeof(err)),
                         -EINVAL);
        assert_true(strncmp(err, "--url: sslmode=require: TLS cannot", 34) == 0);
        assert_null(strstr(err, SECRET));
        assert_int_equal(cfg.n_pools, 1);
        assert_string_equal(cfg.pools[0].url_text, GOOD_URL);
        assert_int_equal(cfg.pools[0].pool_size, 5);

        /* Without a URL, it adjusts the existing pool "default". */
        assert_int_equal(fp_config_quick_pool(&cfg, NULL, "9", NULL, NULL, err, sizeof(err)), 0);
        assert_int_equal(cfg.n_pools, 1);
        assert_int_equal(cfg.pools[0].pool_size, 9);
        assert_string_equal(cfg.pools[0].url_text, GOOD_URL);
        /* A new URL replaces the old one. */
        assert_int_equal(fp_config_quick_pool(&cfg, "postgresql:///other", NULL, NULL, NULL, err,
                                              sizeof(err)),
                         0);
        assert_int_equal(cfg.n_pools, 1);
        assert_int_equal(cfg.pools[0].pool_size, 9);
        assert_string_equal(cfg.pools[0].url.database, "other");
        fp_config_free(&cfg);

        /* Nothing given: nothing done. */
        fp_config_init(&cfg);
        assert_int_equal(fp_config_quick_pool(&cfg, NULL, NULL, NULL, NULL, err, sizeof(err)), 0);
        assert_int_equal(cfg.n_pools, 0);
        assert_int_equal(fp_config_quick_pool(&cfg, NULL, "3", NULL, NULL, err, sizeof(err)),
                         -EINVAL);
        assert_string_equal(err, "--url: required (there is no pool 'default' to adjust)");
        fp_config_free(&cfg);

        /* Next to the pools of a file, and overriding its [pool default]. */
        load_ok("[pool main]\nurl = " GOOD_URL "\n[pool default]\nurl = postgresql:///d\n"
                "pool_size = 2\nconnect_timeout = 4\n",
                &cfg);
        assert_int_equal(fp_config_quick_pool(&cfg, NULL, NULL, "3", NULL, err, sizeof(err)), 0);
        assert_int_equal(cfg.n_pools, 2);
        const struct fp_pool_config *d = fp_config_find_pool(&cfg, "default");
        assert_non_null(d);
        assert_int_equal(d->pool_size, 2);
        assert_int_equal(d->max_overflow, 3);
        assert_int_equal(d->connect_timeout_ms, 4000);
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), 0);
        fp_config_free(&cfg);
}

/*
 * A [pool NAME] key set from the command line lands in that pool, as the
 * file would set it, whatever the key's kind, and nowhere else.
 */
static void test_set_pool_key(void **state)
{
        char err[FP_CONFIG_ERR_MAX];
        struct fp_config cfg;

        (void)state;
        load_ok("[forkpool]\nmax_connections_per_uid = 9\n[pool a]\nurl = " GOOD_URL "\n"
                "[pool b]\nurl = " GOOD_URL "\n",
                &cfg);
        assert_int_equal(
                fp_config_set_pool_key(&cfg, "b", "pool_pre_ping", "yes", err, sizeof(err)), 0);
        assert_int_equal(fp_config_set_pool_key(&cfg, "b", "leak_timeout", "1.5", err, sizeof(err)),
                         0);
        assert_int_equal(
                fp_config_set_pool_key(&cfg, "b", "allow_users", "root 1001", err, sizeof(err)), 0);
        assert_int_equal(
                fp_config_set_pool_key(&cfg, "b", "allow_groups", "root", err, sizeof(err)), 0);
        assert_int_equal(fp_config_set_pool_key(&cfg, "b", "connect_rate", "3", err, sizeof(err)),
                         0);
        const struct fp_pool_config *a = fp_config_find_pool(&cfg, "a");
        const struct fp_pool_config *b = fp_config_find_pool(&cfg, "b");
        assert_non_null(a);
        assert_non_null(b);
        assert_true(b->pre_ping);
        assert_int_equal(b->leak_timeout_ms, 1500);
        assert_int_equal(b->n_allow_uids, 2);
        assert_int_equal(b->allow_uids[0], 0);
        assert_int_equal(b->allow_uids[1], 1001);
        assert_int_equal(b->n_allow_gids, 1);
        assert_int_equal(b->allow_gids[0], 0);
        assert_int_equal(b->connect_rate, 3);
        assert_false(a->pre_ping);
        assert_int_equal(a->leak_timeout_ms, 0);
        assert_int_equal(a->n_allow_uids, 0);
        assert_int_equal(a->n_allow_gids, 0);
        assert_int_equal(cfg.n_allow_uids, 0);
        assert_int_equal(cfg.n_allow_gids, 0);
        assert_int_equal(cfg.max_connections_per_uid, 9);

        /* Errors as the file's, without the key, and nothing changes. */
        assert_int_equal(
                fp_config_set_pool_key(&cfg, "b", "pool_pre_ping", "maybe", err, sizeof(err)),
                -EINVAL);
        assert_string_equal(err, "expected true or false, not 'maybe'");
        assert_true(b->pre_ping);
        assert_int_equal(fp_config_set_pool_key(&cfg, "b", "allow_users", "nosuchuser-forkpool",
                                                err, sizeof(err)),
                         -ENOENT);
        assert_string_equal(err, "unknown user 'nosuchuser-forkpool'");
        assert_int_equal(b->n_allow_uids, 2);
        assert_int_equal(fp_config_set_pool_key(&cfg, "b", "hello_timeout", "1", err, sizeof(err)),
                         -ENOENT);
        assert_string_equal(err, "unknown pool key 'hello_timeout'");
        assert_int_equal(
                fp_config_set_pool_key(&cfg, "c", "pool_pre_ping", "yes", err, sizeof(err)),
                -ENOENT);
        assert_string_equal(err, "no pool 'c'");
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), 0);
        fp_config_free(&cfg);
}

static void test_pool_mode(void **state)
{
        char err[FP_CONFIG_ERR_MAX];
        struct fp_config cfg;

        (void)state;
        load_ok("[pool a]\nurl = " GOOD_URL "\n[pool b]\nurl = " GOOD_URL
                "\npool_mode = transaction\n[pool c]\nurl = " GOOD_URL "\npool_mode = session\n",
                &cfg);
        assert_int_equal(fp_config_find_pool(&cfg, "a")->pool_mode, FP_POOL_MODE_SESSION);
        assert_int_equal(fp_config_find_pool(&cfg, "b")->pool_mode, FP_POOL_MODE_TRANSACTION);
        assert_int_equal(fp_config_find_pool(&cfg, "c")->pool_mode, FP_POOL_MODE_SESSION);
        fp_config_free(&cfg);

        load_fails("[pool main]\nurl = " GOOD_URL "\npool_mode = statement\n", 3,
                   "pool_mode: expected session or transaction, not 'statement'");

        /* The drop-in is libpq only: a MySQL pool cannot lease by transaction. */
        assert_int_equal(load_text("[pool my]\nurl = mysql://app@/appdb\npool_mode = transaction\n",
                                   &cfg, err, sizeof(err)),
                         0);
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "pool_mode: transaction needs a PostgreSQL pool"));
        assert_non_null(strstr(err, "in [pool my]"));
        assert_null(strchr(err, '\n'));
        fp_config_free(&cfg);

        assert_int_equal(load_text("[pool p]\nurl = " GOOD_URL
                                   "\npoolclass = process\npool_mode = transaction\n",
                                   &cfg, err, sizeof(err)),
                         0);
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "pool_mode: transaction does not go with poolclass = process"));
        fp_config_free(&cfg);
}

static void test_validate(void **state)
{
        char err[FP_CONFIG_ERR_MAX];
        struct fp_config cfg;

        (void)state;
        fp_config_init(&cfg);
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "no pool configured: add a [pool NAME] section or use --url");

        fp_config_free(&cfg);

        /* A file with only [forkpool]. */
        assert_int_equal(load_text("[forkpool]\nlog_level = warning\n", &cfg, err, sizeof(err)), 0);
        assert_int_equal(cfg.log_level, FP_LOG_WARNING);
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "no pool configured: add a [pool NAME] section or use --url");
        fp_config_free(&cfg);

        /* Pools built by hand are checked too. */
        fp_config_init(&cfg);
        cfg.n_pools = 1;
        snprintf(cfg.pools[0].name, sizeof(cfg.pools[0].name), "hand");
        cfg.pools[0].connect_timeout_ms = 1000;
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "url: missing or not parsed in [pool hand]");
        assert_int_equal(fp_config_quick_pool(&cfg, GOOD_URL, NULL, NULL, NULL, err, sizeof(err)),
                         0);
        snprintf(cfg.pools[1].name, sizeof(cfg.pools[1].name), "hand");
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "url: missing or not parsed in [pool hand]");
        cfg.pools[0] = cfg.pools[1];
        memset(&cfg.pools[1], 0, sizeof(cfg.pools[1]));
        cfg.n_pools = 1;
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), 0);

        /* The socket path, as replaced from the command line. */
        free(cfg.socket_path);
        cfg.socket_path = strdup("");
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "socket: empty path");
        free(cfg.socket_path);
        cfg.socket_path = NULL;
        assert_true(fp_config_validate(&cfg, err, sizeof(err)) < 0);
        fp_config_free(&cfg);

        /* Duplicate names built by hand. */
        fp_config_init(&cfg);
        assert_int_equal(fp_config_quick_pool(&cfg, GOOD_URL, NULL, NULL, NULL, err, sizeof(err)),
                         0);
        cfg.pools[1] = cfg.pools[0];
        cfg.n_pools = 2;
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "duplicate pool 'default'");
        cfg.n_pools = 1; /* pools[1] shares pools[0]'s URL */
        fp_config_free(&cfg);

        /* More connections than a pool can hold. */
        fp_config_init(&cfg);
        assert_int_equal(
                fp_config_quick_pool(&cfg, GOOD_URL, "1000", "100", NULL, err, sizeof(err)), 0);
        assert_int_equal(fp_config_validate(&cfg, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "pool_size + max_overflow"));
        fp_config_free(&cfg);
}

/* A password in a file everyone may read: refused, naming the fix. */
static void test_password_file_mode(void **state)
{
        char err[FP_CONFIG_ERR_MAX], want[FP_CONFIG_ERR_MAX + 64];
        struct fp_config cfg;

        (void)state;
        write_conf("[pool main]\nurl = postgresql://app:s3cret@db/app\n");
        assert_int_equal(chmod(conf_path, 0644), 0);
        fp_config_init(&cfg);
        assert_int_equal(fp_config_load(&cfg, conf_path, err, sizeof(err)), -EPERM);
        snprintf(want, sizeof(want),
                 "%s:1: url: holds a password, but the file is readable by everyone (mode 0644): "
                 "chmod o-r it",
                 conf_path);
        assert_string_equal(err, want);
        assert_null(strstr(err, "s3cret"));

        /* Group-readable is fine (forkpoold's group), and so is a URL without a password. */
        assert_int_equal(chmod(conf_path, 0640), 0);
        fp_config_init(&cfg);
        assert_int_equal(fp_config_load(&cfg, conf_path, err, sizeof(err)), 0);
        fp_config_free(&cfg);
        write_conf("[pool main]\nurl = postgresql://app@db/app\n");
        assert_int_equal(chmod(conf_path, 0644), 0);
        fp_config_init(&cfg);
        assert_int_equal(fp_config_load(&cfg, conf_path, err, sizeof(err)), 0);
        fp_config_free(&cfg);
}

static void test_reset_mode(void **state)
{
        enum fp_reset_mode m;

        (void)state;
        assert_int_equal(fp_reset_mode_parse("rollback", &m), 0);
        assert_int_equal(m, FP_RESET_ROLLBACK);
        assert_int_equal(fp_reset_mode_parse("commit", &m), 0);
        assert_int_equal(m, FP_RESET_COMMIT);
        assert_int_equal(fp_reset_mode_parse("none", &m), 0);
        assert_int_equal(m, FP_RESET_NONE);
        assert_int_equal(fp_reset_mode_parse("discard", &m), 0);
        assert_int_equal(m, FP_RESET_DISCARD);
        assert_int_equal(fp_reset_mode_parse("auto", &m), 0);
        assert_int_equal(m, FP_RESET_AUTO);
        assert_int_equal(fp_reset_mode_parse("", &m), -EINVAL);
        assert_int_equal(fp_reset_mode_parse("true", &m), -EINVAL);
        assert_string_equal(fp_reset_mode_name(FP_RESET_ROLLBACK), "rollback");
        assert_string_equal(fp_reset_mode_name(FP_RESET_COMMIT), "commit");
        assert_string_equal(fp_reset_mode_name(FP_RESET_NONE), "none");
        assert_string_equal(fp_reset_mode_name(FP_RESET_DISCARD), "discard");
        assert_string_equal(fp_reset_mode_name(FP_RESET_AUTO), "auto");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full_file),        cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_bad_values),       cmocka_unit_test(test_bad_urls),
                cmocka_unit_test(test_structure_errors), cmocka_unit_test(test_crlf_and_indent),
                cmocka_unit_test(test_pool_names),       cmocka_unit_test(test_long_line),
                cmocka_unit_test(test_decimals),         cmocka_unit_test(test_allow_ids),
                cmocka_unit_test(test_missing_file),     cmocka_unit_test(test_quick_pool),
                cmocka_unit_test(test_validate),         cmocka_unit_test(test_pool_mode),
                cmocka_unit_test(test_reset_mode),       cmocka_unit_test(test_password_file_mode),
                cmocka_unit_test(test_set_pool_key),
        };

        return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
