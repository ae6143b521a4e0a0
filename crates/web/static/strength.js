// sspr password strength meter. A rough guide while typing; the server's rules (length,
// breached and common passwords, the directory's own policy) decide. Nothing is sent anywhere.
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
    input.addEventListener("input", function () {
      var s = score(input.value);
      meter.value = s;
      meter.dataset.score = String(s);
      text.textContent = input.value ? (labels[s] || "") + " · " + hint : hint;
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
