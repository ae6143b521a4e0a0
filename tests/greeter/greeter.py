#!/usr/bin/python3
"""A password reset at a real LightDM greeter, read back from the screen.

Started by tests/greeter/run (see README.md there). For each greeter: the real sspr server,
a unix account with the sspr user's login, pam_sspr.so in PAM service `lightdm`, LightDM
under Xvfb with a private D-Bus system bus; xdotool types, `import` takes a screenshot of each
step and tesseract reads it. A step passes when what the user must read is on the screen.
"""

import argparse
import difflib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

# What the user must read at each step: the agent's greeter texts (crates/agent/src/text.rs,
# the T::Greeter* variants, English). "message": phrases of the message shown before the
# prompt (each must be read on screen, fuzzily, with its first and last word); "prompt": the
# prompt's text, which slick-greeter shows as the entry's placeholder (so it also proves the
# entry is in view). lightdm-gtk-greeter never shows a prompt's text: only "message" is
# checked there. Keep phrases within one line of the greeter's wrapping where possible.
EXPECT = {
    "first-prompt": {
        "message": ["Forgot password? Press Enter."],
        "prompt": "Password",
    },
    "menu": {
        "message": ["Type 1 to reset your password,", "or 2 to unlock your account."],
        "prompt": "1 or 2 (Enter: go back)",
    },
    "method": {
        "message": ["Prove it's you. Type 1-2:", "1 Email", "2 Questions"],
        "prompt": "1-2 (Enter: cancel)",
    },
    "code": {
        # then the masked address d••o@e••••••.test: OCR garbles the bullets, its end is read
        "message": ["Type the code sent to", "test"],
        "prompt": "Code (Enter: another way)",
    },
    "wrong-code": {
        "message": ["That code is not right, or it", "has expired."],
        "prompt": "Code (Enter: another way)",
    },
    "new-password": {
        "message": ["Choose a new password of at", "least 15 characters."],
        "prompt": "New password",
    },
    "retype": {
        "message": ["Type the new password again."],
        "prompt": "New password again",
    },
    "rule-broken": {  # the server's first sentence, after a too short new password
        "message": ["The password is too short: use", "at least 15 characters."],
        "prompt": "New password",
    },
    "mismatch": {
        "message": ["The two passwords don't match.", "Try again."],
        "prompt": "New password",
    },
    # Second scenario: the server cannot be reached; the normal login must go on.
    "unreachable": {
        "message": ["Can't reach the reset service.", "Call your helpdesk."],
        "prompt": "Password",
    },
    # Third scenario: the agent's config is broken; the module asks for the password as the
    # next module would, and the normal login goes on (no message: nothing to check on GTK).
    "broken": {
        "message": [],
        "prompt": "Password",
    },
    "outcome": {
        "message": ["Your password is changed.", "Press Enter to sign in."],
        "prompt": "Press Enter to sign in",
    },
    # Fourth scenario: the password is right but expired (the account phase answers
    # PAM_NEW_AUTHTOK_REQD); LightDM asks the password stack, where pam_sspr changes it.
    "expired": {
        "message": ["Password expired. Choose a new one."],
        "prompt": "Current password",
    },
    "expired-rule": {  # the server's first sentence, after a too short new password
        "message": ["The password is too short: use", "at least 15 characters."],
        "prompt": "New password",
    },
    # slick-greeter only: a message after the last prompt stays on screen with a "Log In"
    # button (lightdm-gtk-greeter starts the session at once).
    "changed": {
        "message": ["Password changed."],
        "prompt": "Log In",
    },
}
SLICK_ONLY = {"changed"}

