//! `pam_sspr.so`: the PAM shim. It turns PAM's C conversation into [`Conversation`], reads the
//! config, and hands the rest to `sspr_agent::login`. Everything here is about not harming a
//! login: every path returns `PAM_IGNORE`, so the module can never grant or deny access; a
//! panic is caught at the boundary; a missing or bad config means no reset is offered, only
//! the plain "Password:" prompt, so that the next module finds the password it expects.
//!
//! Stack it first in `auth`, before the module that checks passwords, which must then take the
//! password from `PAM_AUTHTOK` (`try_first_pass`; pam-auth-update arranges that):
//!
//! ```text
//! auth [success=ok default=ignore] pam_sspr.so
//! auth [success=1 default=ignore]  pam_unix.so nullok try_first_pass
//! ```
//!
//! Arguments: `config=/path/to/logon.toml` (default `/etc/sspr/logon.toml`).
//!
//! In `password`, first, it changes an expired or must-change password through sspr
//! (`pam_sm_chauthtok`): the one place it answers for itself, with `PAM_SUCCESS` when sspr
//! changed the password and `PAM_AUTHTOK_ERR` when sspr refused it (the user was told why);
//! `PAM_IGNORE` when sspr cannot be used, so the next module may change it its own way:
//!
//! ```text
//! password [success=done ignore=ignore default=die] pam_sspr.so
//! password required pam_unix.so   # or pam_sss.so, pam_ldap.so
//! ```

// The PAM ABI is C; this crate is the one place that touches it.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;

use sspr_agent::api::Origin;
use sspr_agent::config::DEFAULT_PATH;
use sspr_agent::journal::Event;
use sspr_agent::login::{Next, Place, password_prompt, plain_prompt};
use sspr_agent::screen::Screen;
use sspr_agent::syslog::Syslog;
use sspr_agent::{AgentConfig, Cancelled, Conversation, HttpApi, Journal, Lang, ResetApi};
use zeroize::{Zeroize, Zeroizing};

pub mod ffi;

use ffi::{
    PAM_AUTHTOK, PAM_AUTHTOK_ERR, PAM_CONV, PAM_ERROR_MSG, PAM_IGNORE, PAM_OLDAUTHTOK,
    PAM_PRELIM_CHECK, PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_SILENT, PAM_SUCCESS,
    PAM_TEXT_INFO, PAM_UPDATE_AUTHTOK, PamConv, PamHandle, PamMessage, PamResponse,
};

/// # Safety
/// Called by libpam with a valid handle and `argc` C strings in `argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam passes argc valid NUL-terminated strings.
    let args = unsafe { ffi::args(argc, argv) };
    catch_unwind(AssertUnwindSafe(|| authenticate(pamh, flags, &args))).unwrap_or(PAM_IGNORE)
}

/// # Safety
/// Called by libpam; the module keeps no credentials.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_setcred(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_IGNORE
}

/// # Safety
/// Called by libpam with a valid handle and `argc` C strings in `argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_chauthtok(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam passes argc valid NUL-terminated strings.
    let args = unsafe { ffi::args(argc, argv) };
    catch_unwind(AssertUnwindSafe(|| chauthtok(pamh, flags, &args))).unwrap_or(PAM_IGNORE)
}

/// The configuration; `None` when it is not set up (installed but not configured) or broken
/// (logged): either way the module stays out of the way.
fn load_config(args: &[String]) -> Option<AgentConfig> {
    match AgentConfig::load(&config_path(args)) {
        Ok(cfg) => cfg,
        Err(e) => {
            Syslog::new(PathBuf::from("/dev/log"), "pam_sspr", false)
                .event(&Event::ConfigError { cause: e.0 });
            None
        }
    }
}

