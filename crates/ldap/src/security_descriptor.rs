//! Just enough of Windows security descriptors (MS-DTYP 2.4.6) to tell, without changing
//! anything, whether a set of SIDs holds an Active Directory control access right (such as
//! Reset Password) on an object: parse the self-relative descriptor's DACL and walk its ACEs
//! in order, as the access check does for a single right.

use std::fmt;

/// The Reset Password extended right (`User-Force-Change-Password`).
pub const RESET_PASSWORD: Guid = Guid([
    0x70, 0x95, 0x29, 0x00, 0x6d, 0x24, 0xd0, 0x11, 0xa7, 0x68, 0x00, 0xaa, 0x00, 0x6e, 0x05, 0x29,
]);

/// Everyone and Authenticated Users: every bound account acts with them too.
pub const WELL_KNOWN_SIDS: [&str; 2] = ["S-1-1-0", "S-1-5-11"];

const ADS_RIGHT_DS_CONTROL_ACCESS: u32 = 0x0000_0100;
const GENERIC_ALL: u32 = 0x1000_0000;
const SE_DACL_PRESENT: u16 = 0x0004;
const SE_SELF_RELATIVE: u16 = 0x8000;
const INHERIT_ONLY_ACE: u8 = 0x08;
const ACE_OBJECT_TYPE_PRESENT: u32 = 0x1;
const ACE_INHERITED_OBJECT_TYPE_PRESENT: u32 = 0x2;

/// A GUID as it sits in an ACE: the first three fields little-endian, the rest as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        b[10..].iter().try_for_each(|x| write!(f, "{x:02x}"))
    }
}

/// A descriptor or SID that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed security descriptor: {}", self.0)
    }
}

/// What the DACL says about one control access right for a set of SIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The first ACE that decides allows it, for this SID.
    Allowed { sid: String },
    /// The first ACE that decides denies it, for this SID.
    Denied { sid: String },
    /// No ACE for any of the SIDs grants it.
    NotGranted,
    /// The descriptor has no DACL (a NULL DACL grants everyone everything).
    NoDacl,
}

fn take<'a>(b: &'a [u8], at: usize, n: usize, what: &str) -> Result<&'a [u8], Malformed> {
    at.checked_add(n)
        .and_then(|end| b.get(at..end))
        .ok_or_else(|| {
            Malformed(format!(
                "{what} at offset {at} runs past the end ({} bytes)",
                b.len()
            ))
        })
}

