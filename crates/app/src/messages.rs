//! What the services say to users, in English and Simplified Chinese: the sentences the API,
//! the logon agent and the web portal all show (the portal's own page text is in Fluent files
//! in `crates/web/locales`). Kept beside the services that use them, with a test that both
//! languages are complete.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Zh,
}

impl Lang {
    /// From an `Accept-Language` header or a `lang` value: `zh`, `zh-CN`, `zh-Hans` → Chinese.
    pub fn negotiate(header: &str) -> Lang {
        for part in header.split(',') {
            let tag = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag.starts_with("zh") {
                return Lang::Zh;
            }
            if tag.starts_with("en") {
                return Lang::En;
            }
        }
        Lang::En
    }
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    EnterUserId,
    ChooseMethod,
    RegistrationRequired,
    FlowInvalid,
    MethodNotOffered,
    CodeSent,
    AnswerQuestions,
    EnterTotp,
    EnterRecoveryCode,
    WrongRecoveryCode,
    NoScriptQuota,
    EnterPasskey,
    WrongPasskey,
    PasskeyCreate,
    PasskeyStartAgain,
    PasskeyNotRead,
    PasskeyRefused,
    RecoveryCodeFormat,
    WrongCode,
    WrongAnswers,
    NoCodeWaiting,
    DeliveryFailed,
    CodeFormat,
    TooManyCodes,
    Blocked,
    TooManyRequests,
    SetPassword,
    ReadyToUnlock,
    PasswordChanged,
    AccountUnlocked,
    DirectoryDown,
    DirectoryDenied,
    DirectoryProtected,
    UnlockNotOffered,
    SignInFailed,
    EnterPassword,
    SessionInvalid,
    NotEnabledForYou,
    Registered,
    NotYetRegistered,
    MethodDisabled,
    BadEmail,
    BadPhone,
    AddedPending,
    Verified,
    QuestionsSaved,
    TotpScan,
    RecoveryCodesCreated,
    MethodRemoved,
    Reviewed,
    NotSetPasswordStep,
    AlreadyFinishing,
    BrowserCheckFailed,
    NotAnAdmin,
    AdminOnly,
    OutcomeUnknown,
    AlreadyChanged,
    ChangedStillLocked,
    PasswordChangedByUser,
    ChangeLocked,
    MustChangePassword,
    FirstPasswordSet,
    InvitationInvalid,
    StoreUnavailable,
    Busy,
}

/// The Chinese variants docs/zh-glossary.md rules out: the tests of these messages and of
/// the portal's catalogue fail on any of them.
pub const NOT_IN_GLOSSARY: [&str; 12] = [
    "帐户",
    "帐号",
    "账号",
    "确认码",
    "校验码",
    "重设",
    "认证方式",
    "密保",
    "备用码",
    "服务台",
    "政策",
    "您",
];

pub const ALL_MSGS: [Msg; 65] = [
    Msg::EnterUserId,
    Msg::ChooseMethod,
    Msg::RegistrationRequired,
    Msg::FlowInvalid,
    Msg::MethodNotOffered,
    Msg::CodeSent,
    Msg::AnswerQuestions,
    Msg::EnterTotp,
    Msg::EnterRecoveryCode,
    Msg::WrongRecoveryCode,
    Msg::NoScriptQuota,
    Msg::EnterPasskey,
    Msg::WrongPasskey,
    Msg::PasskeyCreate,
    Msg::PasskeyStartAgain,
    Msg::PasskeyNotRead,
    Msg::PasskeyRefused,
    Msg::RecoveryCodeFormat,
    Msg::WrongCode,
    Msg::WrongAnswers,
    Msg::NoCodeWaiting,
    Msg::DeliveryFailed,
    Msg::CodeFormat,
    Msg::TooManyCodes,
    Msg::Blocked,
    Msg::TooManyRequests,
    Msg::SetPassword,
    Msg::ReadyToUnlock,
    Msg::PasswordChanged,
    Msg::AccountUnlocked,
    Msg::DirectoryDown,
    Msg::DirectoryDenied,
    Msg::DirectoryProtected,
    Msg::UnlockNotOffered,
    Msg::SignInFailed,
    Msg::EnterPassword,
    Msg::SessionInvalid,
    Msg::NotEnabledForYou,
    Msg::Registered,
    Msg::NotYetRegistered,
    Msg::MethodDisabled,
    Msg::BadEmail,
    Msg::BadPhone,
    Msg::AddedPending,
    Msg::Verified,
    Msg::QuestionsSaved,
    Msg::TotpScan,
    Msg::RecoveryCodesCreated,
    Msg::MethodRemoved,
    Msg::Reviewed,
    Msg::NotSetPasswordStep,
    Msg::AlreadyFinishing,
    Msg::BrowserCheckFailed,
    Msg::NotAnAdmin,
    Msg::AdminOnly,
    Msg::OutcomeUnknown,
    Msg::AlreadyChanged,
    Msg::ChangedStillLocked,
    Msg::PasswordChangedByUser,
    Msg::ChangeLocked,
    Msg::MustChangePassword,
    Msg::FirstPasswordSet,
    Msg::InvitationInvalid,
    Msg::StoreUnavailable,
    Msg::Busy,
];

