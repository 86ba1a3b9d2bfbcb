/* SPDX-License-Identifier: MIT */
/*
 * it_mysql.c — what is particular to MySQL/MariaDB pools, against the real
 * MariaDB that tests/run.sh starts: result sets (stored and unbuffered),
 * prepared statements and their re-execution, multi-statements only where
 * the pool's URL enables them, escaping under the mirrored character set,
 * mysql_change_user(), a capability mismatch refused with a clear error,
 * KILL QUERY through forkpool_cancel(), the reset modes (rollback keeps
 * session state, discard and auto clear it), releases that are not at a
 * protocol boundary, statements left prepared, TCP, URLs refused, and the
 * per-process cache of released handles (reused only by the process that
 * released them, only while the session is as the handle believes).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <errmsg.h>

#include "itest.h"
#include "myadopt.h"
#include "proto.h"
#include "sockio.h"

/* Starts forkpoold with pool "main" on a fresh database db (URL query extra). */
static void start(struct itest_sup *s, const char *db, const char *extra, const char *lines)
{
        itest_my_create_db(db);
        itest_sup_start_url(s, itest_my_url(db, extra), lines, NULL);
}

static MYSQL *adopt(forkpool_lease *lease)
{
        MYSQL *m = forkpool_lease_mysql(lease);
        CHECK_MSG(m, "adoption failed: %s (%s)", strerror(errno), forkpool_last_error());
        return m;
}

static long session_id(MYSQL *m)
{
        return itest_my_long(m, "SELECT CONNECTION_ID()");
}

static void test_results(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        start(&s, "itm_results", NULL, "pool_size = 1\nmax_overflow = 0\n");
        MYSQL *admin = itest_my_admin("itm_results");
        itest_my_query(admin, "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20))");
        itest_my_query(admin, "INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three')");

        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        /* The handle mirrors the real session. */
        CHECK(mysql_thread_id(m) == (unsigned long)forkpool_lease_backend_pid(lease));
        CHECK(session_id(m) == forkpool_lease_backend_pid(lease));
        CHECK(strcmp(mysql_get_server_info(m), mysql_get_server_info(admin)) == 0);
        CHECK(strcmp(mysql_character_set_name(m), "utf8mb4") == 0);
        CHECK(m->db && strcmp(m->db, "itm_results") == 0);
        errno = 0;
        CHECK(forkpool_lease_pg(lease) == NULL && errno == EOPNOTSUPP);

        /* A stored result. */
        CHECK(mysql_query(m, "SELECT id, name FROM t ORDER BY id") == 0);
        MYSQL_RES *res = mysql_store_result(m);
        CHECK(res && mysql_num_rows(res) == 3 && mysql_num_fields(res) == 2);
        MYSQL_ROW row = mysql_fetch_row(res);
        CHECK(strcmp(row[0], "1") == 0 && strcmp(row[1], "one") == 0);
        mysql_free_result(res);
        /* An unbuffered one, read to the end. */
        CHECK(mysql_query(m, "SELECT name FROM t ORDER BY id DESC") == 0);
        res = mysql_use_result(m);
        int n = 0;
        while ((row = mysql_fetch_row(res)))
                n++;
        CHECK(n == 3);
        mysql_free_result(res);
        /* Writes, affected rows, insert ids. */
        CHECK(mysql_query(m, "UPDATE t SET name = UPPER(name) WHERE id > 1") == 0);
        CHECK(mysql_affected_rows(m) == 2);
        CHECK(mysql_query(m, "CREATE TABLE a (id INT AUTO_INCREMENT PRIMARY KEY, v INT)") == 0);
        CHECK(mysql_query(m, "INSERT INTO a (v) VALUES (7)") == 0);
        CHECK(mysql_insert_id(m) == 1);
        /* An SQL error leaves the session usable. */
        CHECK(mysql_query(m, "SELECT * FROM nope") != 0 && mysql_errno(m) == 1146);
        CHECK(mysql_query(m, "SELECT 1") == 0);
        mysql_free_result(mysql_store_result(m));
        CHECK_OK(forkpool_release(lease));

        usleep(100000);
        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.counters.invalidations == 0 && st.checked_in == 1);
        CHECK(itest_my_long(admin, "SELECT COUNT(*) FROM t WHERE name = 'TWO'") == 1);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        mysql_close(admin);
}

static long prepared_count(MYSQL *admin)
{
        MYSQL_RES *res;
        MYSQL_ROW row;
        long v = -1;

        CHECK(mysql_query(admin, "SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'") == 0);
        res = mysql_store_result(admin);
        if ((row = mysql_fetch_row(res)))
                v = atol(row[1]);
        mysql_free_result(res);
        return v;
}

