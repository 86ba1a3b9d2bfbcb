/* SPDX-License-Identifier: MIT */
/*
 * it_shm.c — what another local user can do with /dev/shm: names taken
 * before forkpoold starts do not keep it from starting (and are not read by
 * workers or forkpoolctl), and a fake segment that is replaced and then
 * truncated never kills a worker with SIGBUS. forkpoold runs as `daemon`,
 * the other user is `nobody`, the worker is root.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

/* What the attacker works on: the name prefix of the supervisor's segments. */
static char prefix[FP_SHM_NAME_MAX];

/* Runs fn as uid `nobody` (gid 0) in a child; returns its exit status. */
static int as_nobody(int (*fn)(void))
{
        pid_t pid = itest_fork_as("nobody");
        if (pid == 0)
                _exit(fn());
        return itest_child_exit(pid, 20000);
}

/* A configuration for forkpoold running as daemon, its socket in <dir>/run/; not started. */
static void sup_prepare(struct itest_sup *s, const char *app)
{
        memset(s, 0, sizeof(*s));
        snprintf(s->dir, sizeof(s->dir), "/tmp/fp-it-shm.XXXXXX");
        CHECK(mkdtemp(s->dir));
        chmod(s->dir, 0755);
        snprintf(s->socket, sizeof(s->socket), "%s/run/forkpool.sock", s->dir);
        snprintf(s->config, sizeof(s->config), "%s/forkpool.conf", s->dir);
        snprintf(s->log, sizeof(s->log), "%s/forkpoold.log", s->dir);
        FILE *f = fopen(s->config, "w");
        CHECK(f);
        fprintf(f,
                "[forkpool]\nsocket = %s\nuser = daemon\nshutdown_grace = 5\n[pool main]\nurl = "
                "%s\n",
                s->socket, itest_url(app));
        fclose(f);
        chmod(s->config, 0600);
        fp_segment_name(s->socket, prefix);
}

/* A complete, valid-looking segment named name, owned by whoever runs this, pool "main". */
static int fake_segment(const char *name, unsigned mode)
{
        struct fp_segment seg;
        if (fp_segment_create(&seg, name, 1, 2, mode, -1) < 0)
                return 1;
        snprintf(fp_segment_pool(&seg, 0)->name, FP_SHM_POOL_NAME_MAX, "main");
        fp_segment_pool(&seg, 0)->slot_count = 2;
        fp_segment_pool(&seg, 0)->pool_size = 777;
        seg.hdr->started_usec = UINT64_MAX / 2; /* newer than anything */
        fp_segment_close(&seg);
        return 0;
}

/* As the attacker: the bare prefix (the old predictable name), and names of the new form. */
static int squat_names(void)
{
        char name[FP_SHM_NAME_MAX + 32];
        if (fake_segment(prefix, 0644))
                return 1;
        snprintf(name, sizeof(name), "%s.0000000000000000", prefix);
        if (fake_segment(name, 0644))
                return 2;
        snprintf(name, sizeof(name), "%s.ffffffffffffffff", prefix);
        if (fake_segment(name, 0666))
                return 3;
        return 0;
}

/* As the attacker: truncate whatever we created to nothing. */
static int truncate_names(void)
{
        char path[128];
        const char *suffixes[] = {"", ".0000000000000000", ".ffffffffffffffff"};
        int failed = 0;
        for (size_t i = 0; i < 3; i++) {
                snprintf(path, sizeof(path), "/dev/shm%s%s", prefix, suffixes[i]);
                if (truncate(path, 0) < 0)
                        failed++;
        }
        return failed;
}

static void remove_names(void)
{
        itest_sh(NULL, 0,
                 "rm -f /dev/shm%s /dev/shm%s.0000000000000000 /dev/shm%s.ffffffffffffffff", prefix,
                 prefix, prefix);
}

