//! The policy editor: every setting, a preview of what users will see, validated saving.

use super::*;

/// Number fields of the policy form: (field name, label key).
pub(super) const NUMBER_FIELDS: [(&str, &str); 8] = [
    ("methods_required", "admin-pol-methods-required"),
    ("questions_to_register", "admin-pol-q-register"),
    ("questions_to_answer", "admin-pol-q-answer"),
    ("registration_skips", "admin-pol-skips"),
    ("reconfirm_days", "admin-pol-reconfirm"),
    ("pw_min_length", "admin-pol-min-length"),
    ("pw_max_length", "admin-pol-max-length"),
    ("pw_min_character_classes", "admin-pol-classes"),
];

pub(super) fn scope_str(s: Scope) -> &'static str {
    match s {
        Scope::All => "all",
        Scope::Groups => "groups",
        Scope::None => "none",
    }
}

/// The form's fields for a policy, as the form names them (a checked box is `on`).
pub(super) fn policy_form(p: &Policy) -> HashMap<String, String> {
    let mut f: HashMap<String, String> = HashMap::new();
    let mut put = |k: &str, v: String| {
        f.insert(k.to_string(), v);
    };
    let flag = |b: bool| if b { "on".to_string() } else { String::new() };
    put("scope", scope_str(p.scope).into());
    put("groups", p.groups.join(", "));
    for m in Method::ALL {
        put(&format!("m_{}", m.as_str()), flag(p.methods.contains(&m)));
    }
    put("methods_required", p.methods_required.to_string());
    put("questions_to_register", p.questions_to_register.to_string());
    put("questions_to_answer", p.questions_to_answer.to_string());
    put(
        "custom_questions",
        p.custom_questions
            .iter()
            .map(|q| q.text.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    put("require_registration", flag(p.require_registration));
    put("registration_skips", p.registration_skips.to_string());
    put("reconfirm_days", p.reconfirm_days.to_string());
    put("notify_user", flag(p.notify_user));
    put(
        "notify_admins_on_admin_reset",
        flag(p.notify_admins_on_admin_reset),
    );
    put("admin_notify", p.admin_notify.join(", "));
    put("allow_unlock", flag(p.allow_unlock));
    put("privileged_groups", p.privileged_groups.join(", "));
    put("questions_alone", flag(p.questions_alone));
    let r = &p.password;
    put("pw_min_length", r.min_length.to_string());
    put("pw_max_length", r.max_length.to_string());
    put("pw_reject_common", flag(r.reject_common));
    put("pw_reject_context", flag(r.reject_context));
    put("pw_organisation", r.organisation.clone());
    put("pw_banned_words", r.banned_words.join(", "));
    put(
        "pw_min_character_classes",
        r.min_character_classes.to_string(),
    );
    f
}

/// A field the policy form could not read, and what to do about it. The page shows it at the
/// top with a link to the field, and next to the field, which points to it
/// (`aria-describedby`), so a screen reader says it there too.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Problem {
    pub field: String,
    pub text: String,
}

/// Reads the policy form, collecting a sentence for every field that cannot be read.
pub(super) struct FormReader<'a> {
    form: &'a HashMap<String, String>,
    lang: Lang,
    problems: Vec<Problem>,
}

impl FormReader<'_> {
    fn text(&self, k: &str) -> &str {
        self.form.get(k).map(String::as_str).unwrap_or("").trim()
    }

    fn flag(&self, k: &str) -> bool {
        !self.text(k).is_empty()
    }

    /// Entries separated by commas or new lines.
    fn list(&self, k: &str) -> Vec<String> {
        self.text(k)
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn number<T: TryFrom<u64> + Default>(&mut self, k: &str) -> T {
        let raw = self.text(k).to_string();
        let label_key = NUMBER_FIELDS
            .iter()
            .find(|(f, _)| *f == k)
            .map(|(_, l)| *l)
            .unwrap_or(k);
        let lang = self.lang;
        let field = CATALOG.tr(lang, label_key, &[]);
        let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
        let why = match raw.parse::<u64>().ok().map(T::try_from) {
            Some(Ok(v)) => return v,
            Some(Err(_)) => "admin-too-large",
            None if digits => "admin-too-large",
            None => "admin-bad-number",
        };
        self.problems.push(Problem {
            field: k.to_string(),
            text: CATALOG.tr(lang, why, &[("field", field)]),
        });
        T::default()
    }
}

