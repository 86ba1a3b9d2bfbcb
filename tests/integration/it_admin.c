/* SPDX-License-Identifier: MIT */
/*
 * it_admin.c — running forkpoold: bad configuration refused with one line and
 * exit 78; SIGHUP reloads (a bad new file is rejected, the old one kept);
 * SIGTERM waits for leases within the grace period, then removes the socket
 * and the segment; forkpoolctl status in text and JSON, and when the
 * supervisor is gone; a database that is down gives a clear error and the
 * pool's counts stay right.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

static void write_text(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");
        CHECK(f);
        fputs(text, f);
        fclose(f);
}

/* Runs forkpoold on a config text; returns its exit status and its stderr in out. */
static int run_config(const char *text, char *out, size_t len)
{
        char dir[] = "/tmp/fp-it-cfg.XXXXXX", path[128];
        CHECK(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/bad.conf", dir);
        write_text(path, text);
        int status = itest_sh(out, len, "timeout 10 %s --config %s --socket %s/s.sock 2>&1",
                              FP_FORKPOOLD_PATH, path, dir);
        itest_sh(NULL, 0, "rm -rf %s", dir);
        return status;
}

static void test_bad_config_refused(void)
{
        char out[2048];

        int status = run_config("[forkpool]\n\n[pool main]\nurl = postgresql://u@h/db\n"
                                "pool_size = five\n",
                                out, sizeof(out));
        CHECK_MSG(status == 78, "exit %d", status);
        CHECK_MSG(strstr(out, "bad.conf:5") && strstr(out, "pool_size"), "message: %s", out);
        CHECK_MSG(strchr(out, '\n') == out + strlen(out) - 1, "not one line: %s", out);

        status = run_config("[pool main]\nurl = postgresql://u@h/db\nmax_overflow = -2\n", out,
                            sizeof(out));
        CHECK(status == 78 && strstr(out, ":3") && strstr(out, "max_overflow"));

        status = run_config("[pool main]\nurl = mysqlx://u@h/db\n", out, sizeof(out));
        CHECK(status == 78 && strstr(out, ":2") && strstr(out, "scheme"));

        status = run_config("[pool main]\nurl = postgresql://u:s3cret@h/db\nbogus = 1\n", out,
                            sizeof(out));
        CHECK(status == 78 && strstr(out, "bogus") && !strstr(out, "s3cret"));

        status = itest_sh(out, sizeof(out), "%s --url postgresql://u@h/db --pool-size -3 2>&1",
                          FP_FORKPOOLD_PATH);
        CHECK_MSG(status == 78 && strstr(out, "--pool-size"), "exit %d: %s", status, out);
}

static void test_reload(void)
{
        struct itest_sup s;
        char log[16384];

        itest_sup_start(&s, "it_reload", "pool_size = 2\nmax_overflow = 0\n", NULL);
        CHECK(itest_pool(&s).pool_size == 2);

        /* A bad file is rejected; the pool keeps serving with the old settings. */
        char good[2048];
        itest_sh(good, sizeof(good), "cat %s", s.config);
        write_text(s.config, "[pool main]\npool_size = nope\n");
        kill(s.pid, SIGHUP);
        CHECK_SOON((itest_sh(log, sizeof(log), "cat %s", s.log), strstr(log, "reload rejected")),
                   5000, "no rejected reload in the log:\n%s", log);
        CHECK(itest_pool(&s).pool_size == 2);

        forkpool *fp;
        forkpool_lease *lease;
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &lease));
        CHECK_OK(forkpool_release(lease));

        /* A good change applies. */
        char *p = strstr(good, "pool_size = 2");
        CHECK(p);
        p[strlen("pool_size = ")] = '4';
        write_text(s.config, good);
        kill(s.pid, SIGHUP);
        CHECK_SOON(itest_pool(&s).pool_size == 4, 3000, "pool_size %d after the reload",
                   (int)itest_pool(&s).pool_size);
        CHECK(itest_pool(&s).overflow == -3); /* one connection exists: O = 1 - 4 */
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &lease));
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

static void test_sigterm_waits_for_leases(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease, *other;
        char shm_path[128];
        struct stat st;

        itest_sup_start(&s, "it_sigterm", NULL, NULL);
        itest_segment_path(s.socket, shm_path, sizeof(shm_path));
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &lease));
        PGconn *c = forkpool_lease_pg(lease);

        kill(s.pid, SIGTERM);
        usleep(300000);
        /* Still running for the lease; no new acquires. */
        CHECK(waitpid(s.pid, NULL, WNOHANG) == 0);
        int r = forkpool_acquire(fp, "main", 1000, &other);
        CHECK_MSG(r == -ESHUTDOWN || r == -ECONNREFUSED, "acquire during shutdown: %d", r);
        CHECK(strcmp(itest_query(c, "SELECT 1"), "1") == 0);
        CHECK_OK(forkpool_release(lease));

        int status = itest_wait_child(s.pid, 5000);
        s.pid = 0;
        CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(stat(s.socket, &st) != 0 && errno == ENOENT);
        CHECK(stat(shm_path, &st) != 0 && errno == ENOENT);
        forkpool_close(fp);
        itest_sup_stop(&s);
}

