//! The agent's own words, in English and Simplified Chinese. What the server says (method
//! labels, errors, rule descriptions) arrives already translated: the agent sends
//! `Accept-Language` with the same language.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// `zh*` is Chinese, anything else English.
    pub fn from_tag(tag: &str) -> Lang {
        if tag.trim().to_ascii_lowercase().starts_with("zh") {
            Lang::Zh
        } else {
            Lang::En
        }
    }

    /// From `LC_ALL`, `LC_MESSAGES`, `LANG`, the first that is set, as the C library does.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Lang {
        ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .find_map(|k| get(k).filter(|v| !v.is_empty()))
            .map(|v| Lang::from_tag(&v))
            .unwrap_or(Lang::En)
    }

    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }
}

/// A method the agent has no short word for: the first word of the server's label.
fn first_word(label: &str) -> String {
    label.split_whitespace().next().unwrap_or(label).to_string()
}

/// Text from the server as the user may see it: no control characters but line breaks, so a
/// compromised or confused server cannot drive the terminal with escape sequences.
pub fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

/// Every sentence the agent itself says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum T<'a> {
    /// The password prompt, naming the gesture.
    PasswordPrompt {
        gesture: &'a str,
    },
    Menu {
        unlock: bool,
    },
    MenuPrompt {
        unlock: bool,
    },
    Contacting,
    Unreachable,
    Untrusted,
    ServerBroken,
    WithSupportCode {
        message: &'a str,
        code: &'a str,
    },
    ChooseMethod {
        step: usize,
        of: usize,
    },
    MethodLine {
        n: usize,
        label: &'a str,
    },
    MethodPrompt {
        n: usize,
    },
    NotAChoice {
        n: usize,
    },
    CodePrompt,
    RulesHeader,
    NewPassword,
    ConfirmPassword,
    Mismatch,
    Empty,
    TooManyTries,
    Cancelled,
    SigningIn,
    SignInWithNew,
    SignInAsUsual,
    RegisterAt {
        url: &'a str,
    },
    SentTo {
        to: &'a str,
    },
    NotConfigured,
    PlainPassword,
    /// A reset answer that arrived in another encoding than UTF-8.
    NotUtf8,
    /// After a reset: the desktop's keyring is still encrypted with the old password.
    KeyringOld,
    /// SSH: the time sshd leaves for the whole login.
    TimeLeft {
        secs: u64,
    },
    TooLittleTime,
    /// SSH, after a reset: the prompt that shows the outcome.
    PressEnterPrompt,
    // The greeter's short texts (see crate::screen): one idea per step, at most two lines of 32
    // columns, prompts of at most 28 characters.
    GreeterHint {
        gesture: &'a str,
    },
    GreeterPassword,
    GreeterMenu {
        unlock: bool,
    },
    GreeterMenuPrompt {
        unlock: bool,
    },
    GreeterChoose {
        step: usize,
        of: usize,
        n: usize,
    },
    GreeterChoosePrompt {
        n: usize,
    },
    /// A method as one word ("Email"): the list of all of them fits one line. Where the
    /// code goes is said at the next step.
    GreeterMethod {
        method: &'a str,
        label: &'a str,
    },
    /// Where the code comes from: sent to `to`, else the method's own (an authenticator app's
    /// code, or one of the saved recovery codes).
    GreeterCode {
        method: &'a str,
        to: Option<&'a str>,
    },
    GreeterCodePrompt,
    /// The user's only way left is a passkey, which needs a browser.
    BrowserOnly {
        url: &'a str,
    },
    GreeterBrowserOnly {
        url: &'a str,
    },
    /// A passkey is among the user's methods, but works only in a browser.
    AlsoInBrowser {
        url: &'a str,
    },
    GreeterAnswerPrompt,
    GreeterNewPassword {
        min: usize,
    },
    GreeterNewPasswordPrompt,
    GreeterConfirm,
    GreeterConfirmPrompt,
    GreeterChanged,
    GreeterPressEnter,
    GreeterPressEnterPrompt,
    GreeterUnreachable,
    GreeterUntrusted,
    GreeterServerBroken,
    GreeterNotConfigured,
    GreeterSupportCode {
        code: &'a str,
    },
    GreeterNotUtf8,
    /// After a reset, with a keyring: the outcome, what to do and the keyring in one message
    /// (two would not fit; GNOME explains the keyring itself when it asks for the old password).
    GreeterKeyringOld,
    GreeterSignInWithNew,
    /// Prompt mode: what was typed after the reset is not the new password.
    NotTheNewPassword,
    /// A password change (chauthtok): the password the user has now.
    CurrentPassword,
    /// A password change: why it must be changed, before the prompts.
    MustChangeNow,
    /// A password change went through.
    PasswordChangedNow,
    GdmPasswordPrompt {
        gesture: &'a str,
    },
}