MARK = "written by sspr tests/greeter"
PAM_SAVED = "/var/tmp/sspr-greeter-pam.d-lightdm.orig"  # survives a killed run
USER = "demo"  # the demo user `sspr serve` creates on first start
OLD_PASSWORD = "sspr-demo-initial-password"
NEW_PASSWORD = "Greeter-Reset-Pw-2026-ok"
SHORT_PASSWORD = "Short-pw-26"  # breaks the demo policy's 15 characters
WRONG_CODE_DIGITS = "0"
GREETERS = {"gtk": "lightdm-gtk-greeter", "slick": "slick-greeter"}
STEPS = {  # the steps each scenario checks, in order
    "reset": ["first-prompt", "menu", "method", "code", "wrong-code", "new-password", "retype",
              "rule-broken", "mismatch", "outcome", "session"],
    "unreachable": ["unreachable", "session"],
    "broken": ["broken", "session"],
    "expired": ["expired", "expired-rule", "changed", "session", "server"],
}
SCENARIOS = {"reset": "a whole reset", "unreachable": "the sspr server unreachable",
             "broken": "a broken agent config", "expired": "an expired password changed"}
SETTLE = float(os.environ.get("SSPR_GREETER_SETTLE", "1.2"))  # s for the greeter to draw a prompt
ENTRY_MIN = 16  # px of the entry's height that must be in view (it is about 30)
MATCH = 0.82  # difflib ratio a phrase needs against the OCR text
EDGE = 0.5  # ... and its first and last words each, the last one not cut short (a line cut
# at the greeter's edge loses the end of its last word)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
DEBUG = os.path.join(TARGET, "debug")