static void test_sigterm_grace_revokes(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        itest_sup_start(&s, "it_grace", NULL, NULL); /* shutdown_grace = 5 */
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &lease));
        PGconn *c = forkpool_lease_pg(lease);
        int64_t t0 = itest_now_ms();
        kill(s.pid, SIGTERM);
        int status = itest_wait_child(s.pid, 15000);
        s.pid = 0;
        int64_t took = itest_now_ms() - t0;
        CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK_MSG(took >= 4500 && took < 9000, "exited after %lld ms", (long long)took);
        /* The revoked lease fails cleanly on its next query. */
        PGresult *res = PQexec(c, "SELECT 1");
        CHECK(PQresultStatus(res) != PGRES_TUPLES_OK);
        PQclear(res);
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        itest_sup_stop(&s);
}

static void test_forkpoolctl_status(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *a, *b;
        char out[16384];

        itest_sup_start(&s, "it_ctl", "pool_size = 5\nmax_overflow = 10\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &a));
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &b));
        CHECK(forkpool_lease_pg(a));
        CHECK_OK(forkpool_release(a));
        CHECK_SOON(itest_pool(&s).checked_in == 1, 5000, "the release was not handled");

        CHECK(itest_sh(out, sizeof(out), "%s --socket %s status", FP_FORKPOOLCTL_PATH, s.socket) ==
              0);
        CHECK_MSG(strstr(out, "Pool size: 5  Connections in pool: 1 Current Overflow: -3 "
                              "Current Checked out connections: 1"),
                  "status:\n%s", out);
        char pid[32];
        snprintf(pid, sizeof(pid), "%d", getpid());
        CHECK(strstr(out, "leased") && strstr(out, pid));

        CHECK(itest_status_json(&s, out, sizeof(out)) == 0);
        CHECK_MSG(strstr(out, "\"pools\"") && strstr(out, "\"name\"") && strstr(out, "\"main\"") &&
                          strstr(out, "\"checked_out\"") && strstr(out, "\"holder_pid\"") &&
                          strstr(out, "\"counters\"") && strstr(out, "\"backend_pid\""),
                  "json:\n%s", out);
        CHECK(itest_sh(
                      NULL, 0,
                      "%s --socket %s status --json | python3 -c "
                      "'import json,sys; d=json.load(sys.stdin); p=d[\"pools\"][0]; "
                      "assert p[\"checked_out\"]==1 and p[\"checked_in\"]==1 and "
                      "p[\"overflow\"]==-3 and p[\"pool_size\"]==5 and p[\"max_overflow\"]==10, p'",
                      FP_FORKPOOLCTL_PATH, s.socket) == 0);
        CHECK_OK(forkpool_release(b));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);

        /* Gone: forkpoolctl says so. */
        int status = itest_sh(out, sizeof(out), "%s --socket %s status 2>&1", FP_FORKPOOLCTL_PATH,
                              s.socket);
        CHECK(status != 0 && strstr(out, "no forkpoold"));
}

static void test_database_down(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        char dir[] = "/tmp/fp-it-down.XXXXXX", conf[192], text[512];

        /* A port where nothing listens. */
        CHECK(mkdtemp(dir));
        memset(&s, 0, sizeof(s));
        snprintf(s.dir, sizeof(s.dir), "%s", dir);
        snprintf(s.socket, sizeof(s.socket), "%s/forkpool.sock", dir);
        snprintf(s.config, sizeof(s.config), "%s/forkpool.conf", dir);
        snprintf(s.log, sizeof(s.log), "%s/forkpoold.log", dir);
        snprintf(conf, sizeof(conf), "%s", s.config);
        snprintf(text, sizeof(text),
                 "[forkpool]\nsocket = %s\n[pool main]\nurl = postgresql://u@127.0.0.1:1/db\n"
                 "pool_size = 2\nmax_overflow = 0\nconnect_timeout = 2\n",
                 s.socket);
        write_text(conf, text);
        itest_sup_restart(&s);

        CHECK_OK(forkpool_open(s.socket, &fp));
        int64_t t0 = itest_now_ms();
        int r = forkpool_acquire(fp, "main", 5000, &lease);
        CHECK_MSG(r == -EHOSTUNREACH, "acquire with the database down: %d", r);
        CHECK(itest_now_ms() - t0 < 3000);
        CHECK_MSG(strstr(forkpool_last_error(), "127.0.0.1") ||
                          strstr(forkpool_last_error(), "refused"),
                  "error text: %s", forkpool_last_error());
        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.counters.connect_failures == 1 && st.checked_out == 0 && st.overflow == -2);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* Runs forkpoolctl with the test supervisor's socket; output (both streams) in out. */
