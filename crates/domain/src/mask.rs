//! Destinations shown to a user before they are verified: enough to recognise, too little to
//! harvest.

/// `alice.smith@example.com` → `a••••••••h@e••••••.com`
pub fn email(addr: &str) -> String {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return "•••".into();
    };
    let (host, tld) = domain.rsplit_once('.').unwrap_or((domain, ""));
    let tld = if tld.is_empty() {
        String::new()
    } else {
        format!(".{tld}")
    };
    format!("{}@{}{}", keep_ends(local), keep_first(host), tld)
}

/// `+4915112345678` → `+•••••••••••78`
pub fn phone(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(|c| c.is_ascii_digit()).collect();
    let tail: String = digits.iter().rev().take(2).rev().collect();
    let plus = if number.trim_start().starts_with('+') {
        "+"
    } else {
        ""
    };
    format!("{plus}{}{tail}", "•".repeat(digits.len().saturating_sub(2)))
}

fn keep_ends(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    match c.len() {
        0 => String::new(),
        1 | 2 => format!("{}•", c[0]),
        n => format!("{}{}{}", c[0], "•".repeat(n - 2), c[n - 1]),
    }
}

fn keep_first(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    match c.first() {
        None => String::new(),
        Some(f) => format!("{f}{}", "•".repeat(c.len().saturating_sub(1).max(1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_email() {
        assert_eq!(email("alice.smith@example.com"), "a•••••••••h@e••••••.com");
        assert_eq!(email("al@x.io"), "a•@x•.io");
        assert_eq!(email("nonsense"), "•••");
    }

    #[test]
    fn masks_phone() {
        assert_eq!(phone("+4915112345678"), "+•••••••••••78");
        assert_eq!(phone("+1 425 555 0100"), "+•••••••••00");
    }
}
