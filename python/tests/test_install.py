# SPDX-License-Identifier: MIT
"""The package installs offline with pip (Debian's setuptools) and with cmake --install."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fptest  # noqa: E402

CHECK = ("import forkpool, forkpool.sqlalchemy, sys; "
         "assert forkpool.__file__.startswith(sys.argv[1]), forkpool.__file__; "
         "print(forkpool._lib.lib().forkpool_version().decode())")


class TestInstall(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fp-py-install-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def check_import(self, path):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = path
        r = subprocess.run([fptest.PY, "-c", CHECK, path], env=env, cwd=self.tmp,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.strip(), r"^\d+\.\d+\.\d+$")

    def test_pip_offline(self):
        src = os.path.join(self.tmp, "src")
        shutil.copytree(fptest.PKG_ROOT, src, ignore=shutil.ignore_patterns(
            "__pycache__", "build", "*.egg-info"))
        target = os.path.join(self.tmp, "site")
        r = subprocess.run([fptest.PY, "-m", "pip", "install", "--no-build-isolation",
                            "--no-index", "--no-deps", "--target", target, src],
                           capture_output=True, text=True, timeout=240)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(os.path.exists(os.path.join(target, "forkpool", "sqlalchemy.py")))
        self.check_import(target)

    def test_cmake_install(self):
        fptest.need_env("FORKPOOL_BUILD_TREE", "FORKPOOL_PYTHON_SITEDIR", "FORKPOOL_PREFIX")
        root = os.path.join(self.tmp, "root")
        env = dict(os.environ, DESTDIR=root)
        r = subprocess.run(["cmake", "--install", os.environ["FORKPOOL_BUILD_TREE"]], env=env,
                           capture_output=True, text=True, timeout=240)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        site = os.environ["FORKPOOL_PYTHON_SITEDIR"]
        if not os.path.isabs(site):
            site = os.path.join(os.environ["FORKPOOL_PREFIX"], site)
        site = root + site
        for f in ("__init__.py", "_lib.py", "_drivers.py", "_mysql.py", "sqlalchemy.py",
                  "_sa_psycopg.py", "_config.py"):
            self.assertTrue(os.path.exists(os.path.join(site, "forkpool", f)), f)
        with open(os.path.join(site, "forkpool", "_config.py")) as f:
            self.assertIn('LIBDIR = "/', f.read())
        self.check_import(site)


if __name__ == "__main__":
    unittest.main(verbosity=2)
