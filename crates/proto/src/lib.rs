//! The JSON shapes of sspr's HTTP API (`/api/v1`). The server produces them; the logon agent,
//! the CLI and the web portal consume them. Nothing here knows how a request is handled.
//!
//! Unknown fields are refused (`deny_unknown_fields`) so that a typo in a client is an error
//! that says so, not a silently ignored field.
//!
//! Request fields carry examples (`schema(example)`) for the served OpenAPI document: a client
//! sees a request that works against the demo, and `scripts/fuzz-api` (schemathesis) starts
//! from them, so that generated requests get past validation into the operations themselves.

use serde::{Deserialize, Serialize};

/// Sent by clients to say who they are; recorded in the audit log.
/// Values: `logon_screen`, `ssh`, `browser`, `cli`, `api`.
pub const CLIENT_TYPE_HEADER: &str = "x-sspr-client";
/// The remote host a login at a machine comes from (PAM_RHOST: an SSH client's address), sent
/// by the logon agent; recorded in the audit log and used to share out the machine's limits.
pub const REMOTE_HOST_HEADER: &str = "x-sspr-remote-host";

/// Every error. `support_code` finds the matching audit event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Stable machine-readable code, e.g. `invalid_request`, `wrong_code`, `password_rejected`.
    pub error: String,
    /// What happened and what to do, in the requested language.
    pub message: String,
    /// Give this to the helpdesk; it finds the audit event.
    pub support_code: String,
    /// Further reasons, one sentence each (e.g. every password rule that failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Reset and unlock flows
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The user ID: login name as the directory knows it.
    #[cfg_attr(feature = "openapi", schema(example = "demo"))]
    pub user: String,
    /// `reset` (default) or `unlock`.
    #[serde(default)]
    pub kind: Option<String>,
}

/// The state of a flow, returned by every flow call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowResponse {
    /// Bearer token for the next calls of this flow (`Authorization: Bearer …`). Keep it secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_token: Option<String>,
    /// `choose_method`, `registration_required`, `set_password`, `ready_to_unlock`, `completed`;
    /// `blocked` (from `GET /api/v1/flow` only) when too many failed verifications block the
    /// account for a while: no method is offered until the block ends.
    pub status: String,
    pub kind: String,
    /// What to tell the user now.
    pub message: String,
    /// Where to register security info, when registration is what is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_url: Option<String>,
    /// Methods the user may still use, with masked destinations.
    pub methods: Vec<MethodOption>,
    /// Methods the user has that this client cannot run (a passkey at a login screen): say
    /// that they work in a browser, at the portal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub browser_only: Vec<String>,
    /// Methods to pass in total, and those passed so far.
    pub required: u8,
    pub verified: Vec<String>,
    /// Seconds until the flow expires.
    pub expires_in: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MethodOption {
    /// `email`, `sms`, `questions` or `totp`.
    pub method: String,
    /// A label for the user, e.g. "Email a code to a•••e@e•••.com".
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    #[cfg_attr(feature = "openapi", schema(example = "questions"))]
    pub method: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeResponse {
    pub method: String,
    pub message: String,
    /// Masked destination a code was queued for (email, sms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_to: Option<String>,
    /// Questions to answer (questions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub questions: Vec<QuestionText>,
    /// Seconds the code stays valid (email, sms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// For `navigator.credentials.get` (passkey): WebAuthn's request options in their JSON
    /// form, `{"publicKey": {…}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub passkey: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuestionText {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(example = json!({"method": "questions", "answers": [
    {"question_id": "q3", "answer": "Rex"},
    {"question_id": "q7", "answer": "Elm Street"},
    {"question_id": "q12", "answer": "Sam"}
]})))]
pub struct VerifyRequest {
    #[cfg_attr(feature = "openapi", schema(example = "questions"))]
    pub method: String,
    /// The code (email, sms, totp).
    #[serde(default)]
    pub code: Option<String>,
    /// The answers (questions).
    #[serde(default)]
    pub answers: Option<Vec<Answer>>,
    /// The signed answer of `navigator.credentials.get` (passkey), as its `toJSON()`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub credential: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Answer {
    #[cfg_attr(feature = "openapi", schema(example = "q3"))]
    pub question_id: String,
    pub answer: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewPasswordRequest {
    #[cfg_attr(
        feature = "openapi",
        schema(example = "correct horse battery staple 7")
    )]
    pub new_password: String,
}

