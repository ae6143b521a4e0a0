//! Page text from Fluent files, one per language (`locales/en.ftl`, `locales/zh.ftl`),
//! compiled into the binary. Messages that services return (a wrong code, a rejected
//! password) come already translated from `sspr_app::messages`; this is everything else.

use std::sync::LazyLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use sspr_app::Lang;

pub const EN: &str = include_str!("../locales/en.ftl");
pub const ZH: &str = include_str!("../locales/zh.ftl");

pub struct Catalog {
    en: FluentBundle<FluentResource>,
    zh: FluentBundle<FluentResource>,
}

fn bundle(tag: &str, src: &'static str) -> FluentBundle<FluentResource> {
    let id: unic_langid::LanguageIdentifier = tag.parse().unwrap_or_default();
    let mut b = FluentBundle::new_concurrent(vec![id]);
    // Unicode isolation marks would show up inside attribute values and tests' text.
    b.set_use_isolating(false);
    let res = match FluentResource::try_new(src.to_string()) {
        Ok(r) => r,
        Err((r, errs)) => {
            tracing::error!(lang = tag, errors = ?errs, "syntax errors in a Fluent file");
            r
        }
    };
    if let Err(errs) = b.add_resource(res) {
        tracing::error!(lang = tag, errors = ?errs, "duplicate keys in a Fluent file");
    }
    b
}

pub static CATALOG: LazyLock<Catalog> = LazyLock::new(|| Catalog {
    en: bundle("en", EN),
    zh: bundle("zh-CN", ZH),
});

impl Catalog {
    fn of(&self, lang: Lang) -> &FluentBundle<FluentResource> {
        match lang {
            Lang::En => &self.en,
            Lang::Zh => &self.zh,
        }
    }

    /// Whether `key` has a text (in English, which every other language falls back to).
    pub fn has(&self, key: &str) -> bool {
        self.en.has_message(key)
    }

    /// The text for `key`, falling back to English, then to the key itself (logged), so a
    /// missing translation never breaks a page. The test below keeps that from happening.
    pub fn tr(&self, lang: Lang, key: &str, args: &[(&str, String)]) -> String {
        let mut fa = FluentArgs::new();
        for (k, v) in args {
            fa.set(*k, FluentValue::from(v.clone()));
        }
        for b in [self.of(lang), &self.en] {
            if let Some(p) = b.get_message(key).and_then(|m| m.value()) {
                let mut errs = vec![];
                let s = b.format_pattern(p, Some(&fa), &mut errs);
                if !errs.is_empty() {
                    tracing::warn!(key, errors = ?errs, "Fluent formatting problem");
                }
                return s.into_owned();
            }
        }
        tracing::warn!(key, lang = lang.tag(), "missing page text");
        key.to_string()
    }
}

/// Message identifiers defined in a Fluent source, in order.
pub fn keys(src: &str) -> Vec<String> {
    src.lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn both_languages_have_exactly_the_same_keys() {
        let en = keys(EN);
        let zh = keys(ZH);
        let missing_zh: Vec<_> = en.iter().filter(|k| !zh.contains(k)).collect();
        let missing_en: Vec<_> = zh.iter().filter(|k| !en.contains(k)).collect();
        assert!(missing_zh.is_empty(), "zh.ftl lacks: {missing_zh:?}");
        assert!(missing_en.is_empty(), "en.ftl lacks: {missing_en:?}");
        let mut sorted = en.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), en.len(), "en.ftl defines a key twice");
    }

    #[test]
    fn both_files_parse_without_errors() {
        for (name, src) in [("en", EN), ("zh", ZH)] {
            if let Err((_, errs)) = FluentResource::try_new(src.to_string()) {
                panic!("{name}.ftl: {errs:?}");
            }
        }
    }

    #[test]
    fn every_key_a_template_or_handler_uses_exists() {
        let en = keys(EN);
        let mut used = Vec::new();
        let templates = crate::render::TEMPLATES.iter().map(|(n, s)| (n, s, true));
        let sources = crate::render::SOURCES.iter().map(|(n, s)| (n, s, false));
        for (name, src, is_template) in templates.chain(sources) {
            // t("key") / t('key') in templates; .tr("key") and tr(lang, "key") in Rust.
            let pats: &[&str] = if is_template {
                &["t(\"", "t('"]
            } else {
                &[".tr(\"", ".tr_args(\"", "tr(lang, \"", "tr(ctx.lang, \""]
            };
            for pat in pats {
                let mut rest = *src;
                while let Some(i) = rest.find(pat) {
                    let before = rest[..i].chars().last();
                    rest = &rest[i + pat.len()..];
                    if is_template && before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        continue;
                    }
                    let key: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                        .collect();
                    // A key ending in '-' is a prefix completed at run time (t("method-" ~ m));
                    // those families are checked in `dynamic_key_families_are_complete`.
                    if !key.is_empty() && !key.ends_with('-') {
                        used.push((name.to_string(), key));
                    }
                }
            }
        }
        assert!(used.len() > 20, "the key scan found too little: {used:?}");
        let missing: Vec<_> = used.iter().filter(|(_, k)| !en.contains(k)).collect();
        assert!(missing.is_empty(), "keys used but not defined: {missing:?}");
    }

    #[test]
    fn chinese_text_uses_the_glossary() {
        for bad in sspr_app::messages::NOT_IN_GLOSSARY {
            if let Some(l) = ZH.lines().find(|l| l.contains(bad)) {
                panic!("zh.ftl says {bad:?} (docs/zh-glossary.md): {l}");
            }
        }
    }

    #[test]
    fn dynamic_key_families_are_complete() {
        let en = keys(EN);
        let families: &[(&str, &[&str])] = &[
            ("start-title-", &["reset", "unlock"]),
            ("start-lead-", &["reset", "unlock"]),
            ("done-next-", &["reset", "unlock"]),
            (
                "method-",
                &["email", "sms", "questions", "totp", "recovery_code"],
            ),
            ("code-label-", &["email", "sms", "totp", "recovery_code"]),
        ];
        for (prefix, members) in families {
            for m in *members {
                let k = format!("{prefix}{m}");
                assert!(en.contains(&k), "missing {k}");
            }
        }
        // The policy editor words every problem a policy can have.
        for k in sspr_domain::PolicyProblem::KEYS {
            let k = format!("policy-problem-{k}");
            assert!(en.contains(&k), "missing {k}");
        }
        // The audit viewer names every activity in words (zh follows from the test above).
        for a in sspr_domain::audit::Activity::ALL {
            let k = format!("admin-act-{}", a.as_str());
            assert!(en.contains(&k), "missing {k}");
        }
    }

    #[test]
    fn arguments_are_filled_in_and_fallback_is_the_key() {
        let c = &*CATALOG;
        let s = c.tr(
            Lang::En,
            "step-of",
            &[("n", "1".into()), ("total", "2".into())],
        );
        assert!(s.contains('1') && s.contains('2'), "{s}");
        assert_eq!(c.tr(Lang::Zh, "no-such-key", &[]), "no-such-key");
    }
}
