/* SPDX-License-Identifier: MIT */
/*
 * it_adopt.c — the private listener that adoption lets libpq / Connector/C
 * connect to: another uid can neither reach nor disturb it (flooding every
 * forkpool listener listed in /proc/net/unix changes nothing), connections
 * of our own uid waiting in its backlog are skipped, it recovers when its
 * directory is removed, and it leaves nothing behind when a process exits
 * (and a SIGKILLed process's directory is removed by the next one).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

/* Runs fn as user (gid 0, so the 0660 control socket is reachable) in a child. */
static int as_user(const char *user, int (*fn)(void))
{
        pid_t pid = itest_fork_as(user);
        if (pid == 0)
                _exit(fn());
        return itest_child_exit(pid, 30000);
}

static int as_nobody(int (*fn)(void))
{
        return as_user("nobody", fn);
}

/*
 * Calls fn(address, len, data) for every listening stream socket in
 * /proc/net/unix whose name contains "forkpool" and, if pid > 0, names that
 * process (forkpool<...>.<pid>.). Abstract names come as "@name".
 */
static int each_forkpool_listener(pid_t pid, int (*fn)(const char *name, void *data), void *data)
{
        FILE *f = fopen("/proc/net/unix", "r");
        char line[512], want[64];
        int total = 0;

        CHECK(f);
        snprintf(want, sizeof(want), ".%d.", (int)pid);
        while (fgets(line, sizeof(line), f)) {
                char name[256] = "";
                unsigned flags, type, st;
                if (sscanf(line, "%*s %*s %*s %x %x %x %*s %255s", &flags, &type, &st, name) < 4)
                        continue;
                if (type != SOCK_STREAM || !(flags & 0x10000) || !strstr(name, "forkpool"))
                        continue;
                if (pid > 0 && !strstr(name, want))
                        continue;
                total += fn(name, data);
        }
        fclose(f);
        return total;
}

