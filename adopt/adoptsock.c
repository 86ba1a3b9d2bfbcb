/* SPDX-License-Identifier: MIT */
/*
 * adoptsock.c — the private listener that libpq / Connector/C connect to
 * while we play their server's startup (adoptsock.h).
 *
 * Why a socket file in a fresh 0700 directory, once per process:
 *
 * - It must be unreachable for every other uid. An abstract socket (what this
 *   used to be) has no permissions and its name is listed in the
 *   world-readable /proc/net/unix: any local user could fill its backlog and
 *   make every later adoption of the process fail. A directory created by
 *   mkdtemp(3) with mode 0700 cannot be traversed by another uid, so nobody
 *   else can connect() to the socket in it (and its random name cannot be
 *   taken in advance). Our own uid can: it could ptrace us anyway, and what
 *   it connects is still skipped (SO_PEERCRED pid, then the protocol check of
 *   the caller). If it fills the backlog, the library's connect fails, the
 *   adoption recreates the listener (a fresh, empty backlog) and tries once
 *   more. No drain before each adoption: an accept4() that finds nothing
 *   costs about 3.5 µs here, 15% of an adoption, for nothing the skip and
 *   the recreation do not already cover.
 *
 * - It must be cheap: adoption is on the lease path (about 20 µs). Creating
 *   a directory and a socket per adoption and removing both once the library
 *   has connected leaves nothing behind ever, but costs three metadata
 *   operations per lease; measured on ext4 /tmp that is about 165 µs instead
 *   of 12 µs for the connect/accept pair. Once per process, what an
 *   adoption pays is the path lookup instead of the abstract name's hash:
 *   fp_pg_adopt median 22.4–22.8 µs before, 23.1–23.2 after; fp_my_adopt
 *   22.8–25.6 before, 24.3–24.5 after (n=3000, 3 runs each, ext4 /tmp).
 *
 * - It must not pile up. The directory and socket are removed when the
 *   process exits normally (a destructor) and when an adoption failed (the
 *   listener is recreated, see fp_adopt_listener_reset). A process killed by
 *   SIGKILL or ending with _exit() leaves one empty-but-for-a-socket
 *   directory, forkpool.<pid>.XXXXXX; the next process of the same uid that
 *   opens a listener removes every such directory whose pid is gone. So at
 *   most one directory per dead process of ours remains, until the next one
 *   adopts. (A process of our uid in another pid namespace may have its
 *   directory removed early: its next adoption fails once, recreates it and
 *   succeeds.)
 *
 * - Where: $XDG_RUNTIME_DIR when it is private to us, else /tmp/forkpool-<uid>
 *   (0700, ours; it stays, one per uid), so that the sweep reads a
 *   directory of ours alone and not all of /tmp. That name is predictable:
 *   if it is not a directory of ours with mode 0700, /tmp itself is used
 *   (still safe, as the per-process directory is 0700; only the sweep is
 *   skipped), so another user taking it changes nothing but that.
 */
#include "adoptsock.h"
#include "selfpid.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DIR_PREFIX     "forkpool."
#define BACKLOG        64
#define REGISTRY_SLOTS 4

/* The listeners to remove at exit (module statics; registered once, never freed). */
static struct fp_adopt_listener *registry[REGISTRY_SLOTS];
static unsigned registry_count;
/* The process that last swept stale directories (once per process). */
static pid_t swept_pid;

static void registry_add(struct fp_adopt_listener *l)
{
        if (l->registered)
                return;
        unsigned i = __atomic_fetch_add(&registry_count, 1, __ATOMIC_ACQ_REL);
        if (i < REGISTRY_SLOTS)
                __atomic_store_n(&registry[i], l, __ATOMIC_RELEASE);
        l->registered = true;
}

/* Removes the files in directory name (under dirfd base) and the directory itself. */
static void remove_dir_at(int base, const char *name)
{
        int fd = openat(base, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
                DIR *d = fdopendir(fd);
                if (d) {
                        struct dirent *e;
                        while ((e = readdir(d)))
                                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                                        (void)unlinkat(fd, e->d_name, 0);
                        closedir(d);
                } else {
                        close(fd);
                }
        }
        (void)unlinkat(base, name, AT_REMOVEDIR);
}

/* Removes our uid's forkpool.<pid>.XXXXXX directories in base whose process is gone. */
static void sweep_stale(const char *base)
{
        int bfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (bfd < 0)
                return;
        int scan = dup(bfd);
        DIR *d = scan >= 0 ? fdopendir(scan) : NULL;
        if (!d) {
                if (scan >= 0)
                        close(scan);
                close(bfd);
                return;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
                if (strncmp(e->d_name, DIR_PREFIX, strlen(DIR_PREFIX)) != 0)
                        continue;
                const char *p = e->d_name + strlen(DIR_PREFIX);
                char *end;
                long pid = strtol(p, &end, 10);
                if (end == p || *end != '.' || strlen(end + 1) != 6 || pid <= 0 ||
                    pid == fp_self_pid())
                        continue;
                struct stat st;
                if (fstatat(bfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode) ||
                    st.st_uid != geteuid() || (st.st_mode & 0077))
                        continue;
                if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
                        continue;
                remove_dir_at(bfd, e->d_name);
        }
        closedir(d);
        close(bfd);
}

/*
 * Where this process's directory goes, into buf (FP_ADOPT_SOCK_PATH_MAX):
 * $XDG_RUNTIME_DIR if it is a private directory of ours; else our own
 * /tmp/forkpool-<uid> (0700, created if missing), so that sweeping reads
 * only our own entries and not all of /tmp (think of PHP's session files);
 * else, if someone else has taken that name, /tmp itself. Returns 1 if buf
 * is a directory of ours alone (worth sweeping), 0 for /tmp, or a negative
 * errno.
 */