static int ctl(const struct itest_sup *s, char *out, size_t len, const char *args)
{
        return itest_sh(out, len, "%s --socket %s %s 2>&1", FP_FORKPOOLCTL_PATH, s->socket, args);
}

static void test_admin_commands(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *a, *b;
        char out[8192];

        itest_sup_start(&s, "it_adm", "pool_size = 2\nmax_overflow = 0\npool_timeout = 0.3\n",
                        "allow_users = root, nobody\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &a));
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &b));
        CHECK(forkpool_lease_pg(a) && forkpool_lease_pg(b));
        CHECK_OK(forkpool_release(a));
        usleep(50000);

        /* dispose: the idle one closes now, the leased one when it comes back. */
        CHECK_MSG(ctl(&s, out, sizeof(out), "dispose main") == 0, "%s", out);
        CHECK(strstr(out, "disposed"));
        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.live == 1 && st.checked_out == 1 && st.checked_in == 1);
        CHECK_OK(forkpool_release(b));
        usleep(50000);
        st = itest_pool(&s);
        CHECK(st.live == 0 && st.checked_out == 0 && st.checked_in == 2 && st.overflow == 0);

        /* pause: nothing is handed out; resume. */
        CHECK(ctl(&s, out, sizeof(out), "pause main") == 0);
        CHECK(forkpool_acquire(fp, "main", 300, &a) == -ETIMEDOUT);
        CHECK(ctl(&s, out, sizeof(out), "resume main") == 0);
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &a));

        /* kill-lease: the holder's next query fails; the slot is free and counted. */
        PGconn *c = forkpool_lease_pg(a);
        char args[64];
        int slot = -1;
        for (int i = 0; i < 2 && slot < 0; i++) {
                snprintf(args, sizeof(args), "kill-lease main %d", i);
                if (ctl(&s, out, sizeof(out), args) == 0)
                        slot = i;
        }
        CHECK_MSG(slot >= 0, "kill-lease: %s", out);
        PGresult *res = PQexec(c, "SELECT 1");
        CHECK(PQresultStatus(res) != PGRES_TUPLES_OK);
        PQclear(res);
        CHECK(itest_pool(&s).counters.revokes == 1);
        CHECK_OK(forkpool_release(a));
        CHECK(ctl(&s, out, sizeof(out), "kill-lease main 7") == 1 && strstr(out, "no lease"));

        /* Errors are one line; reload works through the socket too. */
        CHECK(ctl(&s, out, sizeof(out), "dispose nope") == 1 && strstr(out, "no pool"));
        CHECK(ctl(&s, out, sizeof(out), "dispose") == 2);
        CHECK(ctl(&s, out, sizeof(out), "reload") == 0 && strstr(out, "reloaded"));

        /* Only admins: nobody (gid 0 kept, so it can reach the socket) is refused. */
        CHECK(itest_sh(out, sizeof(out),
                       "setpriv --reuid=65534 --regid=0 --clear-groups %s --socket %s dispose "
                       "main 2>&1",
                       FP_FORKPOOLCTL_PATH, s.socket) == 1);
        CHECK_MSG(strstr(out, "may not run admin commands"), "%s", out);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

static void test_events_and_url_check(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *a;
        char out[16384];

        itest_sup_start(&s, "it_events", NULL, NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &a));
        CHECK_OK(forkpool_release(a));
        forkpool_close(fp);
        usleep(50000);
        CHECK(ctl(&s, out, sizeof(out), "events") == 0);
        CHECK_MSG(strstr(out, "first_connect") && strstr(out, "checkout") &&
                          strstr(out, "checkin") && strstr(out, "pool main"),
                  "events:\n%s", out);
        CHECK(itest_sh(NULL, 0,
                       "%s --socket %s events --json | python3 -c 'import json,sys; "
                       "e=[json.loads(l) for l in sys.stdin]; "
                       "assert [x[\"type\"] for x in e][:3]==[\"first_connect\",\"connect\","
                       "\"checkout\"], e'",
                       FP_FORKPOOLCTL_PATH, s.socket) == 0);
        CHECK(itest_sup_stop(&s) == 0);

        CHECK(itest_sh(out, sizeof(out),
                       "%s url-check 'postgresql://app:kx%%25jj5%%2Fg@db.example:6432/appdb"
                       "?application_name=web' 2>&1",
                       FP_FORKPOOLCTL_PATH) == 0);
        CHECK_MSG(strstr(out, "app:***@db.example:6432/appdb") && !strstr(out, "kx%") &&
                          strstr(out, "application_name = web") && strstr(out, "sslmode=disable"),
                  "url-check:\n%s", out);
        CHECK(itest_sh(out, sizeof(out), "%s url-check 'postgresql://u@h/db?sslmode=require' 2>&1",
                       FP_FORKPOOLCTL_PATH) == 1);
        CHECK(strstr(out, "TLS"));
}