def log(msg):
    print(f"[greeter {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# OCR reads a lone digit as a look-alike letter ("l or 2"): one-character words are compared
# by their digit on both sides.
LOOKALIKE = str.maketrans({"l": "1", "i": "1", "o": "0", "z": "2", "s": "5", "b": "6", "g": "9"})


def words(text):
    out = re.sub(r"[^a-z0-9|]+", " ", text.lower()).replace("|", "1").split()
    return [w.translate(LOOKALIKE) if len(w) == 1 else w for w in out]


def ratio(a, b):
    return difflib.SequenceMatcher(None, a, b).ratio()


def seen(phrase, ocr):
    """(seen, score, best OCR window) of a phrase in the OCR text."""
    want = words(phrase)
    tokens = words(ocr)
    if not want:
        return True, 1.0, ""
    target = " ".join(want)
    best = (0.0, "", False)
    n = len(want)
    for i in range(len(tokens)):
        for size in range(max(1, n - 2), n + 3):
            cand = tokens[i:i + size]
            if not cand:
                continue
            r = ratio(target, " ".join(cand))
            if r > best[0]:
                edges = (ratio(want[0], cand[0]) >= EDGE and ratio(want[-1], cand[-1]) >= EDGE
                         and not (cand[-1] != want[-1] and want[-1].startswith(cand[-1])))
                best = (r, " ".join(cand), edges)
    return best[0] >= MATCH and best[2], best[0], best[1]


def run(cmd, **kw):
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


class Syslog:
    """The agent's syslog socket: every line it logs, for the failure report."""

    def __init__(self, path):
        self.path = path
        self.lines = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            self.lines.append(data.decode("utf-8", "replace").rstrip())


class Run:
    def __init__(self, greeter, tmp, args, scenario="reset"):
        self.greeter = greeter
        self.scenario = scenario
        self.tmp = tmp
        self.args = args
        self.procs = []
        self.rows = []  # (step, expected, seen, score, excerpt)
        self.shots = []  # (step, path, ocr)
        self.pam_backup = None
        self.user_created = False

    # -- setup --------------------------------------------------------------------------
    def p(self, *parts):
        return os.path.join(self.tmp, *parts)

    def spawn(self, cmd, logname, env=None):
        out = open(self.p(logname), "ab")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_server(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        # The zero-config quick start (no config file), so that the demo user exists; only
        # where its data goes and which port it takes come from the environment.
        self.server_env = dict(os.environ, SSPR_DATA_DIR=self.p("server"),
                               SSPR_LISTEN=f"127.0.0.1:{self.port}")
        self.server_env.pop("SSPR_CONFIG", None)
        self.spawn([os.path.join(DEBUG, "sspr"), "serve"], "server.log", env=self.server_env)
        self.ca = self.p("server", "tls", "ca.pem")
        deadline = time.time() + 60
        while time.time() < deadline:
            if os.path.exists(self.ca):
                try:
                    socket.create_connection(("127.0.0.1", self.port), 1).close()
                    return
                except OSError:
                    pass
            time.sleep(0.3)
        raise SystemExit("the sspr server did not start: see " + self.p("server.log"))

    def outbox(self):
        out = run([os.path.join(DEBUG, "sspr"), "outbox", "--json", "--limit", "20"],
                  capture_output=True, text=True, env=self.server_env).stdout
        return [m for m in json.loads(out) if "demo@" in (m.get("to") or "")]

    def create_user(self):
        try:
            pw = pwd.getpwnam(USER)
            if "sspr greeter test" not in pw.pw_gecos:
                raise SystemExit(f"a unix user {USER} exists and is not this test's: not touching it")
            run(["userdel", "-r", USER], stderr=subprocess.DEVNULL, check=False)
        except KeyError:
            pass
        home = self.p("home")
        run(["useradd", "-M", "-d", home, "-s", "/bin/sh", "-c", "sspr greeter test", USER])
        self.user_created = True
        os.makedirs(home, exist_ok=True)
        pw = pwd.getpwnam(USER)
        os.chown(home, pw.pw_uid, pw.pw_gid)

    def agent_port(self):
        """The sspr server's port; in the unreachable scenario a port nothing listens on."""
        if self.scenario in ("reset", "expired"):
            return self.port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def write_pam(self):
        probe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "build", "pam_probe.so")
        self.expected = self.p("expected-password")
        with open(self.expected, "w") as f:
            f.write(OLD_PASSWORD + "\n")
        os.chmod(self.expected, 0o600)
        agent = self.p("logon.toml")
        self.syslog = Syslog(self.p("syslog.sock"))
        with open(agent, "w") as f:
            if self.scenario == "broken":
                # A wrong type: the config cannot be read at all.
                f.write('server_url = 42\nservices = ["lightdm"]\n')
            else:
                f.write(f'server_url = "https://127.0.0.1:{self.agent_port()}"\nca_file = "{self.ca}"\n'
                    f'services = ["lightdm"]\nscreen = "auto"\nlocale = "en"\nenable_logging = 1\n'
                    f'syslog_socket = "{self.syslog.path}"\ntimeout_secs = 10\nconnect_timeout_secs = 3\n')
        module = os.path.join(DEBUG, "libpam_sspr.so")
        probe_log = self.p("probe.log")
        if self.scenario == "expired":
            # The account is expired until the change is done; the password stack is the one
            # the README documents, with pam_probe standing in for pam_unix after pam_sspr.
            self.expired_flag = self.p("expired")
            self.expected_new = self.p("expected-new-password")
            with open(self.expired_flag, "w") as f:
                f.write("expired\n")
            with open(self.expected_new, "w") as f:
                f.write(NEW_PASSWORD + "\n")
            os.chmod(self.expected_new, 0o600)
            account = f"account required {probe} expired={self.expired_flag} log={probe_log}\n"
            password = (f"password [success=ok ignore=ignore default=die] {module} config={agent}\n"
                        f"password required {probe} file={self.expected_new} log={probe_log}\n")
        else:
            account = "account required pam_permit.so\n"
            password = "password required pam_deny.so\n"
        pam = (
            f"#%PAM-1.0\n# {MARK} (the original is restored afterwards, kept meanwhile in {PAM_SAVED})\n"
            f"auth [success=ok default=ignore] {module} config={agent}\n"
            f"auth required {probe} file={self.expected} log={probe_log}\n"
            + account
            + "session required pam_permit.so\n"
            + password
        )
        target = "/etc/pam.d/lightdm"
        # A run killed before it could restore the file left ours there: put the original back.
        if os.path.exists(target) and MARK in open(target).read():
            if not os.path.exists(PAM_SAVED):
                raise SystemExit(f"{target} is this test's and {PAM_SAVED} is gone: restore it by hand")
            shutil.copy2(PAM_SAVED, target)
        if os.path.exists(target):
            shutil.copy2(target, PAM_SAVED)
            self.pam_backup = self.p("pam.d-lightdm.orig")
            shutil.copy2(target, self.pam_backup)
        else:
            self.pam_backup = ""
        with open(target, "w") as f:
            f.write(pam)

    def restore_pam(self):
        if self.pam_backup is None:
            return
        if self.pam_backup:
            shutil.copy2(self.pam_backup, "/etc/pam.d/lightdm")
        else:
            os.unlink("/etc/pam.d/lightdm")
        self.pam_backup = None
        if os.path.exists(PAM_SAVED):
            os.unlink(PAM_SAVED)

    def start_lightdm(self):
        for d in ("run", "cache", "log", "sessions", "markers"):
            os.makedirs(self.p(d), exist_ok=True)
        os.chmod(self.p("markers"), 0o1777)
        bus = self.p("dbus.sock")
        with open(self.p("dbus.conf"), "w") as f:
            f.write(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={bus}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
""")
        self.spawn(["dbus-daemon", "--config-file", self.p("dbus.conf"), "--nofork", "--nopidfile"], "dbus.log")
        for _ in range(50):
            if os.path.exists(bus):
                break
            time.sleep(0.1)
        xserver = self.p("xserver")
        with open(xserver, "w") as f:
            # LightDM passes vtN and -novtswitch, which Xvfb does not take; -ac: no access
            # control, so that xdotool and import need no cookie.
            f.write(f"""#!/bin/sh
echo "$@" > {self.p('xserver.args')}
args=""
for a in "$@"; do case "$a" in vt[0-9]*|-novtswitch) ;; *) args="$args $a" ;; esac; done
exec Xvfb $args -screen 0 1024x768x24 -ac -nolisten tcp
""")
        wrapper = self.p("session-wrapper")
        with open(wrapper, "w") as f:
            f.write(f"""#!/bin/sh
