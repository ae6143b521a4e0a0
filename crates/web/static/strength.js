// sspr password strength meter. While the user types, the server is asked (POST
// /password/check, with the page's CSRF token) whether its rules would take the password:
// the same check a reset or change runs (length, common and breached passwords, the user ID).
// A refused password shows why, never "Strong"; an accepted one gets this rough score, at
// least "Fair". Without an answer the score alone shows; the directory's own rules still
// speak when the password is set.
(function () {
  "use strict";
  var COMMON = ["password", "passwort", "123456", "qwerty", "letmein", "welcome", "admin",
    "iloveyou", "monkey", "dragon", "abc123", "111111", "sunshine", "football", "summer", "winter"];

  function score(pw) {
    if (!pw) return 0;
    var lower = pw.toLowerCase();
    for (var i = 0; i < COMMON.length; i++) {
      if (lower.indexOf(COMMON[i]) !== -1 && pw.length < COMMON[i].length + 6) return 0;
    }
    var pool = 0;
    if (/[a-z]/.test(pw)) pool += 26;
    if (/[A-Z]/.test(pw)) pool += 26;
    if (/[0-9]/.test(pw)) pool += 10;
    if (/[^a-zA-Z0-9]/.test(pw)) pool += 33;
    // Repeats and runs add little: count distinct characters, not length, past a point.
    var distinct = {};
    for (var j = 0; j < pw.length; j++) distinct[pw[j]] = 1;
    var n = Math.min(pw.length, Object.keys(distinct).length * 2);
    var bits = n * Math.log2(Math.max(pool, 2));
    if (bits < 28) return 0;
    if (bits < 40) return 1;
    if (bits < 60) return 2;
    if (bits < 80) return 3;
    return 4;
  }

  function start() {
    var input = document.getElementById("new_password");
    var meter = document.getElementById("strength");
    var text = document.getElementById("strength-text");
    if (!input || !meter || !text) return;
    var labels = (text.dataset.labels || "").split("|");
    var hint = text.textContent;
    var form = input.form;
    var csrf = form ? form.querySelector("input[name=csrf]") : null;
    var user = document.getElementById("user");
    var timer = null;
    var asked = 0;

    function show(s, words, verdict) {
      meter.value = s;
      meter.dataset.score = String(s);
      text.dataset.verdict = verdict;
      text.textContent = input.value ? (labels[s] || "") + " · " + words : hint;
    }

    function ask() {
      if (!csrf || !input.value) return;
      var mine = ++asked;
      var body = new URLSearchParams();
      body.set("csrf", csrf.value);
      body.set("new_password", input.value);
      if (user) body.set("user", user.value);
      fetch("/password/check", {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "Accept": "application/json" }
      }).then(function (r) {
        return r.ok ? r.json() : null;
      }).then(function (v) {
        // A later keystroke's answer wins; an answer to an older value is dropped.
        if (mine !== asked || !input.value) return;
        if (!v) {
          show(score(input.value), hint, "guess");
          return;
        }
        if (v.accepted) {
          show(Math.max(score(input.value), 2), hint, "accepted");
        } else {
          show(0, (v.problems && v.problems[0]) || hint, "refused");
        }
      }).catch(function () {
        if (mine === asked && input.value) show(score(input.value), hint, "guess");
      });
    }

    input.addEventListener("input", function () {
      if (timer) clearTimeout(timer);
      if (!csrf) {
        show(score(input.value), hint, "guess");
        return;
      }
      // No label until the server has answered: a guess could praise a refused password.
      meter.value = 0;
      text.dataset.verdict = "pending";
      text.textContent = hint;
      timer = setTimeout(ask, 300);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