fn chauthtok(pamh: *mut PamHandle, flags: c_int, args: &[String]) -> c_int {
    // SAFETY: pamh is the live handle libpam gave us.
    let handle = unsafe { ffi::Handle::new(pamh) };
    let Some(cfg) = load_config(args) else {
        return PAM_IGNORE;
    };
    if !handle
        .service()
        .as_deref()
        .is_some_and(|s| cfg.offers_reset_to(s))
    {
        return PAM_IGNORE;
    }
    // The first pass only asks whether the module can take part: nothing is asked or sent.
    if flags & PAM_PRELIM_CHECK != 0 {
        return PAM_SUCCESS;
    }
    if flags & PAM_UPDATE_AUTHTOK == 0 {
        return PAM_IGNORE;
    }
    let Some(user) = handle.user() else {
        return PAM_IGNORE;
    };
    let env = |k: &str| handle.env(k).or_else(|| std::env::var(k).ok());
    let lang = cfg.lang(env);
    // The current password, if a module before this one asked for it. libpam wipes the one
    // typed at authentication when that returns, so after a login it is asked again.
    let current = handle.secret_item(PAM_OLDAUTHTOK);
    let journal: Arc<dyn Journal> = Arc::new(Syslog::new(
        cfg.syslog_socket.clone(),
        "pam_sspr",
        cfg.verbose,
    ));
    let service = handle.service();
    let origin = Origin {
        ssh: service.as_deref() == Some("sshd"),
        remote_host: handle.rhost(),
    };
    let mut api = match HttpApi::new(&cfg, lang, journal.clone()) {
        Ok(api) => api.with_origin(origin),
        Err(e) => {
            journal.event(&Event::ConfigError { cause: e.0 });
            return PAM_IGNORE;
        }
    };
    let mut conv = PamConversation {
        handle: &handle,
        silent: flags & PAM_SILENT != 0,
        raw: None,
    };
    let req = sspr_agent::change::ChangeRequest {
        lang,
        user: &user,
        current: current.clone(),
        short: Screen::detect(cfg.screen, service.as_deref()).is_greeter(),
    };
    match sspr_agent::change::change(&mut conv, req, &mut api, journal.as_ref()) {
        sspr_agent::change::Changed::Yes(new) => {
            // For the modules after this one (a keyring re-encrypts with old and new).
            if let Some(old) = &current {
                handle.set_secret_item(PAM_OLDAUTHTOK, old.as_bytes());
            }
            handle.set_secret_item(PAM_AUTHTOK, new.as_bytes());
            PAM_SUCCESS
        }
        sspr_agent::change::Changed::No => PAM_AUTHTOK_ERR,
        sspr_agent::change::Changed::Unavailable => PAM_IGNORE,
    }
}

fn config_path(args: &[String]) -> PathBuf {
    args.iter()
        .find_map(|a| a.strip_prefix("config="))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

fn authenticate(pamh: *mut PamHandle, flags: c_int, args: &[String]) -> c_int {
    let began = std::time::Instant::now();
    // SAFETY: pamh is the live handle libpam gave us.
    let handle = unsafe { ffi::Handle::new(pamh) };
    if handle.authtok_is_set() {
        // An earlier module already asked for the password; nothing for us to add.
        return PAM_IGNORE;
    }
    // The user name comes first, on every path, as from any password module: a greeter that
    // starts without one (LightDM's "Other…", a console) reads the first prompt as the name,
    // so a password prompt before it would take the name for the password.
    let Some(user) = handle.user() else {
        return PAM_IGNORE;
    };
    let mut conv = PamConversation {
        handle: &handle,
        silent: flags & PAM_SILENT != 0,
        raw: None,
    };
    let env = |k: &str| handle.env(k).or_else(|| std::env::var(k).ok());
    // Installed but not configured, or misconfigured: no reset, just the password prompt the
    // next module expects (it may be stacked with use_first_pass).
    let Some(cfg) = load_config(args) else {
        let next = plain_prompt(&mut conv, Lang::from_env(env));
        return hand_on(&handle, next, conv.raw.take());
    };
    let lang = cfg.lang(env);
    let service = handle.service();
    if !service.as_deref().is_some_and(|s| cfg.offers_reset_to(s)) {
        let next = plain_prompt(&mut conv, lang);
        return hand_on(&handle, next, conv.raw.take());
    }
    let journal: Arc<dyn Journal> = Arc::new(Syslog::new(
        cfg.syslog_socket.clone(),
        "pam_sspr",
        cfg.verbose,
    ));
    let ssh = service.as_deref() == Some("sshd");
    let origin = Origin {
        ssh,
        remote_host: handle.rhost(),
    };
    let grace = cfg.ssh_login_grace.filter(|_| ssh);
    let place = Place {
        screen: Screen::detect(cfg.screen, service.as_deref()),
        ssh,
        // sshd's clock started at the connection, a moment before this module: an estimate
        // on the safe side of it is all the user needs.
        time_left: grace.map(|g| {
            Box::new(move || Some(g.saturating_sub(began.elapsed()).as_secs()))
                as Box<dyn Fn() -> Option<u64>>
        }),
        has_keyring: Box::new(|| has_keyring(&user)),
    };
    let connect = || -> Result<Box<dyn ResetApi>, sspr_agent::ConfigError> {
        Ok(Box::new(
            HttpApi::new(&cfg, lang, journal.clone())?.with_origin(origin),
        ))
    };
    let next = password_prompt(
        &mut conv,
        &cfg,
        lang,
        &user,
        journal.as_ref(),
        &place,
        connect,
    );
    hand_on(&handle, next, conv.raw.take())
}

/// Whether `user` has a GNOME login keyring or a KDE wallet, both encrypted with the login
/// password: after a reset they still open with the old one only.
fn has_keyring(user: &str) -> bool {
    let Some(home) = ffi::home_of(user) else {
        return false;
    };
    [
        ".local/share/keyrings/login.keyring",
        ".local/share/kwalletd/kdewallet.kwl",
    ]
    .iter()
    .any(|f| home.join(f).is_file())
}

/// Gives the password to the rest of the stack. Always `PAM_IGNORE`: the module never decides.
/// Bytes that are not UTF-8 (a Latin-1 password) go on exactly as typed.
fn hand_on(handle: &ffi::Handle, next: Next, raw: Option<Zeroizing<Vec<u8>>>) -> c_int {
    if let Next::UsePassword(pw) = next {
        match raw {
            Some(bytes) if String::from_utf8_lossy(&bytes) == pw.as_str() => {
                handle.set_authtok(&bytes)
            }
            _ => handle.set_authtok(pw.as_bytes()),
        }
    }
    PAM_IGNORE
}

/// PAM's conversation function as a [`Conversation`].
pub struct PamConversation<'h> {
    handle: &'h ffi::Handle,
    /// `PAM_SILENT`: prompts only, no texts.
    silent: bool,
    /// The last hidden answer, when it was not UTF-8.
    raw: Option<Zeroizing<Vec<u8>>>,
}

