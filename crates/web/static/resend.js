// sspr: "Send a new code" waits until the code just sent has had time to arrive, and says how
// long: the button is disabled and a countdown (read by screen readers when it ends) stands
// beside it. Without JavaScript the button works at once; the server's code limits still hold.
(function () {
  "use strict";
  function init() {
    var b = document.getElementById("resend");
    var out = document.getElementById("resend-wait");
    if (!b || !out) return;
    var left = parseInt(b.getAttribute("data-wait") || "0", 10);
    var text = b.getAttribute("data-wait-text") || "";
    if (!(left > 0)) return;
    b.disabled = true;
    function tick() {
      if (left <= 0) {
        b.disabled = false;
        out.textContent = "";
        return;
      }
      out.textContent = text.replace("{s}", String(left));
      left -= 1;
      setTimeout(tick, 1000);
    }
    tick();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
