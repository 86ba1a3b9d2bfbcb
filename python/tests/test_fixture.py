# SPDX-License-Identifier: MIT
"""The tests' own fixtures: a forkpoold that fptest.Supervisor starts never
outlives the test process, whichever way that process ends. Each case runs a
test process of its own that starts one and then ends: an exception nobody
catches, sys.exit, a failed assertion in setUpClass (no tearDownClass runs),
SIGTERM, SIGKILL. The same for the drop-in's client tests' fixture
(tests/dropin/lib.sh's dt_start): a failing check's exit, SIGTERM, SIGKILL."""
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fptest  # noqa: E402

PROLOGUE = ("import os, signal, sys, time, unittest\n"
            "sys.path.insert(0, %r)\n"
            "import fptest\n" % fptest.HERE)
# Each prints "PID DIR" of its forkpoold, then waits for a line on stdin (the test's go).
START = ("s = fptest.Supervisor(fptest.pg_url(), pool_lines='pool_size = 1')\n"
         "print(s.proc.pid, s.dir, flush=True)\n"
         "sys.stdin.readline()\n")
ENDINGS = {
    "exception": START + "raise RuntimeError('a test that fails')\n",
    "exit": START + "sys.exit(3)\n",
    "setup_assertion": (
        "class T(unittest.TestCase):\n"
        "    @classmethod\n"
        "    def setUpClass(cls):\n"
        "        " + START.replace("\n", "\n        ").rstrip() + "\n"
        "        assert False, 'setUpClass fails'\n"
        "    def test_nothing(self):\n"
        "        pass\n"
        "unittest.main()\n"),
    "sigterm": START,
    "sigkill": START,
}


LIB_SH = os.path.join(os.path.dirname(fptest.PKG_ROOT), "tests", "dropin",
                      "lib.sh")
BASH_START = ('. "$1"\n'
              'dt_init --direct --forkpoold "$FORKPOOL_FORKPOOLD"\n'
              'dt_pool sup main\n'
              'dt_start sup\n'
              'echo "${DT_SUP_PID[sup]}" "$DT_TMP"\n'
              'read -r _\n')
BASH_ENDINGS = {
    "failed_check": BASH_START + "dt_check 'a check that fails' false\ndt_finish\n",
    "sigterm": BASH_START,
    "sigkill": BASH_START,
}


def alive(pid):
    """Whether pid runs (a zombie does not: its parent went, nothing reaped it yet)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class TestSupervisorFixture(unittest.TestCase):
    def end_and_check(self, ending, cleaned, bash=False):
        if bash:
            cmd = ["bash", "-c", BASH_ENDINGS[ending], "fixture_check", LIB_SH]
        else:
            cmd = [fptest.PY, "-c", PROLOGUE + ENDINGS[ending]]
        p = subprocess.Popen(cmd, env=dict(os.environ), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # The first line that is "PID DIR" (the bash fixture logs before it).
            line = p.stdout.readline().split()
            while line and not line[0].isdigit():
                line = p.stdout.readline().split()
            if len(line) != 2:
                p.kill()
                self.fail("no forkpoold started: %s" % p.stderr.read())
            pid, directory = int(line[0]), line[1]
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                self.assertIn(b"forkpoold", f.read())
            if ending in ("sigterm", "sigkill"):
                p.send_signal(signal.SIGTERM if ending == "sigterm" else signal.SIGKILL)
            else:
                p.stdin.write("go\n")
                p.stdin.flush()
            p.wait(60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
        try:
            fptest.wait_for(lambda: not alive(pid), 30, "forkpoold %d gone (%s)" % (pid, ending))
        finally:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)  # not left behind by this test either
        if ending == "sigterm" and not bash:
            self.assertEqual(p.returncode, -signal.SIGTERM)  # it still dies of the signal
        if cleaned:
            self.assertFalse(os.path.exists(directory), "%s left behind" % directory)

    def test_uncaught_exception(self):
        self.end_and_check("exception", cleaned=True)

    def test_sys_exit(self):
        self.end_and_check("exit", cleaned=True)

    def test_failed_assertion_in_setup_class(self):
        self.end_and_check("setup_assertion", cleaned=True)

    def test_sigterm(self):
        self.end_and_check("sigterm", cleaned=True)

    def test_sigkill(self):
        self.assertTrue(fptest.SETPRIV, "no setpriv (util-linux): nothing ties forkpoold to "
                        "its parent")
        self.end_and_check("sigkill", cleaned=False)

    def test_dropin_fixture_failed_check(self):
        self.end_and_check("failed_check", cleaned=True, bash=True)

    def test_dropin_fixture_sigterm(self):
        self.end_and_check("sigterm", cleaned=True, bash=True)

    def test_dropin_fixture_sigkill(self):
        self.end_and_check("sigkill", cleaned=False, bash=True)


if __name__ == "__main__":
    unittest.main()