/* A non-blocking connect to a listener name from /proc/net/unix; -errno on failure. */
static int connect_name(const char *name)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        size_t n = strlen(name);
        socklen_t len;

        CHECK(n < sizeof(addr.sun_path));
        memcpy(addr.sun_path, name, n);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        if (name[0] == '@')
                addr.sun_path[0] = '\0'; /* abstract: exact length, no NUL */
        else
                len++;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        CHECK(fd >= 0);
        if (connect(fd, (struct sockaddr *)&addr, len) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* Fills one listener's backlog until connect fails; returns how many got in. */
static int flood_one(const char *name, void *data)
{
        (void)data;
        int n = 0;
        while (n < 4096) {
                int fd = connect_name(name);
                if (fd < 0)
                        break;
                n++; /* left open: exit closes them, the backlog keeps the entries */
        }
        return n;
}

/*
 * As the attacker: flood every forkpool listener of the worker (our parent;
 * only its, so as not to disturb other forkpool processes on the machine).
 * Exits 0 if none could be reached.
 */
static int flood_worker(void)
{
        int n = each_forkpool_listener(getppid(), flood_one, NULL);
        return n == 0 ? 0 : 1;
}

static void lease_pg_ok(forkpool *fp, const char *pool)
{
        forkpool_lease *lease;
        CHECK_OK(forkpool_acquire(fp, pool, 5000, &lease));
        PGconn *c = forkpool_lease_pg(lease);
        CHECK_MSG(c, "forkpool_lease_pg failed: %s", forkpool_last_error());
        CHECK(strcmp(itest_query(c, "SELECT 1"), "1") == 0);
        CHECK_OK(forkpool_release(lease));
}

static void lease_my_ok(forkpool *fp, const char *pool)
{
        forkpool_lease *lease;
        CHECK_OK(forkpool_acquire(fp, pool, 5000, &lease));
        MYSQL *m = forkpool_lease_mysql(lease);
        CHECK_MSG(m, "forkpool_lease_mysql failed: %s", forkpool_last_error());
        CHECK(itest_my_long(m, "SELECT 1") == 1);
        CHECK_OK(forkpool_release(lease));
}

/* Another uid, outside every allow list, floods our listener: our leases keep working. */
static void test_pg_flood_by_other_uid(void)
{
        struct itest_sup s;
        forkpool *fp;

        itest_sup_start(&s, "it_adopt_flood", NULL, "allow_users = root\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        lease_pg_ok(fp, "main"); /* the listener exists from now on */
        int reached = as_nobody(flood_worker);
        for (int i = 0; i < 3; i++)
                lease_pg_ok(fp, "main");
        CHECK_MSG(reached == 0, "nobody could connect to a forkpool listener");
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

static void test_my_flood_by_other_uid(void)
{
        struct itest_sup s;
        forkpool *fp;

        itest_my_create_db("ita_flood");
        itest_sup_start_url(&s, itest_my_url("ita_flood", NULL), NULL, "allow_users = root\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        lease_my_ok(fp, "main");
        int reached = as_nobody(flood_worker);
        for (int i = 0; i < 3; i++)
                lease_my_ok(fp, "main");
        CHECK_MSG(reached == 0, "nobody could connect to a forkpool listener");
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* Connects to the listener n times from this process; the fds are left open. */
static int stale_connect(const char *name, void *data)
{
        int n = *(int *)data, done = 0;
        for (int i = 0; i < n; i++) {
                int fd = connect_name(name);
                if (fd < 0)
                        continue;
                /* Something that looks like a start: a CancelRequest, then nothing. */
                uint32_t cancel[4] = {htonl(16), htonl(80877102), htonl(1), htonl(2)};
                (void)!write(fd, cancel, i % 2 ? sizeof(cancel) : 4);
                done++;
        }
        return done;
}

/*
 * Connections of our own uid waiting in the backlog — from another process,
 * and from this one (a stale connection of an earlier failure) — are skipped.
 */
static void test_stale_backlog_skipped(void)
{
        struct itest_sup s;
        forkpool *fp;
        int pipefd[2];
        pid_t me = getpid();

        itest_sup_start(&s, "it_adopt_stale", NULL, NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        lease_pg_ok(fp, "main");

        /* Another process of our uid connects and holds its connections open. */
        CHECK(pipe(pipefd) == 0);
        pid_t child = fork();
        if (child == 0) {
                int n = 8;
                close(pipefd[0]);
                int done = each_forkpool_listener(me, stale_connect, &n);
                (void)!write(pipefd[1], &done, sizeof(done));
                pause();
                _exit(0);
        }
        close(pipefd[1]);
        int done = 0;
        CHECK(read(pipefd[0], &done, sizeof(done)) == sizeof(done));
        close(pipefd[0]);
        CHECK_MSG(done > 0, "the same uid could not reach the listener (test broken?)");
        /* And this process leaves some of its own. */
        int n = 4;
        CHECK(each_forkpool_listener(me, stale_connect, &n) > 0);

        int64_t start = itest_now_ms();
        for (int i = 0; i < 3; i++)
                lease_pg_ok(fp, "main");
        /* Skipped at once, not after a timeout each. */
        CHECK_MSG(itest_now_ms() - start < 1500, "3 leases took %lld ms",
                  (long long)(itest_now_ms() - start));
        kill(child, SIGKILL);
        CHECK(itest_wait_child(child, 5000) >= 0);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* The number of forkpool.<pid>.* directories in /tmp[/forkpool-<uid>] and $XDG_RUNTIME_DIR. */
static int dirs_of(pid_t pid)
{
        char own[64];
        snprintf(own, sizeof(own), "/tmp/forkpool-%u", (unsigned)geteuid());
        const char *bases[] = {own, "/tmp", getenv("XDG_RUNTIME_DIR")};
        int n = 0;
        for (size_t i = 0; i < 3; i++) {
                char pat[256];
                glob_t g;
                if (!bases[i] || !*bases[i])
                        continue;
                snprintf(pat, sizeof(pat), "%s/forkpool.%d.*", bases[i], (int)pid);
                if (glob(pat, GLOB_NOSORT, NULL, &g) == 0)
                        n += (int)g.gl_pathc;
                globfree(&g);
        }
        return n;
}

/*
 * A tmp cleaner removes the directory: the next adoption recreates it (the
 * first lease is invalidated, so that its PGconn is not kept and the next
 * lease needs an adoption).
 */
static void test_recovers_when_dir_removed(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        itest_sup_start(&s, "it_adopt_rm", NULL, NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        CHECK(forkpool_lease_pg(lease));
        CHECK_OK(forkpool_invalidate(lease));
        CHECK(dirs_of(getpid()) == 1);
        CHECK(itest_sh(NULL, 0,
                       "rm -rf /tmp/forkpool-%u/forkpool.%d.* /tmp/forkpool.%d.* "
                       "${XDG_RUNTIME_DIR:-/nonexistent}/forkpool.%d.*",
                       (unsigned)geteuid(), (int)getpid(), (int)getpid(), (int)getpid()) == 0);
        CHECK(dirs_of(getpid()) == 0);
        lease_pg_ok(fp, "main");
        lease_pg_ok(fp, "main");
        CHECK(dirs_of(getpid()) == 1);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/*
 * The worker's environment may ask libpq for things our part of the startup
 * cannot give (channel binding, an authentication method): they do not apply
 * to an adopted session, and adoption ignores them.
 */
static void test_environment_cannot_break_adoption(void)
{
        struct itest_sup s;
        forkpool *fp;

        itest_sup_start(&s, "it_adopt_env", NULL, NULL);
        /* Only the worker's: forkpoold (started above) has its own environment. */
        setenv("PGCHANNELBINDING", "require", 1);
        setenv("PGREQUIREAUTH", "scram-sha-256", 1);
        setenv("PGSSLMODE", "verify-full", 1);
        setenv("PGTARGETSESSIONATTRS", "read-write", 1);
        CHECK_OK(forkpool_open(s.socket, &fp));
        lease_pg_ok(fp, "main");
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* A child that leases, then exits normally or is killed. */
static pid_t leasing_child(const struct itest_sup *s, bool die)
{
        pid_t pid = fork();
        if (pid == 0) {
                forkpool *fp;
                CHECK_OK(forkpool_open(s->socket, &fp));
                lease_pg_ok(fp, "main");
                if (die)
                        raise(SIGKILL);
                forkpool_close(fp);
                exit(0);
        }
        return pid;
}

/* Nothing is left after a normal exit; a SIGKILLed process's directory goes with the next. */
static void test_no_leftovers(void)
{
        struct itest_sup s;

        itest_sup_start(&s, "it_adopt_left", NULL, NULL);
        /* The parent's listener exists before the children fork: they make their own. */
        forkpool *fp;
        CHECK_OK(forkpool_open(s.socket, &fp));
        lease_pg_ok(fp, "main");
        CHECK(dirs_of(getpid()) == 1);
        pid_t a = leasing_child(&s, false);
        CHECK(itest_wait_child(a, 10000) == 0);
        CHECK_MSG(dirs_of(a) == 0, "a normal exit left its directory");

        pid_t b = leasing_child(&s, true);
        int status = itest_wait_child(b, 10000);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        CHECK(dirs_of(b) == 1); /* the documented leftover */
        pid_t c = leasing_child(&s, false);
        CHECK(itest_wait_child(c, 10000) == 0);
        CHECK_MSG(dirs_of(b) == 0, "the next process did not remove a dead one's directory");
        CHECK(dirs_of(c) == 0);
        /* Nothing of the parent's was touched by its children. */
        CHECK(dirs_of(getpid()) == 1);
        lease_pg_ok(fp, "main");
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* $XDG_RUNTIME_DIR holds the directory only when it is private to us. */
static void test_xdg_runtime_dir_only_if_private(void)
{
        struct itest_sup s;
        char priv[] = "/tmp/fp-it-xdg.XXXXXX", open_dir[] = "/tmp/fp-it-xdg-open.XXXXXX", pat[256];
        forkpool *fp;

        CHECK(mkdtemp(priv) && mkdtemp(open_dir) && chmod(open_dir, 0777) == 0);
        itest_sup_start(&s, "it_adopt_xdg", NULL, NULL);
        pid_t pid = fork();
        if (pid == 0) {
                setenv("XDG_RUNTIME_DIR", priv, 1);
                CHECK_OK(forkpool_open(s.socket, &fp));
                lease_pg_ok(fp, "main");
                snprintf(pat, sizeof(pat), "ls -d %s/forkpool.%d.* >/dev/null", priv,
                         (int)getpid());
                CHECK_MSG(itest_sh(NULL, 0, "%s", pat) == 0, "not in the private XDG dir");
                forkpool_close(fp);
                exit(0);
        }
        CHECK(itest_wait_child(pid, 10000) == 0);
        pid = fork();
        if (pid == 0) {
                setenv("XDG_RUNTIME_DIR", open_dir, 1);
                CHECK_OK(forkpool_open(s.socket, &fp));
                lease_pg_ok(fp, "main");
                snprintf(pat, sizeof(pat), "ls -d /tmp/forkpool-%u/forkpool.%d.* >/dev/null",
                         (unsigned)geteuid(), (int)getpid());
                CHECK_MSG(itest_sh(NULL, 0, "%s", pat) == 0, "a 0777 XDG dir was used");
                forkpool_close(fp);
                exit(0);
        }
        CHECK(itest_wait_child(pid, 10000) == 0);
        CHECK(itest_sh(NULL, 0, "rmdir %s %s", priv, open_dir) == 0); /* left empty */
        CHECK(itest_sup_stop(&s) == 0);
}

static const char *squat_socket;

/* As daemon: a lease works, its directory is right in /tmp, nothing went into the squat. */
static int lease_as_daemon(void)
{
        forkpool *fp;
        CHECK_OK(forkpool_open(squat_socket, &fp));
        lease_pg_ok(fp, "main");
        if (itest_sh(NULL, 0, "ls -d /tmp/forkpool.%d.* >/dev/null", (int)getpid()) != 0)
                return 2;
        if (itest_sh(NULL, 0, "test -z \"$(ls -A /tmp/forkpool-%u)\"", (unsigned)geteuid()) != 0)
                return 3;
        /* Nobody can reach it from the squatted directory either. */
        forkpool_close(fp);
        exit(0); /* the destructor removes the directory */
}

static int squat_daemon_dir(void)
{
        return itest_sh(NULL, 0, "mkdir /tmp/forkpool-1 && chmod 0777 /tmp/forkpool-1");
}

/* Another user takes /tmp/forkpool-<uid> first: adoption does not use it, and works. */
static void test_parent_dir_taken_by_other_uid(void)
{
        struct itest_sup s;

        itest_sh(NULL, 0, "rm -rf /tmp/forkpool-1"); /* daemon: no process of it adopts here */
        CHECK(as_nobody(squat_daemon_dir) == 0);
        itest_sup_start(&s, "it_adopt_squat", NULL, "allow_users = root, daemon\n");
        squat_socket = s.socket;
        int r = as_user("daemon", lease_as_daemon);
        CHECK_MSG(r == 0, "lease as daemon: %d", r);
        CHECK(itest_sh(NULL, 0,
                       "ls -d /tmp/forkpool.*.* 2>/dev/null | xargs -r stat -c %%U | "
                       "grep -qx daemon") != 0);
        itest_sh(NULL, 0, "rm -rf /tmp/forkpool-1");
        CHECK(itest_sup_stop(&s) == 0);
}

ITEST_MAIN({"pg_flood_by_other_uid", test_pg_flood_by_other_uid, 90},
           {"my_flood_by_other_uid", test_my_flood_by_other_uid, 90},
           {"stale_backlog_skipped", test_stale_backlog_skipped, 60},
           {"recovers_when_dir_removed", test_recovers_when_dir_removed, 60},
           {"no_leftovers", test_no_leftovers, 60},
           {"environment_cannot_break_adoption", test_environment_cannot_break_adoption, 60},
           {"xdg_runtime_dir_only_if_private", test_xdg_runtime_dir_only_if_private, 60},
           {"parent_dir_taken_by_other_uid", test_parent_dir_taken_by_other_uid, 60})