/* Names taken in advance by nobody: forkpoold (as daemon) starts, and nobody's data is not read. */
static void test_precreated_names(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_pool_stats st = FORKPOOL_POOL_STATS_INIT;
        char out[8192];

        sup_prepare(&s, "it_shm_squat");
        CHECK_MSG(as_nobody(squat_names) == 0, "nobody could not create the names");
        itest_sup_restart(&s); /* fails the test unless it comes up */

        struct fp_shm_pool pool = itest_pool(&s);
        CHECK_MSG(pool.pool_size != 777, "a reader took nobody's segment");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_pool_state(fp, "main", &st));
        CHECK(st.pool_size != 777);
        forkpool_close(fp);
        CHECK(itest_sh(out, sizeof(out), "%s --socket %s status --json", FP_FORKPOOLCTL_PATH,
                       s.socket) == 0);
        CHECK_MSG(strstr(out, "\"main\"") && !strstr(out, "777"), "%s", out);

        /* The segment is daemon's, 0640; nobody's files are left alone. */
        char path[128];
        struct stat sb;
        itest_segment_path(s.socket, path, sizeof(path));
        CHECK(stat(path, &sb) == 0 && sb.st_uid == 1 && (sb.st_mode & 0777) == 0640);
        snprintf(path, sizeof(path), "/dev/shm%s", prefix);
        CHECK(stat(path, &sb) == 0 && sb.st_uid == 65534);
        CHECK(itest_sup_stop(&s) == 0);
        remove_names();
}

/* A socket file at path owned by uid, as a supervisor killed before unlinking it leaves. */
static void leave_socket(const char *path, uid_t uid)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        CHECK(strlen(path) < sizeof(addr.sun_path));
        memcpy(addr.sun_path, path, strlen(path) + 1);
        unlink(path);
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
        CHECK(chown(path, uid, (gid_t)-1) == 0);
        close(fd);
}

/*
 * forkpoold is gone; nobody plants valid-looking segments under every name a
 * worker might open, lets the worker look, then truncates them. The worker
 * (a child) must not die of SIGBUS.
 */
static void test_truncated_fake_never_kills_worker(void)
{
        struct itest_sup s;
        int ready[2], go[2];

        sup_prepare(&s, "it_shm_trunc");
        itest_sup_restart(&s);
        CHECK(pipe(ready) == 0 && pipe(go) == 0);
        pid_t worker = fork();
        if (worker == 0) {
                forkpool *fp;
                forkpool_pool_stats st = FORKPOOL_POOL_STATS_INIT;
                char c;
                close(ready[0]);
                close(go[1]);
                CHECK_OK(forkpool_open(s.socket, &fp));
                CHECK(write(ready[1], "o", 1) == 1); /* connected */
                CHECK(read(go[0], &c, 1) == 1);
                int r1 = forkpool_pool_state(fp, "main", &st); /* after the squat */
                CHECK(write(ready[1], "l", 1) == 1);
                CHECK(read(go[0], &c, 1) == 1);
                int r2 = forkpool_pool_state(fp, "main", &st); /* after the truncation */
                (void)r2;
                /* Whatever it says, it must never have taken nobody's numbers. */
                _exit(r1 == 0 && st.pool_size == 777 ? 3 : 0);
        }
        close(ready[1]);
        close(go[0]);
        char c;
        CHECK(read(ready[0], &c, 1) == 1);

        /* The supervisor stops (its segment goes); its socket is still there. */
        kill(s.pid, SIGTERM);
        CHECK(itest_wait_child(s.pid, 15000) == 0);
        s.pid = 0;
        leave_socket(s.socket, 1);
        CHECK_MSG(as_nobody(squat_names) == 0, "nobody could not create the names");
        CHECK(write(go[1], "1", 1) == 1);
        CHECK(read(ready[0], &c, 1) == 1);
        CHECK(as_nobody(truncate_names) == 0);
        CHECK(write(go[1], "2", 1) == 1);

        int status = itest_wait_child(worker, 10000);
        CHECK_MSG(status >= 0 && !WIFSIGNALED(status), "the worker died of signal %d",
                  WTERMSIG(status));
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the worker read nobody's segment (exit %d)", WEXITSTATUS(status));
        remove_names();
        (void)itest_sup_stop(&s); /* only removes the directory */
}

ITEST_MAIN({"precreated_names", test_precreated_names, 60},
           {"truncated_fake_never_kills_worker", test_truncated_fake_never_kills_worker, 60})
