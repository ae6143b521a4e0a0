//! How the screen in front of the user renders PAM's conversation, and the adapter that fits
//! the dialogue to it.
//!
//! A terminal (console `login`, SSH keyboard-interactive, `sspr-logon`) prints every message and
//! prompt in order, so the dialogue can say as much as it likes. Graphical greeters do not, as
//! observed on the real ones (see docs/greeters.md):
//! - lightdm-gtk-greeter has one message label: each message replaces the previous one, Enter
//!   clears it, and a prompt's own text is shown only in corner cases. What the user reads at a
//!   prompt is the last message sent before it, and nothing else.
//! - slick-greeter turns the prompt into the entry's placeholder (29 to 31 characters shown)
//!   and stacks messages in a box of fixed height, cut at 33 to 36 characters a line; a third
//!   line pushes the entry out of sight.
//! - GDM shows one prompt at a time with its text as the entry's label, and queues messages,
//!   each shown for a time that grows with its length.
//!
//! So on a greeter every step of the dialogue is one short message, wrapped to
//! [`GREETER_WIDTH`] columns in at most [`GREETER_LINES`] lines, followed by a prompt of at most
//! [`GREETER_PROMPT`] characters; [`OnePerPrompt`] enforces it whatever the dialogue sends.

use crate::conversation::{Cancelled, Conversation};

/// Columns of one line of a greeter message (slick-greeter cuts at 33 to 36, by the letters).
pub const GREETER_WIDTH: usize = 32;
/// Lines of one greeter message. On slick-greeter, with two lines the entry's placeholder and
/// what is typed stay in sight; a third pushes all but the entry's top edge out of sight.
pub const GREETER_LINES: usize = 2;
/// Characters of a greeter prompt (slick-greeter's placeholder shows 29 to 31).
pub const GREETER_PROMPT: usize = 28;

/// What renders the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Every message and prompt is shown in order.
    Terminal,
    /// A graphical greeter: one short message before each prompt.
    Greeter,
    /// GDM: a greeter that shows the prompt's text as the entry's label and delays each
    /// message by its length, so the way into a reset goes in the prompt itself.
    Gdm,
}

/// The `screen` setting of logon.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScreenSetting {
    /// From the PAM service: `lightdm*`, `sddm*`, `greetd`, `xdm`, `lxdm`, `gdm-*` are greeters.
    Auto,
    Fixed(Screen),
}

impl Screen {
    /// The screen for a PAM service name. Unknown services are terminals: a terminal renders
    /// the short greeter texts too, while a greeter cannot render the long terminal ones.
    pub fn detect(setting: ScreenSetting, service: Option<&str>) -> Screen {
        if let ScreenSetting::Fixed(s) = setting {
            return s;
        }
        let service = service.unwrap_or("").to_ascii_lowercase();
        if service.starts_with("gdm") {
            Screen::Gdm
        } else if [
            "lightdm", "sddm", "greetd", "xdm", "lxdm", "kdm", "mdm", "slim",
        ]
        .iter()
        .any(|g| service.starts_with(g))
        {
            Screen::Greeter
        } else {
            Screen::Terminal
        }
    }

    pub fn is_greeter(self) -> bool {
        self != Screen::Terminal
    }
}

/// Display columns: CJK characters take two.
pub fn columns(text: &str) -> usize {
    text.chars().map(char_columns).sum()
}

fn char_columns(c: char) -> usize {
    let wide = matches!(c as u32,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6);
    if wide { 2 } else { 1 }
}

/// Wraps each line of `text` at spaces into lines of at most `width` columns; a word longer
/// than a line is cut where it must be, and text without spaces (Chinese) anywhere.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if columns(line) <= width {
            if !line.trim().is_empty() {
                out.push(line.to_string());
            }
            continue;
        }
        let indent: String = line.chars().take_while(|c| *c == ' ').collect();
        let mut current = String::new();
        for word in line.split(' ').filter(|w| !w.is_empty()) {
            let sep = if current.is_empty() { 0 } else { 1 };
            if !current.is_empty() && columns(&current) + sep + columns(word) > width {
                out.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            } else if out.is_empty() || !indent.is_empty() {
                current.push_str(&indent);
            }
            for c in word.chars() {
                if columns(&current) + char_columns(c) > width {
                    out.push(std::mem::take(&mut current));
                }
                current.push(c);
            }
        }
        if !current.trim().is_empty() {
            out.push(current);
        }
    }
    out
}

/// The first sentence of a server's message: enough for a greeter, where the rest would push
/// the entry out of sight. The terminal shows it whole.
pub fn first_sentence(text: &str) -> &str {
    let cut = text
        .char_indices()
        .find(|(i, c)| {
            matches!(c, '。' | '！' | '？')
                || (matches!(c, '.' | '!' | '?')
                    && text[i + c.len_utf8()..]
                        .chars()
                        .next()
                        .is_none_or(char::is_whitespace))
        })
        .map(|(i, c)| i + c.len_utf8());
    match cut {
        Some(end) => &text[..end],
        None => text,
    }
}

/// Fits the conversation to a greeter: the messages sent since the last prompt go out as one,
/// just before the next prompt, wrapped to [`GREETER_WIDTH`] columns, as an error if any of
/// them was one. When they need more than [`GREETER_LINES`] lines, whole messages give way:
/// first the earlier informational ones, so that an error and the latest instruction remain.
/// Prompts are cut to [`GREETER_PROMPT`] characters. What is still held when the dialogue
/// ends goes out on [`OnePerPrompt::flush`] or drop.
pub struct OnePerPrompt<'a> {
    inner: &'a mut dyn Conversation,
    /// Each message as its wrapped lines, and whether it is an error.
    held: Vec<(Vec<String>, bool)>,
}