static void test_prepared_statements(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        start(&s, "itm_stmt", NULL, "pool_size = 1\nmax_overflow = 0\n");
        MYSQL *admin = itest_my_admin("itm_stmt");
        itest_my_query(admin, "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20))");
        long before = prepared_count(admin);

        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        MYSQL_STMT *ins = mysql_stmt_init(m);
        const char *sql = "INSERT INTO t VALUES (?, ?)";
        CHECK_MSG(mysql_stmt_prepare(ins, sql, strlen(sql)) == 0, "%s", mysql_stmt_error(ins));
        CHECK(mysql_stmt_param_count(ins) == 2);
        for (int i = 1; i <= 3; i++) {
                int id = i;
                char name[16];
                unsigned long len = (unsigned long)snprintf(name, sizeof(name), "n%d", i);
                MYSQL_BIND b[2];
                memset(b, 0, sizeof(b));
                b[0].buffer_type = MYSQL_TYPE_LONG;
                b[0].buffer = &id;
                b[1].buffer_type = MYSQL_TYPE_STRING;
                b[1].buffer = name;
                b[1].buffer_length = len;
                b[1].length = &len;
                CHECK(mysql_stmt_bind_param(ins, b) == 0);
                CHECK_MSG(mysql_stmt_execute(ins) == 0, "%s", mysql_stmt_error(ins));
                CHECK(mysql_stmt_affected_rows(ins) == 1);
        }
        CHECK(mysql_stmt_close(ins) == 0);

        /* A SELECT executed twice: the second one may use cached metadata. */
        MYSQL_STMT *sel = mysql_stmt_init(m);
        sql = "SELECT id, name FROM t WHERE id >= ? ORDER BY id";
        CHECK(mysql_stmt_prepare(sel, sql, strlen(sql)) == 0);
        for (int round = 0; round < 2; round++) {
                int from = round + 1, id = 0;
                char name[16];
                unsigned long name_len = 0;
                MYSQL_BIND p, r[2];
                memset(&p, 0, sizeof(p));
                memset(r, 0, sizeof(r));
                p.buffer_type = MYSQL_TYPE_LONG;
                p.buffer = &from;
                r[0].buffer_type = MYSQL_TYPE_LONG;
                r[0].buffer = &id;
                r[1].buffer_type = MYSQL_TYPE_STRING;
                r[1].buffer = name;
                r[1].buffer_length = sizeof(name);
                r[1].length = &name_len;
                CHECK(mysql_stmt_bind_param(sel, &p) == 0);
                CHECK_MSG(mysql_stmt_execute(sel) == 0, "%s", mysql_stmt_error(sel));
                CHECK(mysql_stmt_bind_result(sel, r) == 0);
                CHECK(mysql_stmt_store_result(sel) == 0);
                CHECK(mysql_stmt_num_rows(sel) == (my_ulonglong)(3 - round));
                CHECK(mysql_stmt_fetch(sel) == 0);
                CHECK(id == from && name_len == 2 && memcmp(name, "n", 1) == 0);
                while (mysql_stmt_fetch(sel) == 0)
                        ;
                mysql_stmt_free_result(sel);
        }
        /* Left prepared at release: closed on the server, the handle only to be freed. */
        CHECK(prepared_count(admin) == before + 1);
        CHECK_OK(forkpool_release(lease));
        usleep(200000);
        CHECK_MSG(prepared_count(admin) == before, "%ld statements prepared, %ld before",
                  prepared_count(admin), before);
        CHECK(mysql_stmt_close(sel) == 0 || 1);

        /* The session is fine for the next holder. */
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        m = adopt(lease);
        CHECK(itest_my_long(m, "SELECT COUNT(*) FROM t") == 3);
        CHECK_OK(forkpool_release(lease));
        usleep(100000);
        CHECK(itest_pool(&s).counters.invalidations == 0);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        mysql_close(admin);
}

