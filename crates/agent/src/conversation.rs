//! What the agent needs from whatever shows text to the user and reads answers.

/// The user backed out (Escape at the greeter, Ctrl-D at a terminal), or the conversation
/// itself failed. Either way the dialogue stops and the normal login carries on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

pub trait Conversation {
    /// Asks for something the user may see while typing (a choice, a one-time code).
    fn prompt(&mut self, text: &str) -> Result<String, Cancelled>;
    /// Asks for something hidden while typing (a password, an answer).
    fn secret(&mut self, text: &str) -> Result<String, Cancelled>;
    /// Tells the user something.
    fn info(&mut self, text: &str);
    /// Tells the user something went wrong.
    fn error(&mut self, text: &str);
}