/* The application_name of the session a lease of pool has. */
static char *lease_app(forkpool *fp, const char *pool, char *buf, size_t len)
{
        forkpool_lease *lease;
        CHECK_OK(forkpool_acquire(fp, pool, 5000, &lease));
        PGconn *c = forkpool_lease_pg(lease);
        CHECK(c);
        snprintf(buf, len, "%s", itest_query(c, "SELECT current_setting('application_name')"));
        CHECK_OK(forkpool_release(lease));
        return buf;
}

/* Writes the supervisor's configuration: its [forkpool] section and the pools given. */
static void write_pools(const struct itest_sup *s, const char *pools)
{
        char text[4096];
        snprintf(text, sizeof(text), "[forkpool]\nsocket = %s\nshutdown_grace = 5\n\n%s", s->socket,
                 pools);
        write_text(s->config, text);
}

/* A reload that changes a pool's URL, adds a pool, then removes it again. */
static void test_reload_url_and_pools(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_pool_stats st = FORKPOOL_POOL_STATS_INIT;
        char main_url[512], second_url[512], pools[2048], app[64];

        snprintf(second_url, sizeof(second_url), "%s", itest_url("it_rl_second"));
        snprintf(main_url, sizeof(main_url), "%s", itest_url("it_rl_main2"));
        itest_sup_start(&s, "it_rl_main", "pool_size = 2\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_MSG(strcmp(lease_app(fp, "main", app, sizeof(app)), "it_rl_main") == 0, "app %s",
                  app);
        CHECK(forkpool_pool_state(fp, "second", &st) == -ENOENT);

        /* main's URL changes, second is added. */
        snprintf(pools, sizeof(pools),
                 "[pool main]\nurl = %s\npool_size = 2\nmax_overflow = 0\n\n"
                 "[pool second]\nurl = %s\npool_size = 1\n",
                 main_url, second_url);
        write_pools(&s, pools);
        CHECK(kill(s.pid, SIGHUP) == 0);
        CHECK_SOON(forkpool_pool_state(fp, "second", &st) == 0, 5000,
                   "pool second did not appear after the reload");
        CHECK_MSG(strcmp(lease_app(fp, "second", app, sizeof(app)), "it_rl_second") == 0,
                  "second: app %s", app);
        /* The connection made for the old URL is not handed out again. */
        CHECK_MSG(strcmp(lease_app(fp, "main", app, sizeof(app)), "it_rl_main2") == 0,
                  "main after its URL changed: app %s", app);

        /* second goes away: it refuses acquires and its connection is closed. */
        snprintf(pools, sizeof(pools), "[pool main]\nurl = %s\npool_size = 2\nmax_overflow = 0\n",
                 main_url);
        write_pools(&s, pools);
        CHECK(kill(s.pid, SIGHUP) == 0);
        forkpool_lease *lease;
        int r;
        CHECK_SOON((r = forkpool_acquire(fp, "second", 1000, &lease)) == -ENOENT ||
                           (r == 0 && forkpool_release(lease) < 0),
                   5000, "pool second still serves after its removal (%d)", r);
        PGconn *admin = itest_admin();
        CHECK(itest_wait_backends(admin, "it_rl_second", 0, 5000) == 0);
        CHECK(itest_wait_backends(admin, "it_rl_main", 0, 5000) == 0);
        PQfinish(admin);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

ITEST_MAIN({"bad_config_refused", test_bad_config_refused, 60}, {"reload", test_reload, 60},
           {"reload_url_and_pools", test_reload_url_and_pools, 60},
           {"sigterm_waits_for_leases", test_sigterm_waits_for_leases, 60},
           {"sigterm_grace_revokes", test_sigterm_grace_revokes, 60},
           {"forkpoolctl_status", test_forkpoolctl_status, 60},
           {"database_down", test_database_down, 60}, {"admin_commands", test_admin_commands, 60},
           {"events_and_url_check", test_events_and_url_check, 60})
