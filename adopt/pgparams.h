/* SPDX-License-Identifier: MIT */
/*
 * pgparams.h — the PostgreSQL run-time parameters the server reports to the
 * client (GUC_REPORT), across server versions 12 to 18. The supervisor hands
 * their current values to the worker with each lease (its adopted PGconn must
 * mirror the session exactly: escaping depends on client_encoding and
 * standard_conforming_strings); the worker reports them back at release.
 */
#ifndef FORKPOOL_PGPARAMS_H
#define FORKPOOL_PGPARAMS_H

static const char *const fp_pg_reported_params[] = {
        "application_name",
        "client_encoding",
        "DateStyle",
        "default_transaction_read_only",
        "in_hot_standby",
        "integer_datetimes",
        "IntervalStyle",
        "is_superuser",
        "server_encoding",
        "server_version",
        "session_authorization",
        "standard_conforming_strings",
        "TimeZone",
        "scram_iterations",
        "search_path",
};

#define FP_PG_N_REPORTED (sizeof(fp_pg_reported_params) / sizeof(fp_pg_reported_params[0]))

#endif /* FORKPOOL_PGPARAMS_H */
