"""A WSGI app on SQLAlchemy with NullPool (a connection per request), for
tests/dropin/sqlalchemy.sh. The engine's URL comes from $DT_SA_URL."""
import os

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

engine = create_engine(os.environ["DT_SA_URL"], poolclass=NullPool)


def app(environ, start_response):
    try:
        with engine.begin() as conn:
            pid, name = conn.execute(text(
                "select pg_backend_pid(), current_setting('application_name'), "
                "pg_sleep(0.005)")).one()[:2]
        status, body = "200 OK", "ok pid=%d app=%s worker=%d\n" % (pid, name, os.getpid())
    except Exception as e:  # the answer says why
        status, body = "500 Internal Server Error", "error %s: %s\n" % (type(e).__name__, e)
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
