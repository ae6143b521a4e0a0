# sspr web portal: English. Every key here must also be in zh.ftl (a test checks).
# Messages returned by the services (wrong code, rejected password…) are translated in
# crates/app/src/messages.rs; this file holds the pages' own text.

## Shared
app-name = Password self-service
skip-to-content = Skip to content
language = Language
footer-help = Trouble? Your helpdesk can look up what happened with the support code shown on any error.
support-code = Support code
next = Next
cancel = Cancel
back-home = Back to the start
verify = Verify
error-title = Something went wrong
error-help = Go back and try again. If it keeps happening, give the support code to your helpdesk.
error-retry = Try again in { $minutes } minutes.
error-bad-form = The form could not be read. Reload the page and send it again.
error-csrf = This form has expired or did not come from this site. Reload the page and try again.
error-not-found = There is no such page. Start again from the home page.
flow-missing = Your reset session has ended or was never started. Enter your user ID to start again.
user-id = User ID
user-id-hint = Your sign-in name, for example jdoe or jdoe@example.com.
method-email = email
method-sms = text message
method-questions = security questions
method-totp = authenticator app

## Home
home-title = Locked out or forgot your password?
home-lead = Prove it is you with the security info you registered, then choose a new password. No helpdesk call needed.
home-reset = Reset my password
home-reset-hint = Forgot it, or it expired.
home-unlock = Unlock my account
home-unlock-hint = Too many wrong tries locked it; keep your password.
home-register = Set up my security info
home-register-hint = Register email, phone, questions or an authenticator app, so you can reset later.
home-admin = Administrators

## Reset and unlock
start-title-reset = Reset your password
start-title-unlock = Unlock your account
start-lead-reset = Enter your user ID. Next, you will verify your identity with the security info you registered.
start-lead-unlock = Enter your user ID. After verifying your identity, your account is unlocked and your password stays the same.
pow-waiting = Checking your browser… this takes a moment.
pow-ready = Browser check done.
pow-noscript = This page needs JavaScript for a short automatic browser check. Turn JavaScript on, or use the "Forgot password?" option at your computer's sign-in screen.
needinfo-title = More security info is needed
needinfo-what = To reset your password yourself, first register your security info (an email address, a phone number, security questions or an authenticator app) while you still know your password.
needinfo-register = Register security info
needinfo-helpdesk = If you cannot sign in at all, contact your helpdesk.
methods-title = Verify your identity
methods-lead = Choose a way to prove it is you.
methods-legend = Verification methods
methods-verified = Already verified
step-of = Step { $n } of { $total }
verify-title = Enter the verification
code-label-email = Code from the email
code-label-sms = Code from the text message
code-label-totp = Code from your authenticator app
code-sent-to = We sent a code to { $to }. It can take a minute to arrive.
code-hint-totp = Open your authenticator app and enter the 6-digit code it shows for this account.
other-method = Use another method
password-title = Choose a new password
password-rules = Your new password must follow these rules
new-password = New password
confirm-password = Confirm new password
password-mismatch = The two passwords are not the same. Type the new password twice.
strength-hint = Longer is stronger: a few unrelated words make a good password.
strength-labels = Very weak|Weak|Fair|Good|Strong
set-password = Change password
unlock-title = Unlock your account
unlock-button = Unlock my account
done-title = All done
done-next-reset = Sign in with your new password. Devices that stored the old one (phone email, Wi-Fi) will ask for the new one.
done-next-unlock = Sign in with your current password.

## Registration

## Admin