/// The custom questions, one per line. A question whose text is already in the saved policy
/// keeps its id (users' answers refer to it); a new one gets the next id after every id
/// in use, so that removing a question never hands its id, and its answers, to another.
pub(super) fn custom_questions(text: &str, saved: &[CustomQuestion]) -> Vec<CustomQuestion> {
    let mut next = saved
        .iter()
        .filter_map(|q| q.id.strip_prefix('c')?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let mut taken: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let id = match saved
            .iter()
            .find(|q| q.text.trim() == line && !taken.contains(&q.id))
        {
            Some(q) => q.id.clone(),
            None => {
                let id = format!("c{next}");
                next += 1;
                id
            }
        };
        taken.insert(id.clone());
        out.push(CustomQuestion {
            id,
            text: line.to_string(),
        });
    }
    out
}

/// The policy a posted form describes, or what is wrong with the form. Whether the policy
/// makes sense is [`Policy::validate`]'s business; this only reads it.
pub(super) fn parse_policy(
    form: &HashMap<String, String>,
    saved: &Policy,
    lang: Lang,
) -> Result<Policy, Vec<Problem>> {
    let mut r = FormReader {
        form,
        lang,
        problems: Vec::new(),
    };
    let scope = match r.text("scope") {
        "all" => Scope::All,
        "groups" => Scope::Groups,
        "none" => Scope::None,
        _ => {
            r.problems.push(Problem {
                field: "scope-all".into(),
                text: CATALOG.tr(lang, "admin-bad-scope", &[]),
            });
            saved.scope
        }
    };
    // Keep the saved order of the methods still enabled; add new ones in the usual order.
    let checked: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|m| r.flag(&format!("m_{}", m.as_str())))
        .collect();
    let mut methods: Vec<Method> = saved
        .methods
        .iter()
        .copied()
        .filter(|m| checked.contains(m))
        .collect();
    for m in checked {
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    let policy = Policy {
        scope,
        groups: r.list("groups"),
        methods,
        methods_required: r.number("methods_required"),
        questions_to_register: r.number("questions_to_register"),
        questions_to_answer: r.number("questions_to_answer"),
        custom_questions: custom_questions(r.text("custom_questions"), &saved.custom_questions),
        require_registration: r.flag("require_registration"),
        registration_skips: r.number("registration_skips"),
        reconfirm_days: r.number("reconfirm_days"),
        notify_user: r.flag("notify_user"),
        notify_admins_on_admin_reset: r.flag("notify_admins_on_admin_reset"),
        admin_notify: r.list("admin_notify"),
        allow_unlock: r.flag("allow_unlock"),
        privileged_groups: r.list("privileged_groups"),
        questions_alone: r.flag("questions_alone"),
        password: PasswordRules {
            min_length: r.number("pw_min_length"),
            max_length: r.number("pw_max_length"),
            reject_common: r.flag("pw_reject_common"),
            reject_context: r.flag("pw_reject_context"),
            organisation: r.text("pw_organisation").to_string(),
            banned_words: r.list("pw_banned_words"),
            min_character_classes: r.number("pw_min_character_classes"),
        },
    };
    if r.problems.is_empty() {
        Ok(policy)
    } else {
        Err(r.problems)
    }
}