impl<'a> OnePerPrompt<'a> {
    pub fn new(inner: &'a mut dyn Conversation) -> OnePerPrompt<'a> {
        OnePerPrompt {
            inner,
            held: Vec::new(),
        }
    }

    pub fn flush(&mut self) {
        let lines = |held: &[(Vec<String>, bool)]| held.iter().map(|(l, _)| l.len()).sum::<usize>();
        while lines(&self.held) > GREETER_LINES && self.held.len() > 1 {
            // The earliest informational message gives way; with errors only, the earliest.
            let i = self.held.iter().position(|(_, e)| !e).unwrap_or(0);
            self.held.remove(i);
        }
        let error = self.held.iter().any(|(_, e)| *e);
        let text: Vec<String> = self.held.drain(..).flat_map(|(l, _)| l).collect();
        if text.is_empty() {
            return;
        }
        let text = text.join("\n");
        if error {
            self.inner.error(&text);
        } else {
            self.inner.info(&text);
        }
    }

    fn short(text: &str) -> String {
        if text.chars().count() <= GREETER_PROMPT {
            return text.to_string();
        }
        let mut s: String = text.chars().take(GREETER_PROMPT - 1).collect();
        s.push('…');
        s
    }

    fn hold(&mut self, text: &str, error: bool) {
        let lines = wrap(text, GREETER_WIDTH);
        if !lines.is_empty() {
            self.held.push((lines, error));
        }
    }
}

impl Conversation for OnePerPrompt<'_> {
    fn prompt(&mut self, text: &str) -> Result<String, Cancelled> {
        self.flush();
        self.inner.prompt(&Self::short(text))
    }
    fn secret(&mut self, text: &str) -> Result<String, Cancelled> {
        self.flush();
        self.inner.secret(&Self::short(text))
    }
    fn info(&mut self, text: &str) {
        self.hold(text, false);
    }
    fn error(&mut self, text: &str) {
        self.hold(text, true);
    }
}

impl Drop for OnePerPrompt<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeters_are_told_from_terminals_by_the_pam_service() {
        let auto = |s| Screen::detect(ScreenSetting::Auto, Some(s));
        assert_eq!(auto("lightdm"), Screen::Greeter);
        assert_eq!(auto("lightdm-autologin"), Screen::Greeter);
        assert_eq!(auto("sddm"), Screen::Greeter);
        assert_eq!(auto("gdm-password"), Screen::Gdm);
        assert_eq!(auto("login"), Screen::Terminal);
        assert_eq!(auto("sshd"), Screen::Terminal);
        assert_eq!(Screen::detect(ScreenSetting::Auto, None), Screen::Terminal);
        let fixed = ScreenSetting::Fixed(Screen::Greeter);
        assert_eq!(Screen::detect(fixed, Some("login")), Screen::Greeter);
    }

    #[test]
    fn text_is_wrapped_at_spaces_and_chinese_anywhere() {
        assert_eq!(
            wrap("That code is not right, or it has expired.", 20),
            ["That code is not", "right, or it has", "expired."]
        );
        assert_eq!(
            wrap("1  Email a•••e@e•••.com", 40),
            ["1  Email a•••e@e•••.com"]
        );
        assert_eq!(
            wrap("验证码不正确或已过期", 8),
            ["验证码不", "正确或已", "过期"]
        );
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert!(wrap("", 10).is_empty());
    }

    #[test]
    fn the_first_sentence_ends_at_a_full_stop_before_a_space() {
        assert_eq!(
            first_sentence("The password is too short: use 15. A few words help."),
            "The password is too short: use 15."
        );
        assert_eq!(
            first_sentence("Sent to a.b@c.test now"),
            "Sent to a.b@c.test now"
        );
        assert_eq!(first_sentence("密码太短。请使用短语。"), "密码太短。");
    }

    struct Rec(Vec<String>);
    impl Conversation for Rec {
        fn prompt(&mut self, t: &str) -> Result<String, Cancelled> {
            self.0.push(format!("prompt {t}"));
            Ok(String::new())
        }
        fn secret(&mut self, t: &str) -> Result<String, Cancelled> {
            self.0.push(format!("secret {t}"));
            Ok(String::new())
        }
        fn info(&mut self, t: &str) {
            self.0.push(format!("info {t}"));
        }
        fn error(&mut self, t: &str) {
            self.0.push(format!("error {t}"));
        }
    }

    #[test]
    fn messages_before_a_prompt_go_out_as_one_and_fit() {
        let mut rec = Rec(Vec::new());
        {
            let mut c = OnePerPrompt::new(&mut rec);
            c.info("Old news that gives way to what matters now.");
            c.error("That code is not right.");
            c.info("Type the code sent to a•@e•.com");
            let _ = c.prompt("Code (press Enter to choose another way)");
            c.error("The password is too short: use at least 15 characters.");
            c.info("Choose a new password of at least 15 characters.");
            let _ = c.secret("New password");
            c.info("Done.");
        }
        assert_eq!(
            rec.0,
            [
                "error That code is not right.\nType the code sent to a•@e•.com",
                "prompt Code (press Enter to choose…",
                "error The password is too short: use\nat least 15 characters.",
                "secret New password",
                "info Done.",
            ]
        );
    }
}