pub fn t(lang: Lang, m: Msg) -> &'static str {
    use Msg::*;
    match (lang, m) {
        (Lang::En, EnterUserId) => "Enter your user ID.",
        (Lang::Zh, EnterUserId) => "请输入你的用户 ID。",
        (Lang::En, ChooseMethod) => "Choose how to verify that it is you.",
        (Lang::Zh, ChooseMethod) => "请选择验证身份的方式。",
        (Lang::En, RegistrationRequired) => {
            "More security info is needed before you can reset your password here. Register your security info, or contact your helpdesk."
        }
        (Lang::Zh, RegistrationRequired) => {
            "需要更多安全信息才能在这里重置密码。请先注册安全信息，或联系你的技术支持。"
        }
        (Lang::En, BrowserCheckFailed) => {
            "The automatic browser check did not pass or has expired. Reload the page and try again; JavaScript must be on."
        }
        (Lang::Zh, BrowserCheckFailed) => {
            "浏览器自动检查未通过或已过期。请刷新页面后重试；需要启用 JavaScript。"
        }
        (Lang::En, NotAnAdmin) => {
            "The user name or password is wrong, or this account may not use the admin pages."
        }
        (Lang::Zh, NotAnAdmin) => "用户名或密码错误，或此账户无权使用管理页面。",
        (Lang::En, AdminOnly) => {
            "Only administrators can see or change the policy. Helpdesk staff see users, the audit log and password expiry."
        }
        (Lang::Zh, AdminOnly) => {
            "只有管理员可以查看或更改策略。技术支持人员可以查看用户、审计日志和密码到期情况。"
        }
        (Lang::En, StoreUnavailable) => "The service cannot save right now. Try again in a minute.",
        (Lang::Zh, StoreUnavailable) => "服务暂时无法保存数据。请一分钟后再试。",
        (Lang::En, FlowInvalid) => "This reset session has expired or is not valid. Start again.",
        (Lang::Zh, FlowInvalid) => "此重置会话已过期或无效。请重新开始。",
        (Lang::En, MethodNotOffered) => {
            "That method is not available at this step. Choose one of the methods offered."
        }
        (Lang::Zh, MethodNotOffered) => "此步骤不能使用该方式。请选择列出的方式之一。",
        (Lang::En, CodeSent) => "We sent a code. Enter it here. It expires in a few minutes.",
        (Lang::Zh, CodeSent) => "验证码已发送。请在此输入，几分钟后失效。",
        (Lang::En, AnswerQuestions) => "Answer these security questions.",
        (Lang::Zh, AnswerQuestions) => "请回答以下安全问题。",
        (Lang::En, EnterTotp) => "Enter the code shown in your authenticator app.",
        (Lang::Zh, EnterTotp) => "请输入身份验证器应用中显示的验证码。",
        (Lang::En, EnterRecoveryCode) => {
            "Enter one of the recovery codes you saved. Each code works once."
        }
        (Lang::Zh, EnterRecoveryCode) => "请输入你保存的一个恢复码。每个恢复码只能使用一次。",
        (Lang::En, WrongRecoveryCode) => {
            "That recovery code is not right, or it was used before. Check it, or try another of your codes."
        }
        (Lang::Zh, WrongRecoveryCode) => "恢复码不正确，或已被使用过。请检查，或换一个恢复码。",
        (Lang::En, EnterPasskey) => {
            "Use your passkey: your device asks for its PIN, fingerprint or face."
        }
        (Lang::Zh, EnterPasskey) => "请使用你的通行密钥：设备会要求输入 PIN、指纹或面容。",
        (Lang::En, WrongPasskey) => {
            "That passkey could not prove it is you. Try again, or use another of your methods."
        }
        (Lang::Zh, WrongPasskey) => "该通行密钥未能证明你的身份。请重试，或改用其他方式。",
        (Lang::En, PasskeyCreate) => {
            "Your browser will ask where to keep the passkey (this device, a phone, a security key or a password manager)."
        }
        (Lang::Zh, PasskeyCreate) => {
            "浏览器会询问将通行密钥保存在哪里（本设备、手机、安全密钥或密码管理器）。"
        }
        (Lang::En, PasskeyStartAgain) => {
            "The passkey request has expired or was already answered. Start again."
        }
        (Lang::Zh, PasskeyStartAgain) => "通行密钥请求已过期或已被使用。请重新开始。",
        (Lang::En, PasskeyNotRead) => {
            "The browser's passkey answer could not be read. Try again in an up-to-date browser."
        }
        (Lang::Zh, PasskeyNotRead) => "无法读取浏览器返回的通行密钥信息。请使用最新版浏览器重试。",
        (Lang::En, PasskeyRefused) => {
            "The passkey was not accepted: it did not verify you on the device, or answered for another site. Try again."
        }
        (Lang::Zh, PasskeyRefused) => {
            "通行密钥未被接受：设备未验证你的身份，或它属于其他网站。请重试。"
        }
        (Lang::En, NoScriptQuota) => {
            "Too many resets were started here without JavaScript. Turn JavaScript on, or try again in an hour."
        }
        (Lang::Zh, NoScriptQuota) => {
            "此处在未启用 JavaScript 的情况下发起的重置过多。请启用 JavaScript，或一小时后再试。"
        }
        (Lang::En, RecoveryCodeFormat) => {
            "A recovery code has 16 letters and digits, like 7K2M-9QXP-4RTB-8HZD. Check what you typed."
        }
        (Lang::Zh, RecoveryCodeFormat) => {
            "恢复码由 16 个字母和数字组成，例如 7K2M-9QXP-4RTB-8HZD。请检查你的输入。"
        }
        (Lang::En, WrongCode) => {
            "That code is not right, or it has expired. Check it and try again, or ask for a new code."
        }
        (Lang::Zh, WrongCode) => "验证码不正确或已过期。请检查后重试，或重新获取验证码。",
        (Lang::En, WrongAnswers) => {
            "One or more answers are not right. Try again with a new set of questions."
        }
        (Lang::Zh, WrongAnswers) => "有答案不正确。请重新获取一组问题再试。",
        (Lang::En, NoCodeWaiting) => "No code is waiting for this method. Ask for a code first.",
        (Lang::Zh, NoCodeWaiting) => "此方式没有待验证的验证码。请先获取验证码。",
        (Lang::En, DeliveryFailed) => {
            "We could not deliver the code. Choose another method, or try again later."
        }
        (Lang::Zh, DeliveryFailed) => "验证码无法送达。请选择其他方式，或稍后再试。",
        (Lang::En, CodeFormat) => "Enter the code as digits only.",
        (Lang::Zh, CodeFormat) => "验证码只能包含数字。",
        (Lang::En, TooManyCodes) => {
            "Too many codes were requested. Wait a while, or choose another method."
        }
        (Lang::Zh, TooManyCodes) => "请求验证码次数过多。请稍后再试，或选择其他方式。",
        (Lang::En, Blocked) => {
            "Your account is temporarily blocked from self-service password reset after too many attempts. Try again later or contact your helpdesk."
        }
        (Lang::Zh, Blocked) => {
            "尝试次数过多，你的账户暂时无法使用自助密码重置。请稍后再试或联系技术支持。"
        }
        (Lang::En, TooManyRequests) => "Too many requests. Wait a while and try again.",
        (Lang::Zh, TooManyRequests) => "请求过多。请稍后再试。",
        (Lang::En, SetPassword) => "Verified. Now choose a new password.",
        (Lang::Zh, SetPassword) => "验证成功。请设置新密码。",
        (Lang::En, ReadyToUnlock) => "Verified. You can now unlock your account.",
        (Lang::Zh, ReadyToUnlock) => "验证成功。现在可以解锁你的账户。",
        (Lang::En, PasswordChanged) => {
            "Your password has been reset. You can sign in with the new password now."
        }
        (Lang::Zh, PasswordChanged) => "密码已重置。现在可以使用新密码登录。",
        (Lang::En, AccountUnlocked) => {
            "Your account is unlocked. Sign in with your current password."
        }
        (Lang::Zh, AccountUnlocked) => "账户已解锁。请使用当前密码登录。",
        (Lang::En, Busy) => "The service is busy, so nothing was changed. Try again in a moment.",
        (Lang::Zh, Busy) => "服务繁忙，未做任何更改。请稍后再试。",
        (Lang::En, DirectoryDown) => {
            "We could not reach the account directory, so nothing was changed. Try again in a few minutes."
        }
        (Lang::Zh, DirectoryDown) => "无法连接账户目录，未做任何更改。请几分钟后再试。",
        (Lang::En, DirectoryDenied) => {
            "The account directory did not allow this change. Nothing was changed. Contact your helpdesk and give them the support code."
        }
        (Lang::Zh, DirectoryDenied) => {
            "账户目录不允许此更改，未做任何更改。请联系技术支持并提供支持代码。"
        }
        (Lang::En, DirectoryProtected) => {
            "This account is protected by the domain (an administrator account), so its password can't be reset or unlocked here. Nothing was changed. Contact your helpdesk."
        }
        (Lang::Zh, DirectoryProtected) => {
            "此账户受域保护（管理员账户），无法在这里重置密码或解锁，未做任何更改。请联系技术支持。"
        }
        (Lang::En, UnlockNotOffered) => {
            "Unlocking an account is not offered here. Reset your password instead: a reset also unlocks the account."
        }
        (Lang::Zh, UnlockNotOffered) => {
            "此处不提供账户解锁。请改为重置密码：重置密码也会解锁账户。"
        }
        (Lang::En, SignInFailed) => "The user ID or password is not correct.",
        (Lang::Zh, SignInFailed) => "用户 ID 或密码不正确。",
        (Lang::En, EnterPassword) => "Enter your current password.",
        (Lang::Zh, EnterPassword) => "请输入当前密码。",
        (Lang::En, SessionInvalid) => "Your sign-in has expired. Sign in again.",
        (Lang::Zh, SessionInvalid) => "登录已过期。请重新登录。",
        (Lang::En, NotEnabledForYou) => {
            "Self-service password reset is not enabled for your account. Contact your helpdesk."
        }
        (Lang::Zh, NotEnabledForYou) => "你的账户未启用自助密码重置。请联系技术支持。",
        (Lang::En, Registered) => "You are registered for self-service password reset.",
        (Lang::Zh, Registered) => "你已完成自助密码重置注册。",
        (Lang::En, NotYetRegistered) => {
            "Add more security info to be able to reset your password yourself."
        }
        (Lang::Zh, NotYetRegistered) => "请添加更多安全信息，以便自行重置密码。",
        (Lang::En, MethodDisabled) => "Your administrator has not enabled this method.",
        (Lang::Zh, MethodDisabled) => "管理员未启用此方式。",
        (Lang::En, BadEmail) => "Enter a valid email address, such as name@example.com.",
        (Lang::Zh, BadEmail) => "请输入有效的电子邮件地址，例如 name@example.com。",
        (Lang::En, BadPhone) => {
            "Enter the mobile number in international form, such as +49 151 12345678."
        }
        (Lang::Zh, BadPhone) => "请以国际格式输入手机号码，例如 +86 138 0013 8000。",
        (Lang::En, AddedPending) => {
            "We sent a code to confirm it. Enter the code to finish adding it."
        }
        (Lang::Zh, AddedPending) => "验证码已发送。输入验证码即可完成添加。",
        (Lang::En, Verified) => "Confirmed. This method can now be used to reset your password.",
        (Lang::Zh, Verified) => "已确认。现在可以用此方式重置密码。",
        (Lang::En, QuestionsSaved) => "Your security questions are saved.",
        (Lang::Zh, QuestionsSaved) => "安全问题已保存。",
        (Lang::En, TotpScan) => {
            "Scan the QR code with your authenticator app, then enter the code it shows."
        }
        (Lang::Zh, TotpScan) => "用身份验证器应用扫描二维码，然后输入显示的验证码。",
        (Lang::En, RecoveryCodesCreated) => {
            "Save these codes now: they are shown only this once. Each one resets your password once. Any codes you had before no longer work."
        }
        (Lang::Zh, RecoveryCodesCreated) => {
            "请立即保存这些恢复码：它们只显示这一次。每个恢复码可用于重置一次密码。之前的恢复码已全部失效。"
        }
        (Lang::En, MethodRemoved) => "The method was removed.",
        (Lang::Zh, MethodRemoved) => "已删除该方式。",
        (Lang::En, Reviewed) => "Thank you. Your security info is confirmed as up to date.",
        (Lang::Zh, Reviewed) => "谢谢。你的安全信息已确认为最新。",
        (Lang::En, NotSetPasswordStep) => {
            "Verify your identity first; the password can be set only after that."
        }
        (Lang::Zh, NotSetPasswordStep) => "请先完成身份验证，然后才能设置密码。",
        (Lang::En, AlreadyFinishing) => {
            "This reset is already being completed. Wait a moment and check again."
        }
        (Lang::Zh, AlreadyFinishing) => "此重置正在完成中。请稍候再查看。",
        (Lang::En, OutcomeUnknown) => {
            "We could not confirm whether your password was changed. Wait a minute, then sign in with the new password; if it does not work, come back here and try again."
        }
        (Lang::Zh, OutcomeUnknown) => {
            "无法确认密码是否已更改。请等待一分钟，然后用新密码登录；如果不成功，请回到这里重试。"
        }
        (Lang::En, AlreadyChanged) => {
            "This reset is already complete: your password was changed to the one you chose earlier, not to the one you just typed. Sign in with that one."
        }
        (Lang::Zh, AlreadyChanged) => {
            "此重置已完成：密码已更改为你之前选择的密码，而不是刚才输入的密码。请用那个密码登录。"
        }
        (Lang::En, ChangedStillLocked) => {
            "Your password was changed, but your account is still locked. Contact your helpdesk to unlock it."
        }
        (Lang::Zh, ChangedStillLocked) => "密码已更改，但账户仍处于锁定状态。请联系技术支持解锁。",
        (Lang::En, PasswordChangedByUser) => {
            "Your password has been changed. Use the new one from now on, on every device where you sign in."
        }
        (Lang::Zh, PasswordChangedByUser) => {
            "密码已更改。从现在起，请在所有登录的设备上使用新密码。"
        }
        (Lang::En, MustChangePassword) => {
            "Your password has expired, or must be changed before you can use it. Choose a new one: type the current password once more, then the new one."
        }
        (Lang::Zh, MustChangePassword) => {
            "你的密码已过期，或必须先更改才能使用。请选择新密码：再输入一次当前密码，然后输入新密码。"
        }
        (Lang::En, FirstPasswordSet) => {
            "Your password is set. Next, register your security info, so that you can reset it yourself if you ever forget it."
        }
        (Lang::Zh, FirstPasswordSet) => {
            "密码已设置。接下来请注册安全信息，以便忘记密码时可以自助重置。"
        }
        (Lang::En, InvitationInvalid) => {
            "This invitation has expired or has already been used. Ask your administrator for a new one."
        }
        (Lang::Zh, InvitationInvalid) => "此邀请已过期或已被使用。请向管理员索取新的邀请。",
        (Lang::En, ChangeLocked) => {
            "Your account is locked, so the password was not changed. Reset it instead (that also unlocks the account), or contact your helpdesk."
        }
        (Lang::Zh, ChangeLocked) => {
            "你的账户已被锁定，密码未更改。请改用重置密码（同时会解锁账户），或联系技术支持。"
        }
    }
}