fn u16_at(b: &[u8], at: usize, what: &str) -> Result<u16, Malformed> {
    let s = take(b, at, 2, what)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize, what: &str) -> Result<u32, Malformed> {
    let s = take(b, at, 4, what)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A binary SID (MS-DTYP 2.4.2) at the start of `b` in its string form, `S-1-5-21-…`.
pub fn sid_to_string(b: &[u8]) -> Result<String, Malformed> {
    let head = take(b, 0, 8, "SID")?;
    if head[0] != 1 {
        return Err(Malformed(format!("SID revision {}", head[0])));
    }
    let count = usize::from(head[1]);
    if count > 15 {
        return Err(Malformed(format!("SID with {count} sub-authorities")));
    }
    let authority = head[2..8]
        .iter()
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    let mut s = if authority >= 1 << 32 {
        format!("S-1-0x{authority:012x}")
    } else {
        format!("S-1-{authority}")
    };
    for i in 0..count {
        s.push_str(&format!("-{}", u32_at(b, 8 + 4 * i, "SID sub-authority")?));
    }
    Ok(s)
}

/// Whether the DACL of the self-relative descriptor `sd` gives one of `sids` (string form,
/// compared without regard to case) the control access right `right`: the ACEs are walked in
/// order, inherit-only ones skipped, and the first that allows or denies it for one of the
/// SIDs decides. An ACE covers the right when its mask holds control access (or generic all)
/// and, for an object ACE, its object type is `right` or absent (all extended rights).
pub fn control_access(sd: &[u8], sids: &[String], right: &Guid) -> Result<Decision, Malformed> {
    let header = take(sd, 0, 20, "descriptor header")?;
    if header[0] != 1 {
        return Err(Malformed(format!("revision {}", header[0])));
    }
    let control = u16_at(sd, 2, "control")?;
    if control & SE_SELF_RELATIVE == 0 {
        return Err(Malformed("not self-relative".into()));
    }
    let dacl_at = usize::try_from(u32_at(sd, 16, "DACL offset")?)
        .map_err(|_| Malformed("DACL offset out of range".into()))?;
    if control & SE_DACL_PRESENT == 0 || dacl_at == 0 {
        return Ok(Decision::NoDacl);
    }
    let acl_head = take(sd, dacl_at, 8, "DACL header")?;
    if !matches!(acl_head[0], 2 | 4) {
        return Err(Malformed(format!("ACL revision {}", acl_head[0])));
    }
    let acl_size = usize::from(u16_at(sd, dacl_at + 2, "ACL size")?);
    let ace_count = u16_at(sd, dacl_at + 4, "ACE count")?;
    let acl = take(sd, dacl_at, acl_size, "DACL")?;
    let mut at = 8;
    for i in 0..ace_count {
        let what = format!("ACE {i}");
        let head = take(acl, at, 4, &what)?;
        let (kind, flags) = (head[0], head[1]);
        let size = usize::from(u16_at(acl, at + 2, &what)?);
        if size < 4 {
            return Err(Malformed(format!("{what} of {size} bytes")));
        }
        let ace = take(acl, at, size, &what)?;
        at += size;
        if flags & INHERIT_ONLY_ACE != 0 {
            continue;
        }
        let (allow, object) = match kind {
            0x00 => (true, false),
            0x01 => (false, false),
            0x05 => (true, true),
            0x06 => (false, true),
            // Other types (callback, audit, label) decide nothing here.
            _ => continue,
        };
        let mask = u32_at(ace, 4, &what)?;
        let mut body = 8;
        let mut object_type = None;
        if object {
            let oflags = u32_at(ace, 8, &what)?;
            body = 12;
            if oflags & ACE_OBJECT_TYPE_PRESENT != 0 {
                let g = take(ace, body, 16, &what)?;
                let mut guid = [0u8; 16];
                guid.copy_from_slice(g);
                object_type = Some(Guid(guid));
                body += 16;
            }
            if oflags & ACE_INHERITED_OBJECT_TYPE_PRESENT != 0 {
                take(ace, body, 16, &what)?;
                body += 16;
            }
        }
        let sid = sid_to_string(ace.get(body..).unwrap_or_default())?;
        let covers = mask & (ADS_RIGHT_DS_CONTROL_ACCESS | GENERIC_ALL) != 0
            && object_type.is_none_or(|g| g == *right);
        if covers && sids.iter().any(|s| s.eq_ignore_ascii_case(&sid)) {
            return Ok(if allow {
                Decision::Allowed { sid }
            } else {
                Decision::Denied { sid }
            });
        }
    }
    Ok(Decision::NotGranted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "S-1-5-21-1-2-3-1105";
    const HELPDESK: &str = "S-1-5-21-1-2-3-1200";

    fn sid(s: &str) -> Vec<u8> {
        let parts: Vec<u64> = s
            .trim_start_matches("S-1-")
            .split('-')
            .map(|p| p.parse().unwrap())
            .collect();
        let mut b = vec![1, (parts.len() - 1) as u8];
        b.extend_from_slice(&parts[0].to_be_bytes()[2..]);
        for p in &parts[1..] {
            b.extend_from_slice(&(*p as u32).to_le_bytes());
        }
        b
    }

    fn ace(
        kind: u8,
        flags: u8,
        mask: u32,
        object: Option<Guid>,
        inherited: Option<Guid>,
        who: &str,
    ) -> Vec<u8> {
        let mut body = mask.to_le_bytes().to_vec();
        if kind == 0x05 || kind == 0x06 {
            let oflags = u32::from(object.is_some()) | (u32::from(inherited.is_some()) << 1);
            body.extend_from_slice(&oflags.to_le_bytes());
            for g in [object, inherited].into_iter().flatten() {
                body.extend_from_slice(&g.0);
            }
        }
        body.extend(sid(who));
        let mut a = vec![kind, flags];
        a.extend_from_slice(&((body.len() + 4) as u16).to_le_bytes());
        a.extend(body);
        a
    }

    fn sd(aces: &[Vec<u8>]) -> Vec<u8> {
        let mut acl = vec![4, 0];
        let size = 8 + aces.iter().map(Vec::len).sum::<usize>();
        acl.extend_from_slice(&(size as u16).to_le_bytes());
        acl.extend_from_slice(&(aces.len() as u16).to_le_bytes());
        acl.extend_from_slice(&[0, 0]);
        for a in aces {
            acl.extend_from_slice(a);
        }
        let mut d = vec![1, 0];
        d.extend_from_slice(&(SE_SELF_RELATIVE | SE_DACL_PRESENT).to_le_bytes());
        d.extend_from_slice(&[0; 12]);
        d.extend_from_slice(&20u32.to_le_bytes());
        d.extend(acl);
        d
    }

    fn me() -> Vec<String> {
        [ME, "S-1-1-0", "S-1-5-11"].map(String::from).to_vec()
    }

    const OTHER: Guid = Guid([0x11; 16]);
    const USER_CLASS: Guid = Guid([0x22; 16]);

    #[test]
    fn the_reset_password_guid_prints_as_ad_writes_it() {
        assert_eq!(
            RESET_PASSWORD.to_string(),
            "00299570-246d-11d0-a768-00aa006e0529"
        );
        assert_eq!(sid_to_string(&sid(ME)).unwrap(), ME);
        assert_eq!(sid_to_string(&sid("S-1-5-11")).unwrap(), "S-1-5-11");
    }

    #[test]
    fn an_object_ace_for_reset_password_allows() {
        let d = sd(&[
            ace(0x00, 0, 0x20094, None, None, "S-1-5-11"),
            ace(
                0x05,
                0x10,
                0x100,
                Some(RESET_PASSWORD),
                Some(USER_CLASS),
                ME,
            ),
        ]);
        assert_eq!(
            control_access(&d, &me(), &RESET_PASSWORD),
            Ok(Decision::Allowed { sid: ME.into() })
        );
        // Not for someone else.
        assert_eq!(
            control_access(&d, &[HELPDESK.to_string()], &RESET_PASSWORD),
            Ok(Decision::NotGranted)
        );
    }

    #[test]
    fn a_deny_before_the_allow_wins_and_one_after_it_does_not() {
        let allow = ace(0x05, 0, 0x100, Some(RESET_PASSWORD), None, ME);
        let deny = ace(0x06, 0, 0x100, Some(RESET_PASSWORD), None, "S-1-1-0");
        assert_eq!(
            control_access(&sd(&[deny.clone(), allow.clone()]), &me(), &RESET_PASSWORD),
            Ok(Decision::Denied {
                sid: "S-1-1-0".into()
            })
        );
        assert_eq!(
            control_access(&sd(&[allow, deny]), &me(), &RESET_PASSWORD),
            Ok(Decision::Allowed { sid: ME.into() })
        );
    }

    #[test]
    fn inherit_only_aces_are_skipped() {
        let d = sd(&[
            ace(
                0x06,
                INHERIT_ONLY_ACE,
                0x100,
                Some(RESET_PASSWORD),
                None,
                ME,
            ),
            ace(
                0x05,
                INHERIT_ONLY_ACE | 0x02,
                0x100,
                Some(RESET_PASSWORD),
                Some(USER_CLASS),
                ME,
            ),
        ]);
        assert_eq!(
            control_access(&d, &me(), &RESET_PASSWORD),
            Ok(Decision::NotGranted)
        );
        let d = sd(&[
            ace(
                0x06,
                INHERIT_ONLY_ACE,
                0x100,
                Some(RESET_PASSWORD),
                None,
                ME,
            ),
            ace(0x05, 0x10, 0x100, Some(RESET_PASSWORD), None, ME),
        ]);
        assert_eq!(
            control_access(&d, &me(), &RESET_PASSWORD),
            Ok(Decision::Allowed { sid: ME.into() })
        );
    }

    #[test]
    fn other_rights_and_other_masks_are_ignored() {
        let d = sd(&[
            // A deny of another extended right, then an allow of writing a property.
            ace(0x06, 0, 0x100, Some(OTHER), None, ME),
            ace(0x05, 0, 0x30, Some(RESET_PASSWORD), None, ME),
            ace(0x00, 0, 0x20094, None, None, ME),
            ace(0x05, 0, 0x100, Some(OTHER), None, ME),
        ]);
        assert_eq!(
            control_access(&d, &me(), &RESET_PASSWORD),
            Ok(Decision::NotGranted)
        );
    }

    #[test]
    fn all_extended_rights_and_full_control_allow() {
        let all = sd(&[ace(0x05, 0, 0x100, None, Some(USER_CLASS), "S-1-5-11")]);
        assert_eq!(
            control_access(&all, &me(), &RESET_PASSWORD),
            Ok(Decision::Allowed {
                sid: "S-1-5-11".into()
            })
        );
        let full = sd(&[ace(0x00, 0x10, 0xF01FF, None, None, ME)]);
        assert_eq!(
            control_access(&full, &me(), &RESET_PASSWORD),
            Ok(Decision::Allowed { sid: ME.into() })
        );
        let generic = sd(&[ace(0x00, 0, GENERIC_ALL, None, None, ME)]);
        assert_eq!(
            control_access(&generic, &me(), &RESET_PASSWORD),
            Ok(Decision::Allowed { sid: ME.into() })
        );
        let denied = sd(&[
            ace(0x01, 0, 0xF01FF, None, None, ME),
            ace(0x00, 0, 0xF01FF, None, None, ME),
        ]);
        assert_eq!(
            control_access(&denied, &me(), &RESET_PASSWORD),
            Ok(Decision::Denied { sid: ME.into() })
        );
    }

    #[test]
    fn no_dacl_is_said_so() {
        let mut d = sd(&[]);
        d[2] = 0x00; // clear SE_DACL_PRESENT, keep SE_SELF_RELATIVE
        assert_eq!(
            control_access(&d, &me(), &RESET_PASSWORD),
            Ok(Decision::NoDacl)
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = sd(&[
            ace(0x00, 0, 0x20094, None, None, "S-1-5-11"),
            ace(0x05, 0, 0x100, Some(RESET_PASSWORD), Some(USER_CLASS), ME),
        ]);
        // Every truncation fails cleanly.
        for n in 0..good.len() {
            assert!(
                control_access(&good[..n], &me(), &RESET_PASSWORD).is_err(),
                "{n}"
            );
        }
        // Every single corrupted byte: never a panic.
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = control_access(&bad, &me(), &RESET_PASSWORD);
            }
        }
        assert!(control_access(&[], &me(), &RESET_PASSWORD).is_err());
        let mut huge = good.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(control_access(&huge, &me(), &RESET_PASSWORD).is_err());
        let mut zero_ace = good.clone();
        zero_ace[30..32].copy_from_slice(&0u16.to_le_bytes());
        assert!(control_access(&zero_ace, &me(), &RESET_PASSWORD).is_err());
        assert!(sid_to_string(&[1, 5, 0, 0, 0, 0, 0, 5, 21, 0]).is_err());
    }
}