/* Multi-statements work where the pool negotiated them, and only there. */
static void test_multi_statements(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        start(&s, "itm_multi", NULL, "pool_size = 1\nmax_overflow = 0\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        CHECK(!(m->client_flag & CLIENT_MULTI_STATEMENTS));
        CHECK(mysql_query(m, "SELECT 1; SELECT 2") != 0 && mysql_errno(m) == 1064);
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);

        start(&s, "itm_multi", "multi_statements=true", "pool_size = 1\nmax_overflow = 0\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        m = adopt(lease);
        CHECK(m->client_flag & CLIENT_MULTI_STATEMENTS);
        CHECK_MSG(mysql_query(m, "SELECT 1; SELECT 2, 3; DO 4") == 0, "%s", mysql_error(m));
        int sets = 0, status;
        do {
                MYSQL_RES *res = mysql_store_result(m);
                if (res) {
                        sets++;
                        mysql_free_result(res);
                }
        } while ((status = mysql_next_result(m)) == 0);
        CHECK(status == -1 && sets == 2);
        CHECK_OK(forkpool_release(lease));
        usleep(100000);
        CHECK(itest_pool(&s).counters.invalidations == 0);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* Escaping follows the mirrored character set (gbk: 0xbf27 must not become 0xbf5c27). */
static void test_escape_charset(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        const char raw[] = "\xbf\x27 OR 1=1 -- \xe4\xb8\x80";
        char esc[2 * sizeof(raw) + 1], sql[256], hex[2 * sizeof(raw) + 1];

        start(&s, "itm_charset", "charset=gbk", "pool_size = 1\nmax_overflow = 0\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        CHECK(strcmp(mysql_character_set_name(m), "gbk") == 0);
        CHECK(strcmp(itest_my_query(m, "SELECT @@character_set_client"), "gbk") == 0);
        mysql_real_escape_string(m, esc, raw, sizeof(raw) - 1);
        snprintf(sql, sizeof(sql), "SELECT HEX('%s')", esc);
        for (size_t i = 0; i < sizeof(raw) - 1; i++)
                snprintf(hex + 2 * i, 3, "%02X", (unsigned char)raw[i]);
        CHECK_MSG(strcmp(itest_my_query(m, sql), hex) == 0, "escaped under the wrong charset");

        /* A character set the worker sets is the session's: the next lease mirrors it. */
        long id = session_id(m);
        CHECK(mysql_set_character_set(m, "latin1") == 0);
        CHECK_OK(forkpool_release(lease));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        m = adopt(lease);
        CHECK(session_id(m) == id);
        CHECK(strcmp(mysql_character_set_name(m), "latin1") == 0);
        CHECK(strcmp(itest_my_query(m, "SELECT @@character_set_client"), "latin1") == 0);
        /* Even one changed by a statement (the server reports it). */
        itest_my_query(m, "SET NAMES utf8mb4");
        CHECK(strcmp(mysql_character_set_name(m), "utf8mb4") == 0);
        CHECK_OK(forkpool_release(lease));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        m = adopt(lease);
        CHECK(strcmp(mysql_character_set_name(m), "utf8mb4") == 0);
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

static void test_change_user(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        const char *user = getenv("FORKPOOL_TEST_MY_USER");
        const char *password = getenv("FORKPOOL_TEST_MY_PASSWORD");

        start(&s, "itm_chuser", NULL, "pool_size = 1\nmax_overflow = 0\n");
        MYSQL *admin = itest_my_admin(NULL);
        itest_my_query(admin, "DROP USER IF EXISTS 'itm_other'@'localhost'");
        itest_my_query(admin, "CREATE USER 'itm_other'@'localhost' IDENTIFIED BY 'other-pw'");
        itest_my_query(admin, "GRANT SELECT ON itm_chuser.* TO 'itm_other'@'localhost'");
        CHECK_OK(forkpool_open(s.socket, &fp));
        for (int round = 0; round < 2; round++) {
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
                MYSQL *m = adopt(lease);
                long id = session_id(m);
                /* The real scramble in the greeting makes the server accept it. */
                CHECK_MSG(mysql_change_user(m, "itm_other", "other-pw", "itm_chuser") == 0,
                          "round %d: %s", round, mysql_error(m));
                CHECK(strcmp(itest_my_query(m, "SELECT CURRENT_USER()"), "itm_other@localhost") ==
                      0);
                CHECK(session_id(m) == id);
                CHECK(mysql_change_user(m, user, password, "itm_chuser") == 0);
                CHECK(strncmp(itest_my_query(m, "SELECT CURRENT_USER()"), user, strlen(user)) == 0);
                CHECK_OK(forkpool_release(lease));
        }
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        itest_my_query(admin, "DROP USER 'itm_other'@'localhost'");
        mysql_close(admin);
}

/*
 * A lease whose session negotiated other capabilities than this library asks
 * for is refused with a clear error, and nothing reaches the real session.
 * A stand-in supervisor hands out a real session with a doctored description.
 */
static void fake_supervisor(const char *path, int mode, int result_fd)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        union {
                struct fp_msg_hdr hdr;
                char bytes[FP_MSG_MAX];
        } in;
        int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
        CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
        CHECK(listen(lfd, 4) == 0);
        CHECK(write(result_fd, "L", 1) == 1); /* listening */
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        CHECK(cfd >= 0);
        MYSQL *m = itest_my_admin("itm_mismatch");
        for (;;) {
                int channel = -1;
                ssize_t n = fp_recv_msg(cfd, in.bytes, sizeof(in), &channel, 0);
                if (n <= 0)
                        break;
                if (channel >= 0)
                        close(channel); /* a hello's release channel: not taken, releases come here
                                         */
                if (in.hdr.op == FP_OP_HELLO) {
                        struct fp_msg_hello_ok ok;
                        fp_msg_init(&ok.hdr, FP_OP_HELLO_OK, sizeof(ok), in.hdr.request_id);
                        ok.supervisor_pid = getpid();
                        CHECK(fp_send_msg(cfd, &ok, sizeof(ok), -1, 0) == 0);
                } else if (in.hdr.op == FP_OP_ACQUIRE) {
                        struct fp_msg_lease lease;
                        struct fp_lease_mysql *my = &lease.my;
                        unsigned long caps = 0, ext = 0;
                        MY_CHARSET_INFO cs;
                        fp_msg_init(&lease.hdr, FP_OP_LEASE, sizeof(lease), in.hdr.request_id);
                        lease.lease_id = 1;
                        lease.db_kind = FP_DB_MYSQL;
                        lease.txn = FP_TXN_IDLE;
                        mariadb_get_infov(m, MARIADB_CONNECTION_SERVER_CAPABILITIES, &caps);
                        mariadb_get_infov(m, MARIADB_CONNECTION_EXTENDED_SERVER_CAPABILITIES, &ext);
                        mysql_get_character_set_info(m, &cs);
                        my->thread_id = (uint32_t)mysql_thread_id(m);
                        my->protocol_version = 10;
                        my->server_capabilities = (uint32_t)caps;
                        my->server_ext_capabilities = (uint32_t)ext;
                        my->client_flag = (uint32_t)m->client_flag;
                        my->client_ext_flag = (uint32_t)ext & FP_MY_CLIENT_EXT_FLAGS;
                        my->server_language = m->server_language;
                        my->server_status = m->server_status;
                        my->charset_nr = cs.number;
                        snprintf(my->server_version, sizeof(my->server_version), "%s",
                                 mysql_get_server_info(m));
                        snprintf(my->charset, sizeof(my->charset), "%s", cs.csname);
                        snprintf(my->user, sizeof(my->user), "%s", m->user);
                        snprintf(my->db, sizeof(my->db), "%s", m->db);
                        memcpy(my->scramble, m->scramble_buff, sizeof(my->scramble));
                        if (mode == 0)
                                /* As if the session had been opened by a library without it. */
                                my->client_flag &= ~(uint32_t)CLIENT_SESSION_TRACKING;
                        else if (mode == 1)
                                my->client_ext_flag ^= 1u << 4; /* MARIADB_CLIENT_CACHE_METADATA */
                        else
                                my->charset_nr = 8; /* latin1, for a utf8mb4 session */
                        CHECK(fp_send_msg(cfd, &lease, sizeof(lease), mysql_get_socket(m), 0) == 0);
                } else if (in.hdr.op == FP_OP_RELEASE) {
                        /* The real session never saw a byte of the refused adoption. */
                        bool ok = mysql_query(m, "SELECT 1") == 0;
                        if (ok)
                                mysql_free_result(mysql_store_result(m));
                        CHECK(write(result_fd, ok ? "Y" : "N", 1) == 1);
                }
        }
        mysql_close(m);
        _exit(0);
}

static void mismatch(int mode, const char *expect)
{
        char dir[] = "/tmp/fp-itm.XXXXXX", path[128], c;
        int result[2];
        forkpool *fp;
        forkpool_lease *lease;

        itest_my_create_db("itm_mismatch");
        CHECK(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/fake.sock", dir);
        CHECK(pipe(result) == 0);
        pid_t pid = fork();
        if (pid == 0)
                fake_supervisor(path, mode, result[1]);
        CHECK(read(result[0], &c, 1) == 1 && c == 'L');
        CHECK_OK(forkpool_open(path, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        errno = 0;
        CHECK(forkpool_lease_mysql(lease) == NULL);
        CHECK_MSG(errno == EPROTO, "errno %d (%s)", errno, strerror(errno));
        CHECK_MSG(strstr(forkpool_last_error(), expect), "error: %s", forkpool_last_error());
        CHECK(strchr(forkpool_last_error(), '\n') == NULL);
        CHECK_OK(forkpool_release(lease));
        CHECK(read(result[0], &c, 1) == 1);
        CHECK_MSG(c == 'Y', "the real session was disturbed");
        forkpool_close(fp);
        CHECK(itest_wait_child(pid, 5000) == 0);
        unlink(path);
        rmdir(dir);
}

static void test_capability_mismatch(void)
{
        mismatch(0, "capability mismatch: this process's MySQL client library asks for "
                    "capabilities");
        mismatch(1, "MariaDB extended capabilities");
        mismatch(2, "character set mismatch");
}

struct sleeper {
        MYSQL *m;
        int result;
        unsigned int error;
        int64_t took_ms;
        char value[16];
};

static void *sleep_thread(void *arg)
{
        struct sleeper *sl = arg;
        int64_t t0 = itest_now_ms();
        sl->result = mysql_query(sl->m, "SELECT SLEEP(30)");
        sl->error = mysql_errno(sl->m);
        if (sl->result == 0) {
                /* The interruption may come after the result's metadata. */
                MYSQL_RES *res = mysql_store_result(sl->m);
                MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
                snprintf(sl->value, sizeof(sl->value), "%s", row && row[0] ? row[0] : "");
                if (!res)
                        sl->error = mysql_errno(sl->m);
                mysql_free_result(res);
        }
        sl->took_ms = itest_now_ms() - t0;
        return NULL;
}

/* forkpool_cancel() = KILL QUERY from forkpoold: SLEEP(30) stops, the session lives on. */
static void test_cancel(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        pthread_t thread;
        struct sleeper sl = {0};

        start(&s, "itm_cancel", NULL, "pool_size = 1\nmax_overflow = 0\n");
        CHECK_OK(forkpool_open(s.socket, &fp));

        /*
         * A cancel with nothing running, then a release at once: the KILL
         * (which first needs forkpoold's KILL connection opened) must not hit
         * the next holder's query.
         */
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        long id = session_id(m);
        CHECK_OK(forkpool_cancel(lease));
        CHECK_OK(forkpool_release(lease));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        m = adopt(lease);
        CHECK(session_id(m) == id);
        int64_t t0 = itest_now_ms();
        CHECK(strcmp(itest_my_query(m, "SELECT SLEEP(0.5)"), "0") == 0);
        CHECK(itest_now_ms() - t0 >= 450);

        /* A running query is cancelled; the session lives on. */
        sl.m = m;
        CHECK(pthread_create(&thread, NULL, sleep_thread, &sl) == 0);
        usleep(300000);
        CHECK_OK(forkpool_cancel(lease));
        pthread_join(thread, NULL);
        CHECK_MSG(sl.took_ms < 5000, "the query ran %lld ms", (long long)sl.took_ms);
        /* SLEEP() interrupted by KILL QUERY returns 1, or the statement fails with 1317. */
        CHECK_MSG(strcmp(sl.value, "1") == 0 || sl.error == 1317, "result %d, error %u, value %s",
                  sl.result, sl.error, sl.value);
        CHECK(session_id(m) == id);
        CHECK_OK(forkpool_release(lease));

        usleep(100000);
        CHECK(itest_pool(&s).counters.invalidations == 0);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/*
 * A flood of cancels queues one KILL QUERY per lease: it delays neither the
 * KILL that ends a dead holder's session (those go first) nor the lease's
 * release, and what was not sent when the lease ended never reaches the next
 * holder's query.
 */
static void test_cancel_flood(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        int ready[2];

        start(&s, "itm_flood", NULL, "pool_size = 2\nmax_overflow = 0\n");
        MYSQL *admin = itest_my_admin(NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));

        /* A holder running a long statement, then killed: its session must end at once. */
        CHECK(pipe(ready) == 0);
        pid_t holder = fork();
        if (holder == 0) {
                forkpool *mine;
                forkpool_lease *held;
                CHECK_OK(forkpool_open(s.socket, &mine));
                CHECK_OK(forkpool_acquire(mine, "main", 5000, &held));
                MYSQL *m = adopt(held);
                long id = session_id(m);
                CHECK(write(ready[1], &id, sizeof(id)) == sizeof(id));
                (void)mysql_query(m, "SELECT SLEEP(60)");
                _exit(0);
        }
        long victim;
        CHECK(read(ready[0], &victim, sizeof(victim)) == sizeof(victim));

        /* The other lease floods forkpoold with cancels. */
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        long id = session_id(m);
        for (int i = 0; i < 100000; i++)
                CHECK_OK(forkpool_cancel(lease));

        kill(holder, SIGKILL);
        waitpid(holder, NULL, 0);
        char sql[128];
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %ld", victim);
        int64_t t0 = itest_now_ms();
        while (itest_my_long(admin, sql) != 0 && itest_now_ms() - t0 < 10000)
                usleep(10000);
        int64_t took = itest_now_ms() - t0;
        printf("# the dead holder's session ended after %lld ms\n", (long long)took);
        CHECK_MSG(took < 1500, "the dead holder's session ended after %lld ms", (long long)took);

        /* The release is not held up by the flood; the next holder's query runs whole. */
        t0 = itest_now_ms();
        CHECK_OK(forkpool_release(lease));
        forkpool_lease *both[2];
        bool seen = false;
        for (int i = 0; i < 2; i++) {
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &both[i]));
                seen |= session_id(adopt(both[i])) == id;
        }
        CHECK(seen);
        CHECK_MSG(itest_now_ms() - t0 < 1500, "the lease came back after %lld ms",
                  (long long)(itest_now_ms() - t0));
        for (int i = 0; i < 2; i++) {
                t0 = itest_now_ms();
                CHECK(strcmp(itest_my_query(adopt(both[i]), "SELECT SLEEP(0.5)"), "0") == 0);
                CHECK(itest_now_ms() - t0 >= 450);
                CHECK_OK(forkpool_release(both[i]));
        }
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        mysql_close(admin);
}

/* Leaves state in the session: a user variable, a temporary table, another database. */
static long dirty_session(forkpool *fp)
{
        forkpool_lease *lease;
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        long id = session_id(m);
        itest_my_query(m, "SET @x = 42");
        itest_my_query(m, "CREATE TEMPORARY TABLE tmp (v INT)");
        itest_my_query(m, "SET SESSION sql_mode = 'ANSI_QUOTES'");
        itest_my_query(m, "USE itm_other_db");
        CHECK(m->db && strcmp(m->db, "itm_other_db") == 0);
        CHECK_OK(forkpool_release(lease));
        return id;
}

static void test_reset_modes(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        MYSQL *m;

        itest_my_create_db("itm_other_db");
        /* rollback (the default) ends the transaction but keeps the session's state. */
        start(&s, "itm_reset", NULL, "pool_size = 1\nmax_overflow = 0\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        long id = dirty_session(fp);
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        m = adopt(lease);
        CHECK(session_id(m) == id);
        CHECK(strcmp(itest_my_query(m, "SELECT @x"), "42") == 0);
        CHECK(strcmp(itest_my_query(m, "SELECT DATABASE()"), "itm_other_db") == 0);
        CHECK(m->db && strcmp(m->db, "itm_other_db") == 0); /* mirrored, not stale */
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);

        /* commit: an open transaction's work is kept. */
        start(&s, "itm_reset", NULL, "pool_size = 1\nmax_overflow = 0\nreset_on_return = commit\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        m = adopt(lease);
        itest_my_query(m, "CREATE TABLE c (v INT)");
        itest_my_query(m, "BEGIN");
        itest_my_query(m, "INSERT INTO c VALUES (1)");
        CHECK_OK(forkpool_release(lease));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        m = adopt(lease);
        CHECK(!(m->server_status & SERVER_STATUS_IN_TRANS));
        CHECK(itest_my_long(m, "SELECT COUNT(*) FROM c") == 1);
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);

        /* discard and auto leave no user variable, temporary table or changed database. */
        static const char *const modes[] = {"discard", "auto"};
        for (size_t i = 0; i < 2; i++) {
                char lines[128];
                snprintf(lines, sizeof(lines),
                         "pool_size = 1\nmax_overflow = 0\nreset_on_return = %s\n", modes[i]);
                start(&s, "itm_reset", NULL, lines);
                CHECK_OK(forkpool_open(s.socket, &fp));
                id = dirty_session(fp);
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
                m = adopt(lease);
                CHECK_MSG(session_id(m) == id, "%s: not the same session", modes[i]);
                CHECK_MSG(strcmp(itest_my_query(m, "SELECT @x"), "NULL") == 0, "%s: @x kept",
                          modes[i]);
                CHECK_MSG(mysql_query(m, "SELECT * FROM tmp") != 0 && mysql_errno(m) == 1146,
                          "%s: the temporary table is still there", modes[i]);
                CHECK(strcmp(itest_my_query(m, "SELECT DATABASE()"), "itm_reset") == 0);
                CHECK(m->db && strcmp(m->db, "itm_reset") == 0);
                CHECK(strcmp(itest_my_query(m, "SELECT @@sql_mode"), "ANSI_QUOTES") != 0);
                CHECK(strcmp(itest_my_query(m, "SELECT @@autocommit"), "1") == 0);
                CHECK(!(m->server_status & SERVER_STATUS_IN_TRANS));
                /* A transaction left open is rolled back too. */
                itest_my_query(m, "CREATE TABLE IF NOT EXISTS t (v INT)");
                itest_my_query(m, "BEGIN");
                itest_my_query(m, "INSERT INTO t VALUES (1)");
                CHECK_OK(forkpool_release(lease));
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
                m = adopt(lease);
                CHECK(itest_my_long(m, "SELECT COUNT(*) FROM t") == 0);
                CHECK_OK(forkpool_release(lease));
                usleep(100000);
                CHECK(itest_pool(&s).counters.invalidations == 0);
                forkpool_close(fp);
                CHECK(itest_sup_stop(&s) == 0);
        }
}

static long global_status(MYSQL *admin, const char *name)
{
        char sql[128];
        MYSQL_RES *res;
        MYSQL_ROW row;
        long v = -1;

        snprintf(sql, sizeof(sql), "SHOW GLOBAL STATUS LIKE '%s'", name);
        CHECK(mysql_query(admin, sql) == 0);
        res = mysql_store_result(admin);
        if ((row = mysql_fetch_row(res)))
                v = atol(row[1]);
        mysql_free_result(res);
        return v;
}

/*
 * reset_on_return = auto: a session whose state changed in any way the
 * server reports (here only a user variable) is discarded; a clean one is
 * handed on without a round trip.
 */
static void test_reset_auto(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        MYSQL *m;

        start(&s, "itm_auto", NULL, "pool_size = 1\nmax_overflow = 0\nreset_on_return = auto\n");
        MYSQL *admin = itest_my_admin(NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        m = adopt(lease);
        long id = session_id(m);
        itest_my_query(m, "SET @only_this = 1");
        CHECK_OK(forkpool_release(lease));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        m = adopt(lease);
        CHECK(session_id(m) == id);
        CHECK(strcmp(itest_my_query(m, "SELECT @only_this"), "NULL") == 0);
        CHECK_OK(forkpool_release(lease));

        /* Clean: no reset statement reaches the server (a discard ends with a SET). */
        usleep(100000);
        long sets = global_status(admin, "Com_set_option");
        for (int i = 0; i < 3; i++) {
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
                m = adopt(lease);
                CHECK(session_id(m) == id);
                CHECK(itest_my_long(m, "SELECT 1 + 1") == 2);
                CHECK_OK(forkpool_release(lease));
        }
        usleep(100000);
        CHECK_MSG(global_status(admin, "Com_set_option") == sets, "a clean session was reset");
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        mysql_close(admin);
}

/* The URL's init_command runs on every new connection, and again after a discard. */
static void test_init_command(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        start(&s, "itm_init", "init_command=SET+SESSION+sql_mode%3D%27NO_BACKSLASH_ESCAPES%27",
              "pool_size = 1\nmax_overflow = 0\nreset_on_return = discard\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        for (int i = 0; i < 2; i++) {
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
                MYSQL *m = adopt(lease);
                CHECK(strcmp(itest_my_query(m, "SELECT @@sql_mode"), "NO_BACKSLASH_ESCAPES") == 0);
                /* The mirrored status makes escaping follow it: a quote is doubled. */
                CHECK(m->server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES);
                char esc[16];
                mysql_real_escape_string(m, esc, "a'b", 3);
                CHECK_MSG(strcmp(esc, "a''b") == 0, "escaped as %s", esc);
                itest_my_query(m, "SET SESSION sql_mode = ''");
                CHECK_OK(forkpool_release(lease));
        }
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* poolclass = process: the MYSQL stays with the process between leases, cleaned there. */
static void test_process_pool(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        start(&s, "itm_sticky", NULL, "pool_size = 2\nmax_overflow = 0\npoolclass = process\n");
        MYSQL *admin = itest_my_admin("itm_sticky");
        itest_my_query(admin, "CREATE TABLE t (v INT)");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        long id = session_id(m);
        for (int i = 0; i < 3; i++) {
                itest_my_query(m, "BEGIN");
                itest_my_query(m, "INSERT INTO t VALUES (1)");
                CHECK_OK(forkpool_release(lease));
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
                CHECK(adopt(lease) == m); /* the same handle, no adoption */
                CHECK(session_id(m) == id);
                CHECK(!(m->server_status & SERVER_STATUS_IN_TRANS));
                CHECK(itest_my_long(m, "SELECT COUNT(*) FROM t") == 0);
        }
        CHECK_OK(forkpool_release(lease));
        CHECK(itest_pool(&s).counters.acquires == 1);
        forkpool_close(fp);
        usleep(100000);
        CHECK(itest_pool(&s).checked_out == 0);
        CHECK(itest_sup_stop(&s) == 0);
        mysql_close(admin);
}

/*
 * pool_pre_ping = mysql_ping before handing out a used connection: a session
 * killed on the server while idle is replaced, never handed out. on_connect
 * runs on each new connection.
 */
static void test_pre_ping_on_connect(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        char sql[64];

        start(&s, "itm_ping", NULL,
              "pool_size = 1\nmax_overflow = 0\npool_pre_ping = true\n"
              "on_connect = SET time_zone = '+03:00'\n");
        MYSQL *admin = itest_my_admin(NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        long id = session_id(m);
        CHECK(strcmp(itest_my_query(m, "SELECT @@time_zone"), "+03:00") == 0);
        CHECK_OK(forkpool_release(lease));

        snprintf(sql, sizeof(sql), "KILL %ld", id);
        itest_my_query(admin, sql);
        CHECK(itest_my_wait_backends(admin, "itm_ping", 0, 5000) == 0);
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        m = adopt(lease);
        CHECK_MSG(session_id(m) != id, "a dead session was handed out");
        CHECK(strcmp(itest_my_query(m, "SELECT @@time_zone"), "+03:00") == 0);
        CHECK_OK(forkpool_release(lease));
        CHECK(itest_pool(&s).counters.connects == 2);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        mysql_close(admin);
}

/* forkpool_detach(): the MYSQL is the caller's, outside the pool; mysql_close() ends it. */
static void test_detach(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        start(&s, "itm_detach", NULL, "pool_size = 1\nmax_overflow = 0\n");
        MYSQL *admin = itest_my_admin(NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        long id = session_id(m);
        CHECK_OK(forkpool_detach(lease));
        usleep(100000);
        CHECK(itest_pool(&s).checked_out == 0);
        /* Still the same session, now ours alone. */
        CHECK(session_id(m) == id);
        CHECK(itest_my_backends(admin, "itm_detach") == 1);
        /* The pool makes a new one for the next lease. */
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        CHECK(session_id(adopt(lease)) != id);
        CHECK_OK(forkpool_release(lease));
        mysql_close(m);
        CHECK(itest_my_wait_backends(admin, "itm_detach", 1, 5000) == 1);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        mysql_close(admin);
}

/*
 * A dead holder's session is ended with KILL <thread id> only while the server
 * still has it: after a restart MariaDB numbers its sessions from the start
 * again, and a stale KILL would end whoever has that number now.
 */
static void test_no_stale_kill_after_restart(void)
{
        struct itest_sup s;
        int ready[2];

        start(&s, "itm_stale_kill", NULL, "pool_size = 1\nmax_overflow = 0\n");
        /* The held session gets a low number, which a fresh server reaches soon. */
        itest_my_restart("fast");
        CHECK(pipe(ready) == 0);
        pid_t holder = fork();
        CHECK(holder >= 0);
        if (holder == 0) {
                forkpool *fp;
                forkpool_lease *lease;
                CHECK_OK(forkpool_open(s.socket, &fp));
                CHECK_OK(forkpool_acquire(fp, "main", 10000, &lease));
                long id = session_id(adopt(lease));
                CHECK(write(ready[1], &id, sizeof(id)) == (ssize_t)sizeof(id));
                pause();
                _exit(0);
        }
        close(ready[1]);
        long held = 0;
        CHECK(read(ready[0], &held, sizeof(held)) == (ssize_t)sizeof(held));
        close(ready[0]);

        itest_my_restart("immediate");
        /* A session of ours takes the dead session's number. */
        MYSQL *bystander = NULL;
        for (int i = 0; i < 10000 && !bystander; i++) {
                MYSQL *m = itest_my_admin(NULL);
                long id = session_id(m);
                CHECK_MSG(id <= held, "the restarted server numbered past %ld", held);
                if (id == held)
                        bystander = m;
                else
                        mysql_close(m);
        }
        CHECK(bystander);

        /* The holder dies; forkpoold reclaims its lease and would KILL its thread id. */
        CHECK(kill(holder, SIGKILL) == 0);
        CHECK(itest_wait_child(holder, 5000) >= 0);
        CHECK(itest_wait_checked_out(&s, 0) == 0);
        /* forkpoold has decided about that KILL once it logs it (sent, or not needed). */
        char line[256];
        CHECK_SOON(itest_sh(line, sizeof(line), "grep -E 'KILL %ld[: ]' %s", held, s.log) == 0,
                   5000, "forkpoold did not log what it did about KILL %ld", held);
        CHECK_MSG(mysql_query(bystander, "SELECT 1") == 0,
                  "a session that took the dead session's thread id %ld was killed: %s", held,
                  mysql_error(bystander));
        mysql_free_result(mysql_store_result(bystander));
        mysql_close(bystander);
        CHECK(itest_sup_stop(&s) == 0);
}

/* A connection given back in the middle of a reply is closed, never reused. */
static void test_not_at_boundary(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        start(&s, "itm_boundary", NULL, "pool_size = 1\nmax_overflow = 0\n");
        MYSQL *admin = itest_my_admin(NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        for (int how = 0; how < 3; how++) {
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
                MYSQL *m = adopt(lease);
                long id = session_id(m);
                MYSQL_RES *res = NULL;
                if (how == 0) {
                        /* An unbuffered result not read to the end. */
                        CHECK(mysql_query(m, "SELECT seq FROM seq_1_to_100000") == 0);
                        res = mysql_use_result(m);
                        CHECK(res && mysql_fetch_row(res));
                } else if (how == 1) {
                        /* A query sent, its reply never read. */
                        CHECK(mysql_send_query(m, "SELECT 1", 8) == 0);
                } else {
                        /* A multi-statement's second result not read. */
                        CHECK(mysql_query(m, "SELECT 1") == 0);
                        /* not stored: status is GET_RESULT */
                }
                CHECK_OK(forkpool_release(lease));
                (void)res; /* its handle is gone with the lease */
                CHECK_MSG(itest_my_wait_backends(admin, "itm_boundary", 0, 5000) == 0,
                          "how %d: session %ld still there", how, id);
        }
        usleep(100000);
        struct fp_shm_pool st = itest_pool(&s);
        CHECK_MSG(st.counters.invalidations == 3, "invalidations %llu",
                  (unsigned long long)st.counters.invalidations);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        mysql_close(admin);
}

/* Over TCP, with a password, as well as over the Unix socket. */
static void test_tcp(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        const char *tcp = getenv("FORKPOOL_TEST_MY_TCP_URL");

        CHECK_MSG(tcp, "FORKPOOL_TEST_MY_TCP_URL is not set: run the tests with tests/run.sh");
        itest_sup_start_url(&s, tcp, "pool_size = 1\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        for (int i = 0; i < 3; i++) {
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
                MYSQL *m = adopt(lease);
                CHECK(strcmp(itest_my_query(m, "SELECT 6 * 7"), "42") == 0);
                CHECK(strncmp(itest_my_query(m, "SELECT CURRENT_USER()"), "forkpool@127.0.0.1",
                              18) == 0);
                CHECK_OK(forkpool_release(lease));
        }
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/*
 * TLS is off on purpose: the pool's start says so in the log, and its
 * sessions carry none. An account the server lets in only over TLS (REQUIRE
 * SSL) is a clear one-line connect error, soon, not a hang.
 */
static void test_tls_off(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        char url[512], log[8192];
        const char *port = getenv("FORKPOOL_TEST_MY_PORT");
        CHECK_MSG(port, "FORKPOOL_TEST_MY_PORT is not set: run the tests with tests/run.sh");

        itest_sup_start_url(&s, getenv("FORKPOOL_TEST_MY_TCP_URL"),
                            "pool_size = 1\nmax_overflow = 0\n", NULL);
        CHECK_SOON((itest_sh(log, sizeof(log), "cat %s", s.log),
                    strstr(log, "pool main: TLS is off: leased connections cannot carry TLS")),
                   5000, "no TLS line in the log:\n%s", log);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        CHECK(strcmp(itest_my_query(m,
                                    "SELECT COUNT(*) FROM information_schema.SESSION_STATUS "
                                    "WHERE VARIABLE_NAME = 'Ssl_cipher' AND VARIABLE_VALUE <> ''"),
                     "0") == 0);
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);

        MYSQL *admin = itest_my_admin(NULL);
        itest_my_query(admin, "DROP USER IF EXISTS 'fp_tls_only'@'127.0.0.1'");
        itest_my_query(admin, "CREATE USER 'fp_tls_only'@'127.0.0.1' IDENTIFIED BY 'tls-pw' "
                              "REQUIRE SSL");
        snprintf(url, sizeof(url), "mysql://fp_tls_only:tls-pw@127.0.0.1:%s/%s", port,
                 getenv("FORKPOOL_TEST_MY_DATABASE"));
        itest_sup_start_url(&s, url, "pool_size = 1\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        int64_t t0 = itest_now_ms();
        int r = forkpool_acquire(fp, "main", 10000, &lease);
        int64_t took = itest_now_ms() - t0;
        CHECK_MSG(r < 0, "a TLS-only account was leased");
        const char *why = forkpool_last_error();
        CHECK_MSG(strstr(why, "Access denied") && !strchr(why, '\n'), "error: [%s]", why);
        CHECK_MSG(took < 9000, "the refusal took %lld ms", (long long)took);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        itest_my_query(admin, "DROP USER 'fp_tls_only'@'127.0.0.1'");
        mysql_close(admin);
}

/* TLS and compression are refused at start, with the reason, the password unseen. */
static void test_url_refused(void)
{
        static const struct {
                const char *query;
                const char *reason;
        } bad[] = {
                {"ssl_ca=%2Fetc%2Fca.pem", "ssl_ca: TLS cannot be used on leased connections"},
                {"compress=true", "compress: compression cannot be used on leased connections"},
                {"sslmode=REQUIRED", "sslmode: TLS cannot be used"},
        };
        char out[2048];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int status = itest_sh(out, sizeof(out),
                                      "%s --url '%s' --socket /tmp/fp-itm-none.sock 2>&1",
                                      FP_FORKPOOLD_PATH, itest_my_url("x", bad[i].query));
                CHECK_MSG(status == 78, "exit status %d: %s", status, out);
                CHECK_MSG(strstr(out, bad[i].reason), "output: %s", out);
                CHECK(!strstr(out, getenv("FORKPOOL_TEST_MY_PASSWORD")));
        }
}

/*
 * The handle cache: the same connection back to the same process reuses the
 * handle (no handshake), and it works as a fresh one would.
 */
static void test_cache_reuse(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        start(&s, "itm_cache", NULL, "pool_size = 1\nmax_overflow = 0\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m1 = adopt(lease);
        long id = session_id(m1);
        itest_my_query(m1, "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY)");
        itest_my_query(m1, "INSERT INTO t VALUES (NULL)");
        CHECK(mysql_insert_id(m1) == 1);
        CHECK_OK(forkpool_release(lease));
        /* Had the handle been freed, this would likely take its memory. */
        void *block = malloc(sizeof(MYSQL));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m2 = adopt(lease);
        CHECK_MSG(m2 == m1, "the cached handle was not reused");
        CHECK(mysql_insert_id(m2) == 0 && mysql_affected_rows(m2) == 0);
        CHECK(session_id(m2) == id);
        CHECK(strcmp(itest_my_query(m2, "SELECT DATABASE()"), "itm_cache") == 0);
        itest_my_query(m2, "INSERT INTO t VALUES (NULL)");
        CHECK(mysql_insert_id(m2) == 2);
        CHECK_OK(forkpool_release(lease));
        free(block);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/*
 * A session another process changed (database, character set; kept by
 * reset_on_return = none) is adopted afresh, not taken from the cache.
 */
static void test_cache_changed_elsewhere(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        const char raw[] = "\xbf\x27 OR 1=1 -- \xe4\xb8\x80";
        char esc[2 * sizeof(raw) + 1], sql[256], hex[2 * sizeof(raw) + 1];

        itest_my_create_db("itm_cache_other");
        start(&s, "itm_cache_mine", NULL,
              "pool_size = 1\nmax_overflow = 0\nreset_on_return = none\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        long id = session_id(m);
        CHECK_OK(forkpool_release(lease));

        pid_t pid = fork();
        if (pid == 0) {
                forkpool *cfp;
                forkpool_lease *cl;
                CHECK_OK(forkpool_open(s.socket, &cfp));
                CHECK_OK(forkpool_acquire(cfp, "main", 5000, &cl));
                MYSQL *cm = adopt(cl);
                CHECK(session_id(cm) == id);
                itest_my_query(cm, "USE itm_cache_other");
                itest_my_query(cm, "SET NAMES gbk");
                CHECK_OK(forkpool_release(cl));
                forkpool_close(cfp);
                _exit(0);
        }
        CHECK(itest_wait_child(pid, 10000) == 0);

        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        m = adopt(lease);
        CHECK(session_id(m) == id);
        CHECK(strcmp(m->db ? m->db : "", "itm_cache_other") == 0);
        CHECK(strcmp(itest_my_query(m, "SELECT DATABASE()"), "itm_cache_other") == 0);
        CHECK(strcmp(mysql_character_set_name(m), "gbk") == 0);
        mysql_real_escape_string(m, esc, raw, sizeof(raw) - 1);
        snprintf(sql, sizeof(sql), "SELECT HEX('%s')", esc);
        for (size_t i = 0; i < sizeof(raw) - 1; i++)
                snprintf(hex + 2 * i, 3, "%02X", (unsigned char)raw[i]);
        CHECK_MSG(strcmp(itest_my_query(m, sql), hex) == 0, "escaped under the wrong charset");
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* A forked child never gets its parent's cached handle, even through the inherited pool. */
static void test_cache_fork(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        start(&s, "itm_cache_fork", NULL, "pool_size = 1\nmax_overflow = 0\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m = adopt(lease);
        long id = session_id(m);
        CHECK_OK(forkpool_release(lease));
        /* Cached here: from now on the handle stays allocated, in the child too. */
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        CHECK(adopt(lease) == m);
        CHECK_OK(forkpool_release(lease));

        pid_t pid = fork();
        if (pid == 0) {
                forkpool_lease *cl;
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &cl));
                MYSQL *cm = adopt(cl);
                CHECK_MSG(cm != m, "the child got its parent's cached handle");
                CHECK(session_id(cm) == id);
                CHECK_OK(forkpool_release(cl));
                forkpool_close(fp);
                _exit(0);
        }
        CHECK(itest_wait_child(pid, 10000) == 0);
        /* The parent's own cache is untouched by the child. */
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        MYSQL *m2 = adopt(lease);
        CHECK(session_id(m2) == id);
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/*
 * forkpool_lease_mysql_session() and forkpool_lease_mysql_report(), for
 * clients that speak the protocol themselves: the session's values, the
 * struct_size contract, and a reported idle session released without the
 * ROLLBACK an unknown one costs.
 */
static void test_session_report(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        char longname[64];

        start(&s, "itm_session", NULL, "pool_size = 1\nmax_overflow = 0\n");
        MYSQL *admin = itest_my_admin("itm_session");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));

        forkpool_mysql_session info = FORKPOOL_MYSQL_SESSION_INIT;
        CHECK_OK(forkpool_lease_mysql_session(lease, &info));
        CHECK(info.struct_size == sizeof(info));
        CHECK((int)info.thread_id == forkpool_lease_backend_pid(lease));
        CHECK(info.protocol_version == 10);
        CHECK(strcmp(info.db, "itm_session") == 0);
        CHECK(info.user[0] != '\0' && info.server_version[0] != '\0' && info.charset[0] != '\0');
        CHECK(info.server_status & SERVER_STATUS_AUTOCOMMIT);
        forkpool_mysql_session small = {.struct_size = sizeof(size_t)};
        CHECK(forkpool_lease_mysql_session(lease, &small) == -EINVAL);
        CHECK(forkpool_lease_mysql_session(NULL, &info) == -EINVAL);

        memset(longname, 'x', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        CHECK(forkpool_lease_mysql_report(lease, info.server_status, NULL, longname) == -EINVAL);
        CHECK(forkpool_lease_mysql_report(NULL, 0, NULL, NULL) == -EINVAL);

        /* Unknown state (nothing reported): forkpoold rolls back. */
        long before = global_status(admin, "Com_rollback");
        CHECK_OK(forkpool_release(lease));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        CHECK(forkpool_lease_backend_pid(lease) == (int)info.thread_id);
        long unknown = global_status(admin, "Com_rollback") - before;
        CHECK_MSG(unknown == 1, "an unreported release cost %ld ROLLBACKs, not 1", unknown);

        /* Reported idle (the session is: nothing ran on it): no ROLLBACK. */
        CHECK_OK(forkpool_lease_mysql_report(lease, info.server_status, NULL, NULL));
        before = global_status(admin, "Com_rollback");
        CHECK_OK(forkpool_release(lease));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        CHECK(forkpool_lease_backend_pid(lease) == (int)info.thread_id);
        long reported = global_status(admin, "Com_rollback") - before;
        CHECK_MSG(reported == 0, "a release reported idle cost %ld ROLLBACKs", reported);

        /* An adopted lease's state is the library's own. */
        (void)adopt(lease);
        CHECK(forkpool_lease_mysql_report(lease, 0, NULL, NULL) == -EOPNOTSUPP);
        CHECK_OK(forkpool_release(lease));
        mysql_close(admin);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

ITEST_MAIN({"results", test_results, 60}, {"prepared_statements", test_prepared_statements, 60},
           {"multi_statements", test_multi_statements, 60},
           {"escape_charset", test_escape_charset, 60}, {"change_user", test_change_user, 60},
           {"capability_mismatch", test_capability_mismatch, 60}, {"cancel", test_cancel, 60},
           {"cancel_flood", test_cancel_flood, 90}, {"reset_modes", test_reset_modes, 60},
           {"reset_auto", test_reset_auto, 60}, {"init_command", test_init_command, 60},
           {"process_pool", test_process_pool, 60},
           {"pre_ping_on_connect", test_pre_ping_on_connect, 60}, {"detach", test_detach, 60},
           {"not_at_boundary", test_not_at_boundary, 60}, {"tcp", test_tcp, 60},
           {"tls_off", test_tls_off, 60}, {"url_refused", test_url_refused, 60},
           {"cache_reuse", test_cache_reuse, 60},
           {"cache_changed_elsewhere", test_cache_changed_elsewhere, 60},
           {"cache_fork", test_cache_fork, 60}, {"session_report", test_session_report, 60},
           {"no_stale_kill_after_restart", test_no_stale_kill_after_restart, 90})