static int parent_dir(char *buf)
{
        const char *x = secure_getenv("XDG_RUNTIME_DIR");
        struct stat st;

        /* Room for "/forkpool.<pid>.XXXXXX/.s.PGSQL.5432" within sun_path. */
        if (x && x[0] == '/' && strlen(x) < 64 && stat(x, &st) == 0 && S_ISDIR(st.st_mode) &&
            st.st_uid == geteuid() && !(st.st_mode & 0077)) {
                snprintf(buf, FP_ADOPT_SOCK_PATH_MAX, "%s", x);
                return 1;
        }
        if (stat("/tmp", &st) < 0)
                return -errno;
        /* Others may create entries in /tmp, but never remove or rename ours. */
        if (!S_ISDIR(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
            ((st.st_mode & 0022) && !(st.st_mode & S_ISVTX)))
                return -EPERM;

        /* A predictable name: trusted only if it is, without a doubt, ours. */
        snprintf(buf, FP_ADOPT_SOCK_PATH_MAX, "/tmp/forkpool-%u", (unsigned)geteuid());
        if (mkdir(buf, 0700) < 0 && errno != EEXIST)
                return -errno;
        int fd = open(buf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        bool ours = fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) &&
                    st.st_uid == geteuid() &&
                    ((st.st_mode & 07777) == 0700 || fchmod(fd, 0700) == 0);
        if (fd >= 0)
                close(fd);
        if (ours)
                return 1;
        snprintf(buf, FP_ADOPT_SOCK_PATH_MAX, "/tmp");
        return 0;
}

/* Binds a new listening socket at l->path. */
static int bind_listen(struct fp_adopt_listener *l)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        int fd, r;

        if (strlen(l->path) >= sizeof(addr.sun_path))
                return -ENAMETOOLONG;
        memcpy(addr.sun_path, l->path, strlen(l->path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, BACKLOG) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int fp_adopt_listener_open(struct fp_adopt_listener *l)
{
        pid_t pid = fp_self_pid();
        uid_t uid = geteuid();
        char base[FP_ADOPT_SOCK_PATH_MAX];
        int fd, r;

        if (l->fd >= 0 && l->pid == pid && l->uid == uid)
                return 0;
        fp_adopt_listener_reset(l);

        r = parent_dir(base);
        if (r < 0)
                return r;
        if (r > 0 && __atomic_load_n(&swept_pid, __ATOMIC_RELAXED) != pid) {
                __atomic_store_n(&swept_pid, pid, __ATOMIC_RELAXED);
                sweep_stale(base);
        }
        if (snprintf(l->dir, sizeof(l->dir), "%s/" DIR_PREFIX "%d.XXXXXX", base, (int)pid) >=
                    (int)sizeof(l->dir) ||
            snprintf(l->path, sizeof(l->path), "%s/%s", l->dir, l->sock_name) >=
                    (int)sizeof(l->path)) {
                l->dir[0] = l->path[0] = '\0';
                return -ENAMETOOLONG;
        }
        /* mkdtemp creates it 0700 (less under an odd umask: then say so explicitly). */
        if (!mkdtemp(l->dir)) {
                r = -errno;
                l->dir[0] = l->path[0] = '\0';
                return r;
        }
        (void)chmod(l->dir, 0700);
        /* The X's were replaced in dir: rebuild the path (same length as checked above). */
        size_t dlen = strlen(l->dir);
        l->path[dlen] = '/';
        memcpy(l->path, l->dir, dlen);

        fd = bind_listen(l);
        if (fd < 0) {
                (void)rmdir(l->dir);
                l->dir[0] = l->path[0] = '\0';
                return fd;
        }
        l->fd = fd;
        l->pid = pid;
        l->uid = uid;
        registry_add(l);
        return 0;
}

void fp_adopt_listener_reset(struct fp_adopt_listener *l)
{
        if (l->fd >= 0)
                close(l->fd); /* in a child after fork: only our copy */
        /* The files are the parent's if we are its child: leave them. */
        if (l->fd >= 0 && l->pid == fp_self_pid() && l->dir[0]) {
                (void)unlink(l->path);
                (void)rmdir(l->dir);
        }
        l->fd = -1;
        l->dir[0] = l->path[0] = '\0';
}

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fp_adopt_listener_accept(struct fp_adopt_listener *l, int timeout_ms)
{
        int64_t deadline = now_ms() + timeout_ms;

        for (;;) {
                int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        int64_t left = deadline - now_ms();
                        if (left <= 0)
                                return -ETIMEDOUT;
                        struct pollfd p = {.fd = l->fd, .events = POLLIN};
                        if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
                                return -errno;
                        continue;
                }
                struct ucred cred;
                socklen_t clen = sizeof(cred);
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 &&
                    cred.pid == fp_self_pid())
                        return fd;
                close(fd); /* not ours: skip it */
                if (now_ms() >= deadline)
                        return -ETIMEDOUT;
        }
}

/* At normal exit: remove this process's directories (never a parent's). */
__attribute__((destructor)) static void adoptsock_cleanup(void)
{
        unsigned n = __atomic_load_n(&registry_count, __ATOMIC_ACQUIRE);
        for (unsigned i = 0; i < n && i < REGISTRY_SLOTS; i++) {
                struct fp_adopt_listener *l = __atomic_load_n(&registry[i], __ATOMIC_ACQUIRE);
                if (l && l->fd >= 0 && l->pid == fp_self_pid())
                        fp_adopt_listener_reset(l);
        }
}