/// Invites a user to set their first password (admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InvitationRequest {
    #[cfg_attr(feature = "openapi", schema(example = "newhire"))]
    pub user: String,
    /// `email` (default) or `sms`: where the one-time link goes (the directory's address).
    #[serde(default)]
    pub channel: Option<String>,
}

/// An invitation on its way.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationResponse {
    /// The account's own name.
    pub user: String,
    pub channel: String,
    /// The destination, masked.
    pub sent_to: String,
    /// Seconds the link stays valid.
    pub expires_in: i64,
}

/// Changes a password the user knows: the current one proves who they are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The user ID, as at sign-in.
    #[cfg_attr(feature = "openapi", schema(example = "demo"))]
    pub user: String,
    #[cfg_attr(feature = "openapi", schema(example = "the password I have now"))]
    pub current_password: String,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "correct horse battery staple 7")
    )]
    pub new_password: String,
}

/// The password rules, to show before the user types.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordPolicyResponse {
    pub min_length: usize,
    pub max_length: usize,
    /// The rules in words.
    pub rules: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionResponse {
    /// Bearer token for `/api/v1/me/...`. Keep it secret.
    pub session_token: String,
    pub expires_in: i64,
    pub registration: RegistrationStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationStatus {
    pub user: String,
    /// Holds as many usable methods as the policy requires.
    pub registered: bool,
    pub required: u8,
    /// The methods this user may register.
    pub available_methods: Vec<String>,
    pub questions_to_register: u8,
    pub methods: Vec<RegisteredMethod>,
    /// The policy asks the user to look over their methods again.
    pub reconfirm_due: bool,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisteredMethod {
    pub method: String,
    /// `active` or `pending` (a code was sent and not yet entered).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Recovery codes: how many of the set are still unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// An email address, or a mobile number in international form (`+49 151 12345678`).
    #[cfg_attr(feature = "openapi", schema(example = "someone@example.com"))]
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    #[cfg_attr(feature = "openapi", schema(example = "123456"))]
    pub code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(example = json!({"answers": [
    {"question_id": "q3", "answer": "Rex"},
    {"question_id": "q7", "answer": "Elm Street"},
    {"question_id": "q12", "answer": "Sam"}
]})))]
pub struct QuestionsRequest {
    pub answers: Vec<Answer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuestionList {
    pub questions: Vec<QuestionText>,
    pub to_register: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpEnrolment {
    /// Base32 secret, for apps that cannot scan.
    pub secret: String,
    pub otpauth_uri: String,
    /// The same URI as an SVG QR code.
    pub qr_svg: String,
    pub message: String,
}

/// Options for `navigator.credentials.create` to add a passkey: WebAuthn's creation options in
/// their JSON form, `{"publicKey": {…}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasskeyOptions {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub options: serde_json::Value,
    pub message: String,
}

/// The new passkey: the answer of `navigator.credentials.create`, as its `toJSON()`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasskeyRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub credential: serde_json::Value,
}

/// A new set of recovery codes. The codes are in this answer and nowhere else: sspr keeps only
/// their MACs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecoveryCodes {
    pub codes: Vec<String>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Administration
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEventDto {
    pub id: i64,
    /// RFC 3339, UTC.
    pub time: String,
    pub activity: String,
    pub actor: String,
    pub target: String,
    pub client_ip: String,
    pub client_type: String,
    pub result: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_code: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserSummary {
    pub login: String,
    pub display_name: String,
    pub enabled: bool,
    pub locked: bool,
    pub groups: Vec<String>,
    pub registered: bool,
    pub methods: Vec<String>,
}