impl PamConversation<'_> {
    fn ask(&mut self, style: c_int, text: &str) -> Result<String, Cancelled> {
        if self.silent && matches!(style, PAM_TEXT_INFO | PAM_ERROR_MSG) {
            return Ok(String::new());
        }
        let text = CString::new(text.replace('\0', "")).map_err(|_| Cancelled)?;
        let msg = PamMessage {
            msg_style: style,
            msg: text.as_ptr(),
        };
        let msgs: [*const PamMessage; 1] = [&msg];
        let mut resp: *mut PamResponse = std::ptr::null_mut();
        // Fetched for every message: the application may replace its conversation meanwhile.
        let conv_ptr = self.handle.item(PAM_CONV).ok_or(Cancelled)? as *const PamConv;
        // SAFETY: libpam owns the item and keeps it valid until it is replaced.
        let conv = unsafe { &*conv_ptr };
        let Some(f) = conv.conv else {
            return Err(Cancelled);
        };
        // SAFETY: one message; the application allocates `resp`, which we own afterwards.
        let rc = unsafe { f(1, msgs.as_ptr(), &mut resp, conv.appdata_ptr) };
        // SAFETY: resp is null or a malloc'd array of one response from the application.
        let answer = unsafe { ffi::take_response(resp) };
        if rc != PAM_SUCCESS {
            return Err(Cancelled);
        }
        match (answer, style) {
            (Some(bytes), _) => match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    self.raw = None;
                    Ok(text.to_string())
                }
                Err(_) => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    self.raw = Some(bytes);
                    Ok(text)
                }
            },
            (None, PAM_TEXT_INFO | PAM_ERROR_MSG) => Ok(String::new()),
            (None, _) => Err(Cancelled),
        }
    }
}

impl Conversation for PamConversation<'_> {
    fn prompt(&mut self, text: &str) -> Result<String, Cancelled> {
        self.ask(PAM_PROMPT_ECHO_ON, text)
    }

    fn secret(&mut self, text: &str) -> Result<String, Cancelled> {
        self.ask(PAM_PROMPT_ECHO_OFF, text)
    }

    fn info(&mut self, text: &str) {
        let _ = self.ask(PAM_TEXT_INFO, text);
    }

    fn error(&mut self, text: &str) {
        let _ = self.ask(PAM_ERROR_MSG, text);
    }
}

impl ffi::Handle {
    fn authtok_is_set(&self) -> bool {
        self.item(PAM_AUTHTOK)
            // SAFETY: PAM_AUTHTOK is a NUL-terminated string owned by libpam.
            .map(|p| {
                unsafe { CStr::from_ptr(p as *const c_char) }
                    .to_bytes()
                    .is_empty()
            })
            .is_some_and(|empty| !empty)
    }

    fn set_authtok(&self, pw: &[u8]) {
        self.set_secret_item(PAM_AUTHTOK, pw);
    }

    fn set_secret_item(&self, item_type: c_int, pw: &[u8]) {
        let Ok(c) = CString::new(pw) else { return };
        let mut bytes = c.into_bytes_with_nul();
        // SAFETY: libpam copies the string; we wipe ours right after.
        unsafe { ffi::pam_set_item(self.raw(), item_type, bytes.as_ptr() as *const c_void) };
        bytes.zeroize();
    }

    /// A password item (PAM_AUTHTOK, PAM_OLDAUTHTOK), if set and not empty.
    fn secret_item(&self, item_type: c_int) -> Option<Zeroizing<String>> {
        let p = self.item(item_type)?;
        // SAFETY: the password items are NUL-terminated strings owned by libpam.
        let bytes = unsafe { CStr::from_ptr(p as *const c_char) }.to_bytes();
        let text = std::str::from_utf8(bytes).ok()?;
        (!text.is_empty()).then(|| Zeroizing::new(text.to_string()))
    }
}
