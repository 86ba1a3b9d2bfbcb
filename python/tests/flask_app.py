# SPDX-License-Identifier: MIT
"""A Flask + Flask-SQLAlchemy app on ForkPool, for the gunicorn test and the benchmark.

FPT_URL: the database URL; FPT_POOL: "forkpool" (ForkPool, the default),
"queue" (SQLAlchemy's QueuePool per worker) or "null" (NullPool).
"""
import os

from flask import Flask, jsonify
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text
from sqlalchemy.pool import NullPool, QueuePool

from forkpool.sqlalchemy import ForkPool

URL = os.environ["FPT_URL"]
POOL = os.environ.get("FPT_POOL", "forkpool")
BACKEND_SQL = "select pg_backend_pid()" if URL.startswith("postgres") else "select connection_id()"

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = URL
app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
    "forkpool": {"poolclass": ForkPool},
    "queue": {"poolclass": QueuePool, "pool_size": 5, "max_overflow": 10},
    "null": {"poolclass": NullPool},
}[POOL]
db = SQLAlchemy(app)


@app.route("/health")
def health():
    return "ok"


@app.route("/hit")
def hit():
    """One write and a read in a transaction, the way a view does."""
    backend = db.session.execute(text(BACKEND_SQL)).scalar()
    db.session.execute(text("insert into fp_hits (worker) values (:w)"), {"w": os.getpid()})
    db.session.commit()
    n = db.session.execute(text("select count(*) from fp_hits")).scalar()
    return jsonify(backend=int(backend), pid=os.getpid(), n=int(n))


@app.route("/five")
def five():
    """Five small queries (the benchmark's route)."""
    total = 0
    for i in range(5):
        total += int(db.session.execute(text("select %d + 1" % i)).scalar())
    return jsonify(total=total)
