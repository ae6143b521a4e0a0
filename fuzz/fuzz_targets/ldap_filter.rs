//! LDAP filters built from input, and DN values read back. Whatever the login: escaping
//! round-trips and leaves no filter syntax; every built filter parses to the same tree as the
//! template does with a plain name, the login in that name's place (one literal value: no
//! wildcard, no extra clause); a value escaped into a DN (RFC 4514) is read back unchanged.
#![no_main]

use ldap3::{dn_escape, ldap_escape, ldap_unescape, parse_filter};
use libfuzzer_sys::fuzz_target;
use sspr_ldap::filter::{equality_filter, member_filter, user_filter};
use sspr_ldap::first_rdn_value;

/// The defaults (OpenLDAP, Active Directory) and a filter that names the login twice.
const TEMPLATES: [&str; 3] = [
    "(&(objectClass=inetOrgPerson)(uid={login}))",
    "(&(objectCategory=person)(objectClass=user)(sAMAccountName={login}))",
    "(|(uid={login})(mail={login}))",
];

/// A value no template holds, to find where the login goes in the parsed tree.
const PLAIN: &str = "plainvalue";

/// The parsed filter as text; a value's bytes appear as one `[…]` list in it.
fn tree(filter: &str) -> String {
    match parse_filter(filter) {
        Ok(t) => format!("{t:?}"),
        Err(()) => panic!("{filter:?} does not parse"),
    }
}

/// `tree` of the filter built with `PLAIN`, with the login's bytes in its place.
fn expected(built_with_plain: &str, login: &str) -> String {
    tree(built_with_plain).replace(
        &format!("{:?}", PLAIN.as_bytes()),
        &format!("{:?}", login.as_bytes()),
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(login) = std::str::from_utf8(data) else {
        return;
    };
    let esc = ldap_escape(login);
    assert!(!esc.contains(['(', ')', '*', '\0']), "{esc:?}");
    assert_eq!(ldap_unescape(esc.as_ref()).ok().as_deref(), Some(login));

    for t in TEMPLATES {
        assert_eq!(
            tree(&user_filter(t, login)),
            expected(&user_filter(t, PLAIN), login),
            "{t} with {login:?}"
        );
    }
    assert_eq!(
        tree(&member_filter(login)),
        expected(&member_filter(PLAIN), login)
    );
    assert_eq!(
        tree(&equality_filter("uid", login)),
        expected(&equality_filter("uid", PLAIN), login)
    );

    let dn = format!("cn={},ou=groups,dc=example,dc=test", dn_escape(login));
    assert_eq!(first_rdn_value(&dn).as_deref(), Some(login), "{dn:?}");
});