pub fn t(lang: Lang, what: T<'_>) -> String {
    match lang {
        Lang::En => en(what),
        Lang::Zh => zh(what),
    }
}

fn en(what: T<'_>) -> String {
    match what {
        T::PasswordPrompt { gesture: "" } => "Password (press Enter if you forgot it): ".into(),
        T::PasswordPrompt { gesture } => format!("Password (type {gesture} if you forgot it): "),
        T::Menu { unlock: true } => "Forgot your password?\n  1  Reset my password\n  2  Unlock my account (I know my password)\nPress Enter to go back to sign-in.".into(),
        T::Menu { unlock: false } => "Forgot your password? You can reset it now.".into(),
        T::MenuPrompt { unlock: true } => "Choose 1 or 2: ".into(),
        T::MenuPrompt { unlock: false } => "Type y to reset it, or press Enter to go back: ".into(),
        T::Contacting => "Contacting the password reset service…".into(),
        T::Unreachable => "The password reset service can't be reached right now. Sign in as usual, try again later, or call your helpdesk.".into(),
        T::Untrusted => "The password reset service could not be verified as genuine, so nothing was sent to it. Call your helpdesk.".into(),
        T::ServerBroken => "The password reset service gave an answer this computer does not understand. Call your helpdesk.".into(),
        T::WithSupportCode { message, code } => format!("{message} (Support code: {code})"),
        T::ChooseMethod { step, of } if of > 1 => {
            format!("Step {step} of {of}: how do you want to prove it's you?")
        }
        T::ChooseMethod { .. } => "How do you want to prove it's you?".into(),
        T::MethodLine { n, label } => format!("  {n}  {label}"),
        T::MethodPrompt { n: 1 } => "Type 1, or press Enter to cancel: ".into(),
        T::MethodPrompt { n } => format!("Choose 1-{n}, or press Enter to cancel: "),
        T::NotAChoice { n } => format!("Type a number from 1 to {n}."),
        T::CodePrompt => "Code (press Enter to choose another way): ".into(),
        T::RulesHeader => "Your new password must follow these rules:".into(),
        T::NewPassword => "New password: ".into(),
        T::ConfirmPassword => "Retype new password: ".into(),
        T::Mismatch => "The two passwords don't match. Try again.".into(),
        T::Empty => "The password can't be empty.".into(),
        T::TooManyTries => "Too many tries. Start again from the sign-in prompt.".into(),
        T::Cancelled => "Password reset cancelled.".into(),
        T::SigningIn => "Signing you in with your new password…".into(),
        T::SignInWithNew => "Sign in with your new password.".into(),
        T::SignInAsUsual => "Sign in with your password.".into(),
        T::RegisterAt { url } => format!("Register your security info at {url}"),
        T::SentTo { to } => format!("Sent to {to}."),
        T::NotConfigured => "Password reset is not set up correctly on this computer. Call your helpdesk.".into(),
        T::PlainPassword => "Password: ".into(),
        T::NotUtf8 => "What you typed did not arrive as UTF-8 text (is this computer set to a Latin-1 keyboard or language?), so nothing was changed. Use only letters A-Z, digits and punctuation, or call your helpdesk.".into(),
        T::KeyringOld => "Your login keyring still opens with your old password: when the desktop asks, type the old password, or create a new keyring (the passwords saved in the old one are then lost).".into(),
        T::TimeLeft { secs } => format!("This SSH login closes in about {secs} s: finish before then, or connect again."),
        T::TooLittleTime => "Not enough time is left in this SSH login for a reset. Connect again and press Enter at the password prompt straight away.".into(),
        T::PressEnterPrompt => "Press Enter to sign in: ".into(),
        T::GreeterHint { gesture: "" } => "Forgot password? Press Enter.".into(),
        T::GreeterHint { gesture } => format!("Forgot password? Type {gesture}"),
        T::GreeterPassword => "Password".into(),
        T::GreeterMenu { unlock: true } => "Type 1 to reset your password,\nor 2 to unlock your account.".into(),
        T::GreeterMenu { unlock: false } => "Forgot your password?\nType y to reset it now.".into(),
        T::GreeterMenuPrompt { unlock: true } => "1 or 2 (Enter: go back)".into(),
        T::GreeterMenuPrompt { unlock: false } => "y to reset (Enter: go back)".into(),
        T::GreeterChoose { step, of, n } if of > 1 => format!("Step {step} of {of}. Type 1-{n}:"),
        T::GreeterChoose { n, .. } => format!("Prove it's you. Type 1-{n}:"),
        T::GreeterChoosePrompt { n } => format!("1-{n} (Enter: cancel)"),
        T::GreeterMethod { method, label } => match method {
            "email" => "Email".into(),
            "sms" => "Text".into(),
            "questions" => "Questions".into(),
            "totp" => "App".into(),
            "recovery_code" => "Recovery".into(),
            _ => first_word(label),
        },
        T::GreeterCode { to: Some(to), .. } => format!("Type the code sent to {to}"),
        T::GreeterCode {
            method: "recovery_code",
            to: None,
        } => "Type one of your saved recovery codes".into(),
        T::GreeterCode { to: None, .. } => "Type the code from your authenticator app".into(),
        T::GreeterCodePrompt => "Code (Enter: another way)".into(),
        T::BrowserOnly { url } => format!(
            "Your passkey works only in a web browser. Open {url} on your phone or another computer to reset your password there."
        ),
        T::GreeterBrowserOnly { url } => format!("Passkeys work in a browser only: {url}"),
        T::AlsoInBrowser { url } => {
            format!("(Your passkey works too, but only in a web browser, at {url}.)")
        }
        T::GreeterAnswerPrompt => "Answer (Enter: another way)".into(),
        T::GreeterNewPassword { min } => format!("Choose a new password of at least {min} characters."),
        T::GreeterNewPasswordPrompt => "New password".into(),
        T::GreeterConfirm => "Type the new password again.".into(),
        T::GreeterConfirmPrompt => "New password again".into(),
        T::GreeterChanged => "Your password is changed.".into(),
        T::GreeterPressEnter => "Press Enter to sign in.".into(),
        T::GreeterPressEnterPrompt => "Press Enter to sign in".into(),
        T::GreeterUnreachable => "Can't reach the reset service. Call your helpdesk.".into(),
        T::GreeterUntrusted => "The reset service is not trusted. Call your helpdesk.".into(),
        T::GreeterServerBroken => "The reset service gave an odd answer. Call your helpdesk.".into(),
        T::GreeterNotConfigured => "Reset is not set up right here. Call your helpdesk.".into(),
        T::GreeterSupportCode { code } => format!("Support code: {code}"),
        T::GreeterNotUtf8 => "Unreadable characters were typed. Nothing changed.".into(),
        T::GreeterKeyringOld => "Password changed. Press Enter.\nKeyring still uses old password.".into(),
        T::GreeterSignInWithNew => "Sign in with the new password.".into(),
        T::NotTheNewPassword => "That is not the new password.".into(),
        T::CurrentPassword => "Current password: ".into(),
        T::MustChangeNow => "Password expired. Choose a new one.".into(),
        T::PasswordChangedNow => "Password changed.".into(),
        T::GdmPasswordPrompt { gesture: "" } => "Password (forgot it? Enter):".into(),
        T::GdmPasswordPrompt { gesture } => format!("Password (forgot it? {gesture}):"),
    }
}

