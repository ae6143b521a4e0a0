//! The few libpam calls and structures the module needs (Linux-PAM ABI, `<security/pam_modules.h>`).

use std::ffi::{CStr, CString, c_char, c_int, c_void};

use zeroize::{Zeroize, Zeroizing};

pub const PAM_SUCCESS: c_int = 0;
pub const PAM_IGNORE: c_int = 25;
pub const PAM_SILENT: c_int = 0x8000;
/// `pam_sm_chauthtok` results and flags.
pub const PAM_AUTHTOK_ERR: c_int = 20;
pub const PAM_PRELIM_CHECK: c_int = 0x4000;
pub const PAM_UPDATE_AUTHTOK: c_int = 0x2000;

pub const PAM_SERVICE: c_int = 1;
pub const PAM_RHOST: c_int = 4;

pub const PAM_CONV: c_int = 5;
pub const PAM_AUTHTOK: c_int = 6;
pub const PAM_OLDAUTHTOK: c_int = 7;

pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
pub const PAM_PROMPT_ECHO_ON: c_int = 2;
pub const PAM_ERROR_MSG: c_int = 3;
pub const PAM_TEXT_INFO: c_int = 4;

#[repr(C)]
pub struct PamHandle {
    _private: [u8; 0],
}

#[repr(C)]
pub struct PamMessage {
    pub msg_style: c_int,
    pub msg: *const c_char,
}

#[repr(C)]
pub struct PamResponse {
    pub resp: *mut c_char,
    pub resp_retcode: c_int,
}

pub type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *const *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
pub struct PamConv {
    pub conv: Option<ConvFn>,
    pub appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    pub fn pam_get_item(
        pamh: *const PamHandle,
        item_type: c_int,
        item: *mut *const c_void,
    ) -> c_int;
    pub fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    pub fn pam_get_user(
        pamh: *mut PamHandle,
        user: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
    pub fn pam_getenv(pamh: *mut PamHandle, name: *const c_char) -> *const c_char;
}

/// The module's arguments.
///
/// # Safety
/// `argv` holds `argc` valid NUL-terminated strings (or is null with `argc` 0).
pub unsafe fn args(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    if argv.is_null() || argc <= 0 {
        return Vec::new();
    }
    (0..argc as usize)
        .filter_map(|i| {
            // SAFETY: i < argc, per the caller's contract.
            let p = unsafe { *argv.add(i) };
            // SAFETY: as above.
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        })
        .collect()
}

/// Takes the bytes of a one-element response array and frees it, wiping the answer first.
///
/// # Safety
/// `resp` is null or a `malloc`'d array of one `PamResponse` whose `resp` is null or `malloc`'d.
pub unsafe fn take_response(resp: *mut PamResponse) -> Option<Zeroizing<Vec<u8>>> {
    if resp.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    let r = unsafe { &mut *resp };
    let text = if r.resp.is_null() {
        None
    } else {
        // SAFETY: a NUL-terminated string from the application.
        let s = unsafe { CStr::from_ptr(r.resp) };
        let len = s.to_bytes().len();
        let bytes = Zeroizing::new(s.to_bytes().to_vec());
        // SAFETY: the application's buffer holds `len` bytes before its NUL. `zeroize` wipes
        // them in a way the compiler may not drop as a dead store before `free`.
        unsafe {
            std::slice::from_raw_parts_mut(r.resp as *mut u8, len).zeroize();
            libc::free(r.resp as *mut c_void);
        }
        Some(bytes)
    };
    // SAFETY: the array itself was malloc'd by the application.
    unsafe { libc::free(resp as *mut c_void) };
    text
}

/// A live PAM handle.
pub struct Handle(*mut PamHandle);

impl Handle {
    /// # Safety
    /// `pamh` is the handle libpam passed to the module, valid for this call.
    pub unsafe fn new(pamh: *mut PamHandle) -> Handle {
        Handle(pamh)
    }

    pub fn raw(&self) -> *mut PamHandle {
        self.0
    }

    pub fn item(&self, item_type: c_int) -> Option<*const c_void> {
        let mut p: *const c_void = std::ptr::null();
        // SAFETY: a valid handle and an out-pointer.
        let rc = unsafe { pam_get_item(self.0, item_type, &mut p) };
        (rc == PAM_SUCCESS && !p.is_null()).then_some(p)
    }

    /// The user name, asking for it if no one has yet.
    pub fn user(&self) -> Option<String> {
        let mut p: *const c_char = std::ptr::null();
        // SAFETY: a valid handle; libpam owns the returned string.
        let rc = unsafe { pam_get_user(self.0, &mut p, std::ptr::null()) };
        if rc != PAM_SUCCESS || p.is_null() {
            return None;
        }
        // SAFETY: as above.
        let user = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        (!user.is_empty()).then_some(user)
    }

    /// The PAM service name (`login`, `gdm-password`, `sudo`…).
    pub fn service(&self) -> Option<String> {
        self.string_item(PAM_SERVICE)
    }

    /// PAM_RHOST: the remote host of the login (sshd sets the client's address).
    pub fn rhost(&self) -> Option<String> {
        self.string_item(PAM_RHOST).filter(|h| !h.is_empty())
    }

    fn string_item(&self, item_type: c_int) -> Option<String> {
        let p = self.item(item_type)?;
        // SAFETY: the string items are NUL-terminated strings owned by libpam.
        Some(
            unsafe { CStr::from_ptr(p as *const c_char) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// A variable of the PAM environment (`pam_env` sets `LANG` there).
    pub fn env(&self, name: &str) -> Option<String> {
        let name = CString::new(name).ok()?;
        // SAFETY: a valid handle; libpam owns the returned string.
        let p = unsafe { pam_getenv(self.0, name.as_ptr()) };
        // SAFETY: as above.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// The home directory of `user` from the system's user database (NSS: files, SSSD, LDAP).
pub fn home_of(user: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let name = CString::new(user).ok()?;
    // SAFETY: passwd is plain data; getpwnam_r fills it with pointers into `buf`.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let mut buf = vec![0 as c_char; 16 * 1024];
    // SAFETY: every pointer is valid for the call; buf outlives the use of pw's fields below.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pw.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir points into buf, NUL-terminated.
    let dir = unsafe { CStr::from_ptr(pw.pw_dir) };
    Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(
        dir.to_bytes(),
    )))
}
