/* SPDX-License-Identifier: MIT */
/*
 * url.h — database URLs in SQLAlchemy's form, turned into libpq keywords or
 * MariaDB Connector/C connect arguments.
 *
 *   postgresql://user:password@host:port/database?key=value&key=value
 *   postgresql+psycopg2://…, postgres://… are accepted too.
 *   mysql://user:password@host:port/database?unix_socket=/path&charset=utf8mb4
 *   mysql+pymysql://…, mariadb://…, mariadb+mariadbconnector://… too (one
 *   driver, scheme "mysql"). Query keys: unix_socket, charset,
 *   connect_timeout, init_command, multi_statements, found_rows. TLS keys
 *   (ssl*, tls*) and compression (compress) are refused, with the reason.
 *
 * Every component is percent-decoded ('+' is a space in the query only, as in
 * SQLAlchemy). A Unix-socket directory is given as ?host=/path (then the
 * authority may have no host). TLS and GSS encryption are refused, because a
 * TLS session cannot move between processes: sslmode other than "disable",
 * gssencmode other than "disable", and any ssl* key.
 */
#ifndef FORKPOOL_URL_H
#define FORKPOOL_URL_H

#include <stddef.h>

#define FP_URL_MAX_PARAMS 32

struct fp_url {
        char *scheme;   /* "postgresql" or "mysql" (the driver suffix is dropped) */
        char *user;     /* NULL if absent */
        char *password; /* NULL if absent; a secret: never log or publish it */
        char *host;     /* NULL if absent (libpq default, or ?host=) */
        char *port;     /* NULL if absent */
        char *database; /* NULL if absent */
        size_t n_params;
        char *param_keys[FP_URL_MAX_PARAMS];   /* decoded query keys */
        char *param_values[FP_URL_MAX_PARAMS]; /* decoded query values */
};

/*
 * Parses text into *ret (which the caller frees with fp_url_free()). On
 * failure returns -EINVAL and writes a one-line reason (without the password)
 * into err (errlen bytes), leaving *ret zeroed.
 */
int fp_url_parse(const char *text, struct fp_url *ret, char *err, size_t errlen);

/* Frees what fp_url_parse() allocated (wiping the password) and zeroes *url. */
void fp_url_free(struct fp_url *url);

/*
 * Builds the NULL-terminated keyword/value arrays for PQconnectStartParams():
 * host, port, user, password, dbname, the query parameters, and the forced
 * sslmode=disable, gssencmode=disable. A ?host= or ?port= replaces the
 * authority's host or port (which is then left out). The arrays point into
 * url (valid while url lives) and static strings; cap is the capacity of each
 * array including the terminating NULL. Returns the number of pairs or
 * -ENOSPC.
 */
int fp_url_pg_keywords(const struct fp_url *url, const char **keys, const char **values,
                       size_t cap);

/* A mysql:// URL as MariaDB Connector/C connect arguments (fp_url_mysql_options()). */
struct fp_url_mysql {
        const char *host;         /* NULL: local (the Unix socket) */
        unsigned int port;        /* 0: the default */
        const char *user;         /* NULL: the login name */
        const char *password;     /* NULL if absent */
        const char *database;     /* NULL if absent */
        const char *unix_socket;  /* ?unix_socket=, or NULL */
        const char *charset;      /* ?charset=, or NULL (the driver's default) */
        const char *init_command; /* ?init_command=, or NULL */
        int connect_timeout_s;    /* ?connect_timeout=, 0 if absent */
        int multi_statements;     /* ?multi_statements=true: CLIENT_MULTI_STATEMENTS */
        int found_rows;           /* ?found_rows=true: CLIENT_FOUND_ROWS */
};

/*
 * Fills *ret from a parsed mysql:// URL. The strings point into url (valid
 * while url lives). Returns 0, or -EINVAL if url is not a mysql:// URL.
 */
int fp_url_mysql_options(const struct fp_url *url, struct fp_url_mysql *ret);

/*
 * Writes the URL back as text with the password replaced by "***" (for logs
 * and `forkpoolctl url-check`). Returns the length written (truncated to fit)
 * or a negative errno.
 */
int fp_url_format_masked(const struct fp_url *url, char *buf, size_t len);

#endif /* FORKPOOL_URL_H */
