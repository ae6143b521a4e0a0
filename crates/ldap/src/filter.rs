//! Search filters with user input in them (RFC 4515). Every value is escaped, so a login such
//! as `*` or `a)(uid=*` is one literal value to compare, never filter syntax. Public so that
//! the fuzz target `ldap_filter` checks exactly what the searches send.

use ldap3::ldap_escape;

/// The configured user filter with every `{login}` replaced by the escaped login.
pub fn user_filter(template: &str, login: &str) -> String {
    template.replace("{login}", &ldap_escape(login))
}

/// The groups that list `dn` as a member (groupOfNames) or unique member (groupOfUniqueNames).
pub fn member_filter(dn: &str) -> String {
    format!("(|(member={0})(uniqueMember={0}))", ldap_escape(dn))
}

/// The entries whose `attr` equals `value`. `attr` is one of ours, never input.
pub fn equality_filter(attr: &'static str, value: &str) -> String {
    format!("({attr}={})", ldap_escape(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_syntax_in_a_login_stays_a_value() {
        assert_eq!(
            user_filter("(&(objectClass=person)(uid={login}))", "a)(uid=*"),
            r"(&(objectClass=person)(uid=a\29\28uid=\2a))"
        );
        assert_eq!(
            member_filter(r"cn=x\,y,dc=t"),
            r"(|(member=cn=x\5c,y,dc=t)(uniqueMember=cn=x\5c,y,dc=t))"
        );
        assert_eq!(equality_filter("uid", "\0"), r"(uid=\00)");
    }
}