/// The password rules in words, as the reset page words them.
pub(super) fn rule_words(p: &PasswordRules, lang: Lang) -> Vec<String> {
    let mut rules = vec![CATALOG.tr(
        lang,
        "admin-rule-length",
        &[
            ("min", p.min_length.to_string()),
            ("max", p.max_length.to_string()),
        ],
    )];
    if p.reject_common {
        rules.push(CATALOG.tr(lang, "admin-rule-common", &[]));
    }
    if p.reject_context {
        rules.push(CATALOG.tr(lang, "admin-rule-context", &[]));
    }
    if !p.banned_words.is_empty() {
        rules.push(CATALOG.tr(lang, "admin-rule-banned", &[]));
    }
    if p.min_character_classes > 0 {
        rules.push(
            Rejection::TooFewClasses {
                min: p.min_character_classes,
            }
            .message(lang.tag()),
        );
    }
    rules
}

/// What is wrong with a policy, in the form's words rather than the settings' names, each
/// with the form field to fix.
pub(super) fn problem_words(p: &Policy, lang: Lang) -> Vec<Problem> {
    p.problems()
        .iter()
        .map(|x| Problem {
            field: problem_field(x).into(),
            text: CATALOG.tr(lang, &format!("policy-problem-{}", x.key()), &x.args()),
        })
        .collect()
}

/// The id of the policy form's field a problem is fixed in.
fn problem_field(x: &sspr_domain::policy::PolicyProblem) -> &'static str {
    use sspr_domain::policy::PolicyProblem as P;
    match x {
        P::NoGroups => "groups",
        P::NoMethods | P::MethodTwice | P::QuestionsOnly => "m_email",
        P::MethodsRequired | P::MoreRequiredThanEnabled { .. } => "methods_required",
        P::QuestionsToRegister => "questions_to_register",
        P::QuestionsToAnswer { .. } => "questions_to_answer",
        P::TooManyCustomQuestions
        | P::CustomQuestionLength { .. }
        | P::CustomQuestionId { .. }
        | P::CustomQuestionIdTwice { .. } => "custom_questions",
        P::RegistrationSkips => "registration_skips",
        P::ReconfirmDays => "reconfirm_days",
        P::AdminNotify => "admin_notify",
        P::MinLength | P::MinAboveMax => "pw_min_length",
        P::MaxLength { .. } => "pw_max_length",
        P::CharacterClasses => "pw_min_character_classes",
        P::BannedWordTooShort { .. } => "pw_banned_words",
    }
}

/// Problems by field id, for the fields' own messages (several on one field are joined).
fn by_field(problems: &[Problem]) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for p in problems {
        out.entry(p.field.clone())
            .and_modify(|t| {
                t.push(' ');
                t.push_str(&p.text);
            })
            .or_insert_with(|| p.text.clone());
    }
    out
}

pub(super) fn join(lang: Lang, items: &[String]) -> String {
    items.join(if lang == Lang::Zh { "、" } else { ", " })
}

/// What one kind of user is asked for under `p`.
pub(super) fn audience(p: &Policy, groups: &[String], lang: Lang) -> Value {
    let r = p.requirement_for(groups);
    let mut offered = r.methods.clone();
    offered.sort();
    offered.dedup();
    let labels: Vec<String> = r
        .methods
        .iter()
        .map(|m| CATALOG.tr(lang, &format!("method-{}", m.as_str()), &[]))
        .collect();
    json!({
        "privileged": r.privileged,
        "methods": if labels.is_empty() { CATALOG.tr(lang, "admin-none", &[]) } else { join(lang, &labels) },
        "required": r.required,
        "offered": offered.len(),
        "stuck": offered.len() < usize::from(r.required),
        "questions": r.methods.contains(&Method::Questions),
    })
}

/// "What users will see" under `p`.
pub(super) fn preview(p: &Policy, lang: Lang, directory_rules: Vec<String>) -> Value {
    let privileged_group = p
        .privileged_groups
        .iter()
        .find(|g| !g.trim().is_empty())
        .cloned();
    let mut rules = rule_words(&p.password, lang);
    rules.extend(directory_rules);
    json!({
        "scope": scope_str(p.scope),
        "groups": join(lang, &p.groups),
        "standard": audience(p, &[], lang),
        "privileged_group": privileged_group,
        "privileged": privileged_group.as_ref().map(|g| audience(p, std::slice::from_ref(g), lang)),
        "q_register": p.questions_to_register,
        "q_answer": p.questions_to_answer,
        "unlock": p.allow_unlock,
        "rules": rules,
        "custom": p.custom_questions,
        "require_registration": p.require_registration,
        "registration_skips": p.registration_skips,
        "reconfirm_days": p.reconfirm_days,
        "notify_user": p.notify_user,
        "problems": problem_words(p, lang),
    })
}