/// Email and SMS texts.
pub fn code_message(
    lang: Lang,
    org: &str,
    code: &str,
    minutes: i64,
    purpose_reset: bool,
) -> (String, String) {
    let org = if org.is_empty() { "sspr" } else { org };
    match (lang, purpose_reset) {
        (Lang::En, true) => (
            format!("{org} password reset code"),
            format!(
                "Your {org} password reset code is {code}. It expires in {minutes} minutes.\n\nIf you did not ask to reset your password, ignore this message and tell your helpdesk."
            ),
        ),
        (Lang::En, false) => (
            format!("{org} verification code"),
            format!("Your {org} verification code is {code}. It expires in {minutes} minutes."),
        ),
        (Lang::Zh, true) => (
            format!("{org} 密码重置验证码"),
            format!(
                "你的 {org} 密码重置验证码是 {code}，{minutes} 分钟内有效。\n\n如果你没有申请重置密码，请忽略此消息并告知技术支持。"
            ),
        ),
        (Lang::Zh, false) => (
            format!("{org} 验证码"),
            format!("你的 {org} 验证码是 {code}，{minutes} 分钟内有效。"),
        ),
    }
}

pub fn notice(lang: Lang, org: &str, what: &str, when: &str, ip: &str) -> (String, String) {
    let org = if org.is_empty() { "sspr" } else { org };
    match lang {
        Lang::En => (
            format!("{org}: {what}"),
            format!(
                "{what}\n\nWhen: {when}\nFrom: {ip}\n\nIf this was not you, contact your helpdesk at once."
            ),
        ),
        Lang::Zh => (
            format!("{org}：{what}"),
            format!(
                "{what}\n\n时间：{when}\n来源：{ip}\n\n如果这不是你本人操作，请立即联系技术支持。"
            ),
        ),
    }
}