echo "session started for $(id -un)" >> {self.p('markers', 'session-started')}
exec "$@"
""")
        with open(self.p("session"), "w") as f:
            f.write("#!/bin/sh\nexec sleep 600\n")
        # The greeters list sessions from the system's directories (liblightdm does not read
        # --config) and ask for lightdm-xsession: the test session takes that name here.
        with open(self.p("sessions", "lightdm-xsession.desktop"), "w") as f:
            f.write(f"[Desktop Entry]\nName=sspr test session\nExec={self.p('session')}\nType=Application\n")
        for s in (xserver, wrapper, self.p("session")):
            os.chmod(s, 0o755)
        with open(self.p("lightdm.conf"), "w") as f:
            f.write(f"""[LightDM]
run-directory={self.p('run')}
cache-directory={self.p('cache')}
log-directory={self.p('log')}
sessions-directory={self.p('sessions')}
greeters-directory=/usr/share/xgreeters
[Seat:*]
xserver-command={xserver}
greeter-session={GREETERS[self.greeter]}
user-session=lightdm-xsession
session-wrapper={wrapper}
greeter-hide-users=true
greeter-show-manual-login=true
greeter-allow-guest=false
allow-guest=false
""")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus}",
               "LANG": "C.UTF-8"}
        self.lightdm = self.spawn(["lightdm", "-d", "--config", self.p("lightdm.conf")], "lightdm.out", env=env)
        self.lightdm_log = self.p("log", "lightdm.log")
        self.wait_log("Greeter connected", 60)
        # The greeter asks for the user name through PAM's first prompt ("login:") once its
        # window is up.
        self.wait_log("Prompt greeter with", 60)
        args = open(self.p("xserver.args")).read().split()
        self.display = next(a for a in args if a.startswith(":"))
        self.env = dict(os.environ, DISPLAY=self.display)
        self.env.pop("XAUTHORITY", None)
        time.sleep(2 * SETTLE)  # the greeter draws its window

    # -- driving ------------------------------------------------------------------------
    def lightdm_text(self):
        try:
            with open(self.lightdm_log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def prompts(self):
        return self.lightdm_text().count("Prompt greeter with")

    def wait_log(self, needle, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if needle in self.lightdm_text():
                return
            if self.lightdm.poll() is not None:
                raise SystemExit("lightdm exited: see " + self.p("lightdm.out"))
            time.sleep(0.2)
        raise SystemExit(f"no '{needle}' in LightDM's log after {timeout} s: see {self.lightdm_log}")

    def wait_prompt(self, before, timeout=45):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.prompts() > before:
                time.sleep(SETTLE)  # the greeter draws it
                return True
            time.sleep(0.2)
        return False

    def xdo(self, *args):
        run(["xdotool", *args], env=self.env)

    def type_line(self, text):
        before = self.prompts()
        if text:
            self.xdo("type", "--delay", "40", text)
        self.xdo("key", "Return")
        return before

    def shot(self, n, step):
        png = self.p(f"{self.greeter}-{n:02d}-{step}.png")
        run(["import", "-display", self.display, "-window", "root", png], env=self.env)
        big = self.p("ocr.png")
        run(["convert", png, "-resize", "300%", "-colorspace", "Gray", big])
        tsv = run(["tesseract", big, "stdout", "--psm", "11", "tsv"], capture_output=True, text=True).stdout
        lines, box = {}, None
        for row in tsv.splitlines()[1:]:
            f = row.split("\t")
            if len(f) < 12 or not f[11].strip() or float(f[10]) < 0:
                continue
            key = (int(f[2]), int(f[3]), int(f[4]))
            lines.setdefault(key, []).append(f[11])
            x, y, w, h = (int(v) // 3 for v in f[6:10])
            if float(f[10]) > 40 and y > 30:  # the text, not the top panel
                box = (x, y, x + w, y + h) if box is None else (
                    min(box[0], x), min(box[1], y), max(box[2], x + w), max(box[3], y + h))
        ocr = " | ".join(" ".join(ws) for ws in lines.values())
        self.shots.append((step, png, ocr, box))
        return ocr

    def entry(self, png):
        """slick-greeter's entry: the one solid white box on its dark screen. Returns its
        (x, y, w, h) or None when no part of it taller than ENTRY_MIN is in view. Thin white
        text is eroded away first, so only a solid area is left."""
        geo = run(["convert", png, "-crop", "1024x728+0+40", "+repage", "-colorspace", "Gray",
                   "-threshold", "90%", "-morphology", "Erode", "Rectangle:9x9", "-format", "%@", "info:"],
                  capture_output=True, text=True, check=False).stdout.strip()
        m = re.match(r"(\d+)x(\d+)\+(\d+)\+(\d+)", geo)
        if not m:
            return None
        w, h, x, y = (int(v) for v in m.groups())
        if w < 100 or h + 8 < ENTRY_MIN:
            return None
        return (x - 4, y + 40 - 4, w + 8, h + 8)

    def placeholder(self, png, box):
        """The text in the entry (its placeholder when empty), read from a crop of it."""
        x, y, w, h = box
        reads = []
        for level in (["-normalize"], ["-level", "30%,80%"], ["-threshold", "70%"]):
            crop = self.p("entry.png")
            run(["convert", png, "-crop", f"{w - 4}x{h - 4}+{x + 2}+{y + 2}", "+repage", "-resize", "400%",
                 "-colorspace", "Gray", *level, crop])
            reads.append(run(["tesseract", crop, "stdout", "--psm", "7"], capture_output=True, text=True,
                             check=False).stdout.strip())
        return reads

    def check(self, step, ocr):
        exp = EXPECT[step]
        for phrase in exp["message"]:
            ok, score, window = seen(phrase, ocr)
            self.rows.append((step, phrase, ok, score, window))
        if self.greeter != "slick":
            return
        png = self.shots[-1][1]
        box = self.entry(png)
        self.rows.append((step, "entry in view (white box)", box is not None, 1.0 if box else 0.0,
                          f"entry {box[2]}x{box[3]} at {box[0]},{box[1]}" if box else "no entry on screen"))
        best = (False, 0.0, "")
        for read in self.placeholder(png, box) if box else []:
            got = seen(exp["prompt"], read)
            if got[1] > best[1] or (got[0] and not best[0]):
                best = got
        self.rows.append((step, f"entry: {exp['prompt']}", *best))

    def fail_row(self, step, why):
        self.rows.append((step, why, False, 0.0, ""))

    def session_started(self, n, password_label):
        marker = self.p("markers", "session-started")
        deadline = time.time() + 40
        while time.time() < deadline and not os.path.exists(marker):
            time.sleep(0.3)
        started = os.path.exists(marker)
        probe = open(self.p("probe.log")).read() if os.path.exists(self.p("probe.log")) else ""
        self.shot(n, "session")
        self.rows.append(("session", "the session starts (marker file)", started, 1.0 if started else 0.0,
                          open(marker).read().strip() if started else "no marker"))
        matched = probe.strip().endswith(" match")
        self.rows.append(("session", f"signed in with the {password_label} password (pam_probe)",
                          matched and started, 1.0 if matched else 0.0,
                          probe.strip().replace("\n", "; ")[-60:]))

    def drive(self):
        self.xdo("type", "--delay", "40", USER)
        before = self.type_line("")
        # The user name goes to PAM; pam_sspr's hint and the password prompt come next.
        if not self.wait_prompt(before):
            return self.fail_row("first-prompt", "a PAM prompt after the user name")
        if self.scenario == "unreachable":
            return self.drive_unreachable()
        if self.scenario == "broken":
            return self.drive_broken()
        if self.scenario == "expired":
            return self.drive_expired()
        return self.drive_reset()

    def drive_expired(self):
        """The old password at the first prompt is right but expired: LightDM asks the password
        stack (pam_chauthtok, flags 0); pam_sspr says so, asks the current password and a new
        one twice, shows the server's refusal of a too short one, changes it through sspr and
        hands the new one to pam_probe; the session starts and the server has the change."""
        steps = [(OLD_PASSWORD, "expired"), (OLD_PASSWORD, None), (SHORT_PASSWORD, None),
                 (SHORT_PASSWORD, "expired-rule"), (NEW_PASSWORD, None)]
        n = 40
        for answer, step in steps:
            before = self.type_line(answer)
            if not self.wait_prompt(before):
                return self.fail_row(step or "expired", "the next prompt (none came)")
            if step:
                n += 1
                self.check(step, self.shot(n, step))
        self.type_line(NEW_PASSWORD)
        if self.greeter == "slick":
            self.wait_log("Authenticate result", 45)
            time.sleep(2 * SETTLE)
            n += 1
            self.check("changed", self.shot(n, "changed"))
            self.xdo("key", "Return")
        self.session_started(n + 1, "NEW (handed on by the change)")
        out = run([os.path.join(DEBUG, "sspr"), "audit", "--activity", "change_password",
                   "--format", "json"], capture_output=True, text=True, check=False,
                  env=self.server_env).stdout
        try:
            events = json.loads(out or "[]")
        except ValueError:
            events = []
        done = [e for e in events if e.get("result") == "success" and e.get("target") == USER
                and e.get("client_type") == "logon_screen"]
        self.rows.append(("server", "sspr changed it (audit: change_password, logon_screen)",
                          bool(done), 1.0 if done else 0.0,
                          f"{len(events)} change_password event(s)"))

    def drive_broken(self):
        """A config the agent cannot read: a plain password prompt, and the old password signs
        in (the greeter must not hang at "Signing you in…")."""
        self.check("broken", self.shot(31, "broken"))
        self.type_line(OLD_PASSWORD)
        self.session_started(32, "OLD")

    def drive_unreachable(self):
        """Enter, 1 (reset): the agent cannot reach the server, says so, and asks for the
        password as usual; the old password signs in."""
        for answer in ("", "1"):
            before = self.type_line(answer)
            if not self.wait_prompt(before):
                return self.fail_row("unreachable", "the next prompt (none came)")
        self.check("unreachable", self.shot(21, "unreachable"))
        self.type_line(OLD_PASSWORD)
        self.session_started(22, "OLD")

    def drive_reset(self):
        n = 0
        steps = [("first-prompt", ""), ("menu", "1"), ("method", "1")]
        for step, answer in steps:
            n += 1
            self.check(step, self.shot(n, step))
            sent = len(self.outbox())
            before = self.type_line(answer)
            if not self.wait_prompt(before):
                return self.fail_row(step, "the next prompt (none came)")
        n += 1
        self.check("code", self.shot(n, "code"))
        code = None
        for _ in range(50):
            msgs = self.outbox()
            if len(msgs) > sent:
                newest = max(msgs, key=lambda m: m["id"])
                found = re.findall(r"\b\d{6,10}\b", newest.get("body") or "")
                if found:
                    code = found[0]
                    break
            time.sleep(0.2)
        if not code:
            return self.fail_row("code", "a code in `sspr outbox`")
        wrong = WRONG_CODE_DIGITS * len(code) if code != WRONG_CODE_DIGITS * len(code) else "1" * len(code)
        before = self.type_line(wrong)
        if not self.wait_prompt(before):
            return self.fail_row("wrong-code", "the prompt after a wrong code")
        n += 1
        self.check("wrong-code", self.shot(n, "wrong-code"))
        # (step to check after typing the answer, or None: no screenshot)
        for step, answer in [("new-password", code), ("retype", SHORT_PASSWORD),
                             ("rule-broken", SHORT_PASSWORD), (None, NEW_PASSWORD),
                             ("mismatch", NEW_PASSWORD[::-1]), (None, NEW_PASSWORD),
                             ("outcome", NEW_PASSWORD)]:
            before = self.type_line(answer)
            if not self.wait_prompt(before):
                return self.fail_row(step or "retype", "the prompt (none came)")
            if step:
                n += 1
                self.check(step, self.shot(n, step))
        # From now on only the new password signs in.
        with open(self.expected, "w") as f:
            f.write(NEW_PASSWORD + "\n")
        self.type_line("")
        self.session_started(n + 1, "NEW")

    # -- teardown -----------------------------------------------------------------------
    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
        # The user's session runs in its own process group under LightDM: end what runs as the user.
        if self.user_created:
            uid = pwd.getpwnam(USER).pw_uid
            for pid in os.listdir("/proc"):
                try:
                    if pid.isdigit() and os.stat(f"/proc/{pid}").st_uid == uid:
                        os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.5)
        self.restore_pam()
        if self.user_created:
            run(["userdel", USER], check=False, stderr=subprocess.DEVNULL)
            self.user_created = False


def docs(results, elapsed):
    out = os.path.join(ROOT, "docs", "greeter")
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        if old.endswith(".png"):
            os.unlink(os.path.join(out, old))
    md = ["# The reset at a real LightDM greeter, read back from the screen", "",
          "Made by `tests/greeter/run` (see tests/greeter/README.md): LightDM 1.26 under Xvfb, "
          "pam_sspr.so in the `lightdm` PAM service, the real sspr server, xdotool typing, "
          "tesseract reading each screenshot. Crops of the screen around the text read.", "",
          f"Last run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {elapsed:.0f} s in all "
          "(2 shared cores; tesseract takes most of it).", "",
          "| greeter | scenario | checks passed | time |", "|---|---|---|---|"]
    for r in results:
        passed = sum(1 for row in r.rows if row[2])
        md.append(f"| {GREETERS[r.greeter]} | {SCENARIOS[r.scenario]} | {passed} of {len(r.rows)} | {r.elapsed:.0f} s |")
    md += ["", "What the checks mean, and what an earlier run found: "
           "[tests/greeter/README.md](../../tests/greeter/README.md).", ""]
    for r in results:
        passed = sum(1 for row in r.rows if row[2])
        md += [f"## {GREETERS[r.greeter]}, {SCENARIOS[r.scenario]}: {passed} of {len(r.rows)} checks passed "
               f"({r.elapsed:.0f} s)", "",
               "| step | should be visible | seen | OCR read (best match) |", "|---|---|---|---|"]
        for step, label, ok, score, window in r.rows:
            md.append(f"| {step} | {label} | {'yes' if ok else '**NO**'} ({score:.2f}) | {window} |")
        md.append("")
        for step, png, ocr, box in r.shots:
            name = os.path.basename(png)
            dst = os.path.join(out, name)
            crop = []
            if box:
                x0, y0 = max(0, box[0] - 60), max(0, box[1] - 50)
                x1, y1 = min(1024, max(box[2] + 60, x0 + 400)), min(768, box[3] + 50)  # the whole entry
                crop = ["-crop", f"{x1 - x0}x{y1 - y0}+{x0}+{y0}", "+repage"]
            run(["convert", png, *crop, "-colors", "64", dst])
            md += [f"### {step}", "", f"![{r.greeter} {step}]({name})", "",
                   f"OCR: `{ocr.replace('`', '')[:300]}`", ""]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")


def report(r):
    print(f"\n== {GREETERS[r.greeter]}: {SCENARIOS[r.scenario]}")
    print(f"{'step':<14} {'should be visible':<44} {'seen':<9} OCR excerpt")
    for step, label, ok, score, window in r.rows:
        print(f"{step:<14} {label[:44]:<44} {('yes' if ok else 'NO') + f' {score:.2f}':<9} {window[:60]}")
    bad = [row for row in r.rows if not row[2]]
    print(f"-- {len(r.rows) - len(bad)} of {len(r.rows)} checks passed")
    return not bad and r.rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--greeter", choices=["gtk", "slick", "both"], default="both")
    ap.add_argument("--scenario", choices=["reset", "unreachable", "broken", "expired", "all"], default="all")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, screenshots)")
    ap.add_argument("--docs", action="store_true", help="write docs/greeter/ (screenshots, results.md)")
    ap.add_argument("--break-step", metavar="STEP", choices=list(EXPECT),
                    help="expect a wrong text at STEP: the run must then fail (checks the check)")
    a = ap.parse_args()

    def terminated(signum, _frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, terminated)  # still restore /etc/pam.d/lightdm, remove the user
    if a.break_step:
        EXPECT[a.break_step]["message"] = ["Your account has been deleted forever"]
    greeters = ["gtk", "slick"] if a.greeter == "both" else [a.greeter]
    scenarios = list(SCENARIOS) if a.scenario == "all" else [a.scenario]
    t0 = time.time()
    results, all_ok = [], True
    for g, scenario in [(g, sc) for g in greeters for sc in scenarios]:
        tmp = tempfile.mkdtemp(prefix=f"sspr-greeter-{g}-{scenario}-")
        os.chmod(tmp, 0o755)
        r = Run(g, tmp, a, scenario)
        t = time.time()
        failed = None
        try:
            r.start_server()
            r.create_user()
            r.write_pam()
            r.start_lightdm()
            r.drive()
        except SystemExit as e:
            failed = str(e)
        except Exception as e:  # noqa: BLE001 - reported as a failed run
            failed = f"{type(e).__name__}: {e}"
        finally:
            r.stop()
        if failed:
            r.fail_row("setup", failed)
        reached = {row[0] for row in r.rows}
        for step in STEPS[scenario]:
            # A step with nothing to read on this greeter (GTK shows no prompt text) has no row.
            nothing_to_read = g != "slick" and step in EXPECT and (
                not EXPECT[step]["message"] or step in SLICK_ONLY)
            if step not in reached and not nothing_to_read:
                r.fail_row(step, "not reached")
        r.elapsed = time.time() - t
        ok = report(r)
        print(f"-- {GREETERS[g]}, {scenario}: {r.elapsed:.0f} s; files in {tmp}")
        if not ok:
            all_ok = False
            print("-- the agent's log (syslog):")
            for line in r.syslog.lines[-40:] if hasattr(r, "syslog") else []:
                print("   " + line)
            print(f"-- LightDM's log: {r.lightdm_log if hasattr(r, 'lightdm_log') else tmp}; "
                  f"screenshots: {tmp}/{g}-NN-STEP.png")
        results.append((r, tmp))
    elapsed = time.time() - t0
    if a.docs and all_ok:
        docs([r for r, _ in results], elapsed)
    for r, tmp in results:
        if not a.keep and all_ok:
            shutil.rmtree(tmp, ignore_errors=True)
        elif not all_ok:
            print(f"kept for inspection: {tmp}")
    print(f"\ngreeter test: {'PASS' if all_ok else 'FAIL'} in {elapsed:.0f} s")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