fn zh(what: T<'_>) -> String {
    match what {
        T::PasswordPrompt { gesture: "" } => "密码（忘记密码请直接按回车）：".into(),
        T::PasswordPrompt { gesture } => format!("密码（忘记密码请输入 {gesture}）："),
        T::Menu { unlock: true } => {
            "忘记密码了？\n  1  重置我的密码\n  2  解锁我的账户（我记得密码）\n按回车返回登录。"
                .into()
        }
        T::Menu { unlock: false } => "忘记密码了？现在可以重置。".into(),
        T::MenuPrompt { unlock: true } => "请选择 1 或 2：".into(),
        T::MenuPrompt { unlock: false } => "输入 y 重置密码，或按回车返回：".into(),
        T::Contacting => "正在连接密码重置服务…".into(),
        T::Unreachable => "暂时无法连接密码重置服务。请照常登录、稍后再试，或联系技术支持。".into(),
        T::Untrusted => {
            "无法确认密码重置服务的真实性，因此没有向它发送任何信息。请联系技术支持。".into()
        }
        T::ServerBroken => "密码重置服务返回了本机无法识别的应答。请联系技术支持。".into(),
        T::WithSupportCode { message, code } => format!("{message}（支持代码：{code}）"),
        T::ChooseMethod { step, of } if of > 1 => {
            format!("第 {step} 步，共 {of} 步：你想用哪种方式证明身份？")
        }
        T::ChooseMethod { .. } => "你想用哪种方式证明身份？".into(),
        T::MethodLine { n, label } => format!("  {n}  {label}"),
        T::MethodPrompt { n: 1 } => "输入 1，或按回车取消：".into(),
        T::MethodPrompt { n } => format!("请选择 1-{n}，或按回车取消："),
        T::NotAChoice { n } => format!("请输入 1 到 {n} 之间的数字。"),
        T::CodePrompt => "验证码（按回车改用其他方式）：".into(),
        T::RulesHeader => "新密码必须符合以下规则：".into(),
        T::NewPassword => "新密码：".into(),
        T::ConfirmPassword => "再次输入新密码：".into(),
        T::Mismatch => "两次输入的密码不一致，请重试。".into(),
        T::Empty => "密码不能为空。".into(),
        T::TooManyTries => "尝试次数过多。请从登录提示重新开始。".into(),
        T::Cancelled => "已取消密码重置。".into(),
        T::SigningIn => "正在用新密码为你登录…".into(),
        T::SignInWithNew => "请用新密码登录。".into(),
        T::SignInAsUsual => "请用你的密码登录。".into(),
        T::RegisterAt { url } => format!("请在此注册安全信息：{url}"),
        T::SentTo { to } => format!("已发送到 {to}。"),
        T::NotConfigured => "本机的密码重置设置不正确。请联系技术支持。".into(),
        T::PlainPassword => "密码：".into(),
        T::NotUtf8 => "输入的内容不是 UTF-8 文本（本机是否设为 Latin-1 键盘或语言？），因此没有做任何更改。请只使用字母 A-Z、数字和标点，或联系技术支持。".into(),
        T::KeyringOld => "你的登录密钥环仍然使用旧密码：桌面询问时请输入旧密码，或新建密钥环（旧密钥环中保存的密码将丢失）。".into(),
        T::TimeLeft { secs } => format!("此 SSH 登录约 {secs} 秒后关闭：请在此之前完成，或重新连接。"),
        T::TooLittleTime => "此 SSH 登录剩余时间不足以重置密码。请重新连接，并在密码提示处立即按回车。".into(),
        T::PressEnterPrompt => "按回车登录：".into(),
        T::GreeterHint { gesture: "" } => "忘记密码？请直接按回车。".into(),
        T::GreeterHint { gesture } => format!("忘记密码？请输入 {gesture}"),
        T::GreeterPassword => "密码".into(),
        T::GreeterMenu { unlock: true } => "输入 1 重置密码，\n输入 2 解锁账户。".into(),
        T::GreeterMenu { unlock: false } => "忘记密码了？\n输入 y 立即重置。".into(),
        T::GreeterMenuPrompt { unlock: true } => "1 或 2（回车返回）".into(),
        T::GreeterMenuPrompt { unlock: false } => "y 重置（回车返回）".into(),
        T::GreeterChoose { step, of, n } if of > 1 => format!("第 {step}/{of} 步，请输入 1-{n}："),
        T::GreeterChoose { n, .. } => format!("验证身份，请输入 1-{n}："),
        T::GreeterChoosePrompt { n } => format!("1-{n}（回车取消）"),
        T::GreeterMethod { method, label } => match method {
            "email" => "邮件".into(),
            "sms" => "短信".into(),
            "questions" => "安全问题".into(),
            "totp" => "验证器".into(),
            "recovery_code" => "恢复码".into(),
            _ => first_word(label),
        },
        T::GreeterCode { to: Some(to), .. } => format!("请输入发送到 {to} 的验证码"),
        T::GreeterCode {
            method: "recovery_code",
            to: None,
        } => "请输入你保存的一个恢复码".into(),
        T::GreeterCode { to: None, .. } => "请输入验证器应用中的验证码".into(),
        T::GreeterCodePrompt => "验证码（回车换方式）".into(),
        T::BrowserOnly { url } => {
            format!("通行密钥只能在网页浏览器中使用。请在手机或另一台电脑上打开 {url} 重置密码。")
        }
        T::GreeterBrowserOnly { url } => format!("通行密钥仅限浏览器：{url}"),
        T::AlsoInBrowser { url } => format!("（你的通行密钥也可使用，但仅限网页浏览器：{url}）"),
        T::GreeterAnswerPrompt => "答案（回车换方式）".into(),
        T::GreeterNewPassword { min } => format!("请设置新密码，至少 {min} 个字符。"),
        T::GreeterNewPasswordPrompt => "新密码".into(),
        T::GreeterConfirm => "请再次输入新密码。".into(),
        T::GreeterConfirmPrompt => "再次输入新密码".into(),
        T::GreeterChanged => "密码已更改。".into(),
        T::GreeterPressEnter => "按回车登录。".into(),
        T::GreeterPressEnterPrompt => "按回车登录".into(),
        T::GreeterUnreachable => "无法连接重置服务。请照常登录或联系技术支持。".into(),
        T::GreeterUntrusted => "重置服务不可信。请联系技术支持。".into(),
        T::GreeterServerBroken => "重置服务应答异常。请联系技术支持。".into(),
        T::GreeterNotConfigured => "本机重置设置有误。请联系技术支持。".into(),
        T::GreeterSupportCode { code } => format!("支持代码：{code}"),
        T::GreeterNotUtf8 => "输入了本机无法识别的字符，未做任何更改。".into(),
        T::GreeterKeyringOld => "密码已更改，按回车登录。\n密钥环仍使用旧密码。".into(),
        T::GreeterSignInWithNew => "请用新密码登录。".into(),
        T::NotTheNewPassword => "这不是新密码。".into(),
        T::CurrentPassword => "当前密码：".into(),
        T::MustChangeNow => "密码已过期。请选择新密码。".into(),
        T::PasswordChangedNow => "密码已更改。".into(),
        T::GdmPasswordPrompt { gesture: "" } => "密码（忘记请按回车）：".into(),
        T::GdmPasswordPrompt { gesture } => format!("密码（忘记请输入 {gesture}）："),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_comes_from_the_first_locale_variable_set() {
        let env = |k: &str| match k {
            "LC_MESSAGES" => Some("zh_CN.UTF-8".to_string()),
            "LANG" => Some("en_US.UTF-8".to_string()),
            _ => None,
        };
        assert_eq!(Lang::from_env(env), Lang::Zh);
        assert_eq!(Lang::from_env(|_| None), Lang::En);
        assert_eq!(Lang::from_env(|_| Some(String::new())), Lang::En);
    }

    #[test]
    fn server_text_loses_control_characters() {
        assert_eq!(clean("a\u{1b}[2Jb\nc\r\u{7}"), "a[2Jb\nc");
    }

    #[test]
    fn every_greeter_text_fits_slick_greeter() {
        use crate::screen::{GREETER_LINES, GREETER_PROMPT, GREETER_WIDTH, wrap};
        let messages = [
            T::GreeterHint { gesture: "" },
            T::GreeterHint { gesture: "help" },
            T::GreeterMenu { unlock: true },
            T::GreeterMenu { unlock: false },
            T::GreeterChoose {
                step: 2,
                of: 2,
                n: 4,
            },
            T::GreeterChoose {
                step: 1,
                of: 1,
                n: 4,
            },
            T::GreeterCode {
                method: "email",
                to: Some("d••o@e••••••.test"),
            },
            T::GreeterCode {
                method: "totp",
                to: None,
            },
            T::GreeterCode {
                method: "recovery_code",
                to: None,
            },
            T::GreeterBrowserOnly {
                url: "https://sspr.example.com/reset",
            },
            T::GreeterNewPassword { min: 15 },
            T::GreeterConfirm,
            T::GreeterChanged,
            T::GreeterPressEnter,
            T::GreeterUnreachable,
            T::GreeterUntrusted,
            T::GreeterServerBroken,
            T::GreeterNotConfigured,
            T::GreeterNotUtf8,
            T::GreeterKeyringOld,
            T::GreeterSignInWithNew,
            T::NotTheNewPassword,
            T::MustChangeNow,
            T::PasswordChangedNow,
            T::Mismatch,
        ];
        let prompts = [
            T::GreeterPassword,
            T::GreeterMenuPrompt { unlock: true },
            T::GreeterMenuPrompt { unlock: false },
            T::GreeterChoosePrompt { n: 4 },
            T::GreeterCodePrompt,
            T::GreeterAnswerPrompt,
            T::GreeterNewPasswordPrompt,
            T::GreeterConfirmPrompt,
            T::GreeterPressEnterPrompt,
            T::GdmPasswordPrompt { gesture: "" },
            T::CurrentPassword,
            T::NewPassword,
            T::ConfirmPassword,
        ];
        for lang in [Lang::En, Lang::Zh] {
            for m in &messages {
                let text = t(lang, m.clone());
                let lines = wrap(&text, GREETER_WIDTH);
                assert!(lines.len() <= GREETER_LINES, "{text:?} takes {lines:?}");
            }
            for p in &prompts {
                let text = t(lang, p.clone());
                assert!(text.chars().count() <= GREETER_PROMPT, "{text:?} is cut");
            }
        }
    }

    #[test]
    fn the_prompt_names_the_gesture() {
        assert!(t(Lang::En, T::PasswordPrompt { gesture: "" }).contains("Enter"));
        assert!(t(Lang::En, T::PasswordPrompt { gesture: "?" }).contains("type ?"));
        assert!(t(Lang::Zh, T::PasswordPrompt { gesture: "?" }).contains("?"));
    }
}