#[derive(Serialize, Default)]
pub(super) struct PolicyView {
    f: HashMap<String, String>,
    methods_all: Vec<&'static str>,
    /// The form could not be read, or holds a policy that cannot be saved (`refused`).
    problems: Vec<Problem>,
    refused: bool,
    /// The same, by field id, for the fields' own messages.
    invalid: HashMap<String, String>,
    error: Option<String>,
    details: Vec<String>,
    support_code: Option<String>,
    preview: Option<Value>,
    saved: bool,
}

pub(super) fn policy_view(f: HashMap<String, String>) -> PolicyView {
    PolicyView {
        f,
        methods_all: Method::ALL.iter().map(|m| m.as_str()).collect(),
        ..PolicyView::default()
    }
}

pub async fn policy_page(Gated(AdminOnly(s), mut w): Gated<AdminOnly>) -> Response {
    // Saving redirects here (post/redirect/get), saying so once.
    let saved = w.take_notice().is_some_and(|(tag, _)| tag == "saved");
    match w.state.app.policy().await {
        Ok(p) => admin_page(
            w,
            &s,
            StatusCode::OK,
            "policy",
            PolicyView {
                saved,
                ..policy_view(policy_form(&p))
            },
        ),
        Err(e) => w.fail(e).await,
    }
}

/// `action=preview` shows what users would see; `action=save` stores the policy.
pub async fn policy_post(Gated(AdminOnly(s), p): Gated<AdminOnly, Posted>) -> Response {
    let (mut w, mut form) = (p.web, p.form);
    let app = w.state.app.clone();
    let lang = w.lang();
    let save = form.get("action").map(String::as_str) == Some("save");
    form.remove("csrf");
    form.remove("action");
    let saved = match app.policy().await {
        Ok(p) => p,
        Err(e) => return w.fail(e).await,
    };
    let policy = match parse_policy(&form, &saved, lang) {
        Ok(p) => p,
        Err(problems) => {
            let view = PolicyView {
                invalid: by_field(&problems),
                problems,
                ..policy_view(form)
            };
            return admin_page(w, &s, StatusCode::BAD_REQUEST, "policy", view);
        }
    };
    if !save {
        let directory_rules = match app.directory.password_rules().await {
            Ok(r) => r.iter().map(|r| r.message(lang.tag())).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the directory's password rules");
                Vec::new()
            }
        };
        // A preview shows what is wrong too, beside the fields, though nothing is saved.
        let view = PolicyView {
            preview: Some(preview(&policy, lang, directory_rules)),
            invalid: by_field(&problem_words(&policy, lang)),
            ..policy_view(form)
        };
        return admin_page(w, &s, StatusCode::OK, "policy", view);
    }
    let actor = format!("admin:{}", s.login);
    match app.set_policy(&w.ctx, &actor, policy.clone()).await {
        Ok(_) => w.redirect_with_notice("/admin/policy", "saved", ""),
        Err(e) => {
            let e = w.audited(e).await;
            // A policy the service refuses comes with its problems, one sentence each; they
            // name the settings as the API spells them, so the page words them itself, each
            // linked to its field.
            let view = if e.details.is_empty() {
                PolicyView {
                    error: Some(e.message.clone()),
                    support_code: e.support_code.clone(),
                    ..policy_view(form)
                }
            } else {
                let problems = problem_words(&policy, lang);
                PolicyView {
                    invalid: by_field(&problems),
                    problems,
                    refused: true,
                    support_code: e.support_code.clone(),
                    ..policy_view(form)
                }
            };
            let status = w.status_for(&e);
            admin_page(w, &s, status, "policy", view)
        }
    }
}
