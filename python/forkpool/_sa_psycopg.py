# SPDX-License-Identifier: MIT
"""A minimal "postgresql+psycopg" (psycopg 3) dialect for SQLAlchemy 1.4.

SQLAlchemy gained its psycopg 3 dialect in 2.0; 1.4 (Debian 12's) has none.
This one is registered by forkpool.sqlalchemy only when SQLAlchemy has no
"postgresql+psycopg" of its own. It is PostgreSQL's base dialect with psycopg 3
as the DBAPI (pyformat parameters, the driver's own type conversion); it is
what ForkPool needs, not a full replacement: no server-side cursors, no
psycopg-specific type adaptations beyond psycopg's defaults.
"""
from sqlalchemy.dialects.postgresql.base import PGDialect, PGExecutionContext


class PGExecutionContext_fpsycopg(PGExecutionContext):
    pass


class PGDialect_fpsycopg(PGDialect):
    driver = "psycopg"
    supports_statement_cache = True
    default_paramstyle = "pyformat"
    supports_sane_multi_rowcount = False
    execution_ctx_cls = PGExecutionContext_fpsycopg

    @classmethod
    def dbapi(cls):
        import psycopg

        return psycopg

    import_dbapi = dbapi

    def create_connect_args(self, url):
        opts = url.translate_connect_args(username="user", database="dbname")
        opts.update(url.query)
        return ([], opts)

    def set_isolation_level(self, connection, level):
        level = level.replace("_", " ")
        if level == "AUTOCOMMIT":
            connection.autocommit = True
            return
        connection.autocommit = False
        super().set_isolation_level(connection, level)

    def is_disconnect(self, e, connection, cursor):
        import psycopg

        if isinstance(e, psycopg.Error) and connection is not None:
            if getattr(connection, "closed", False) or getattr(connection, "broken", False):
                return True
        text = str(e)
        return any(m in text for m in (
            "server closed the connection unexpectedly", "terminating connection",
            "connection is closed", "the connection is lost", "consuming input failed",
            "could not receive data from server", "could not send data to server"))


dialect = PGDialect_fpsycopg
