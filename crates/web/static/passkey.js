// sspr passkeys: runs navigator.credentials.create (adding a passkey) or .get (using one in a
// reset) with the options the server put in the page, and sends the browser's answer with the
// form. The options and the answer travel in WebAuthn's JSON forms, so no byte juggling here.
(function () {
  "use strict";
  var box = document.getElementById("passkey");
  if (!box) return;
  var form = box.closest("form");
  var field = document.getElementById("credential");
  var status = document.getElementById("passkey-status");
  var button = form.querySelector("button[type=submit]");
  var creating = box.getAttribute("data-mode") === "create";

  function say(text) { if (status) status.textContent = text; }

  if (!window.PublicKeyCredential || !PublicKeyCredential.parseRequestOptionsFromJSON) {
    say(box.getAttribute("data-unsupported"));
    if (button) button.disabled = true;
    return;
  }

  form.addEventListener("submit", function (ev) {
    if (field.value) return;
    ev.preventDefault();
    var options = JSON.parse(box.getAttribute("data-options")).publicKey;
    var call = creating
      ? navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) })
      : navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
    if (button) button.disabled = true;
    call.then(function (cred) {
      field.value = JSON.stringify(cred.toJSON());
      form.submit();
    }, function (err) {
      if (button) button.disabled = false;
      say(box.getAttribute("data-failed") + " (" + err.name + ")");
    });
  });
})();
