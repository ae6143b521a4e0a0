// sspr: switching language keeps what was typed. The switcher is a plain link (it works
// without JavaScript, reloading the page in the other language); with this script, the
// fields of a form marked `data-keep` ride along in sessionStorage and are put back when the
// same form appears in the new language. Passwords, codes and hidden fields never do.
(function () {
  "use strict";
  var KEY = "sspr-keep:";

  function kept(el) {
    return el.name && el.type !== "password" && el.type !== "hidden" && el.type !== "submit" &&
      el.type !== "button" && el.autocomplete !== "one-time-code";
  }

  function save(form) {
    var values = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!kept(el)) return;
      if (el.type === "checkbox" || el.type === "radio") {
        values[el.name + "=" + el.value] = el.checked;
      } else {
        values[el.name] = el.value;
      }
    });
    try { sessionStorage.setItem(KEY + form.id, JSON.stringify(values)); } catch (e) { /* full or off */ }
  }

  function restore(form) {
    var raw = null;
    try {
      raw = sessionStorage.getItem(KEY + form.id);
      sessionStorage.removeItem(KEY + form.id);
    } catch (e) { return; }
    if (!raw) return;
    var values;
    try { values = JSON.parse(raw); } catch (e) { return; }
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!kept(el)) return;
      if (el.type === "checkbox" || el.type === "radio") {
        var k = el.name + "=" + el.value;
        if (Object.prototype.hasOwnProperty.call(values, k)) el.checked = !!values[k];
      } else if (Object.prototype.hasOwnProperty.call(values, el.name)) {
        el.value = values[el.name];
      }
    });
    form.setAttribute("data-restored", "true");
  }

  function init() {
    var forms = document.querySelectorAll("form[data-keep][id]");
    Array.prototype.forEach.call(forms, restore);
    Array.prototype.forEach.call(document.querySelectorAll("a.switch-lang"), function (a) {
      a.addEventListener("click", function () {
        Array.prototype.forEach.call(forms, save);
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