/// The notice as a text message: what happened, when, and what to do if it was not the user.
pub fn notice_sms(lang: Lang, org: &str, what: &str, when: &str) -> String {
    let org = if org.is_empty() { "sspr" } else { org };
    match lang {
        Lang::En => format!("{org}: {what} ({when}). Not you? Call your helpdesk at once."),
        Lang::Zh => format!("{org}：{what}（{when}）。如果不是你本人操作，请立即联系技术支持。"),
    }
}

/// A password-expiry reminder: subject and body of the email, and the SMS text. With
/// `register_url`, the user has too few methods to reset a forgotten password, and is asked to
/// register them.
pub struct Reminder<'a> {
    pub org: &'a str,
    pub account: &'a str,
    pub days_left: i64,
    /// The expiry as RFC 3339 (UTC).
    pub expires: &'a str,
    pub change_url: &'a str,
    pub register_url: Option<&'a str>,
}

pub fn expiry_reminder(lang: Lang, r: &Reminder<'_>) -> (String, String, String) {
    let org = if r.org.is_empty() { "sspr" } else { r.org };
    let (account, days, expires, change) = (r.account, r.days_left, r.expires, r.change_url);
    match lang {
        Lang::En => {
            let when = if days <= 1 {
                "within a day".to_string()
            } else {
                format!("in {days} days")
            };
            let mut body = format!(
                "The password of your account {account} expires {when} ({expires}).\n\n\
                 Change it now, while you still know it: {change}\n\n\
                 Once it has expired you can no longer sign in with it."
            );
            if let Some(reg) = r.register_url {
                body.push_str(&format!(
                    "\n\nYou have not registered enough security info to reset a forgotten password yourself. \
                     Register it here, so that you never need the helpdesk for this: {reg}"
                ));
            }
            body.push_str("\n\nIf you did not expect this message, contact your helpdesk.");
            let sms =
                format!("{org}: your password for {account} expires {when}. Change it: {change}");
            (format!("{org}: your password expires {when}"), body, sms)
        }
        Lang::Zh => {
            let when = if days <= 1 {
                "一天内".to_string()
            } else {
                format!(" {days} 天后")
            };
            let mut body = format!(
                "你的账户 {account} 的密码将在{when}过期（{expires}）。\n\n\
                 请趁现在还记得它时更改：{change}\n\n过期后将无法再用它登录。"
            );
            if let Some(reg) = r.register_url {
                body.push_str(&format!(
                    "\n\n你注册的安全信息还不足以自助重置忘记的密码。请在此注册，以后无需为此联系技术支持：{reg}"
                ));
            }
            body.push_str("\n\n如果你没有预料到这封邮件，请联系技术支持。");
            let sms = format!("{org}：你的账户 {account} 的密码将在{when}过期。请更改：{change}");
            (format!("{org}：你的密码将在{when}过期"), body, sms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_say_everything() {
        for m in ALL_MSGS {
            let en = t(Lang::En, m);
            let zh = t(Lang::Zh, m);
            assert!(!en.is_empty() && en.is_ascii(), "{m:?}");
            assert!(!zh.is_ascii(), "{m:?} has no Chinese text");
        }
    }

    #[test]
    fn chinese_messages_use_the_glossary() {
        for m in ALL_MSGS {
            let zh = t(Lang::Zh, m);
            for bad in NOT_IN_GLOSSARY {
                assert!(
                    !zh.contains(bad),
                    "{m:?} says {bad:?} (docs/zh-glossary.md): {zh}"
                );
            }
        }
    }

    #[test]
    fn negotiation() {
        assert_eq!(Lang::negotiate("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh);
        assert_eq!(Lang::negotiate("en-GB,en;q=0.9"), Lang::En);
        assert_eq!(Lang::negotiate("fr-FR"), Lang::En);
    }
}
