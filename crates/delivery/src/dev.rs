//! The dev outbox: nothing leaves the machine.

use async_trait::async_trait;
use sspr_app::ports::{Channel, OutboxMessage};
use sspr_domain::mask;

use crate::{SendError, Sender};

/// Delivers nothing. The message counts as sent and stays in the outbox table with its body
/// (the worker is built with `keep_bodies = true` for dev), so `sspr outbox` can show the code.
/// For development and demos only: anyone who can read the database can read the codes.
#[derive(Debug, Default, Clone, Copy)]
pub struct DevSender;

#[async_trait]
impl Sender for DevSender {
    async fn send(&self, msg: &OutboxMessage) -> Result<(), SendError> {
        let to = match msg.channel {
            Channel::Email => mask::email(&msg.recipient),
            Channel::Sms => mask::phone(&msg.recipient),
        };
        tracing::info!(id = msg.id, channel = msg.channel.as_str(), to = %to, "dev outbox: message kept, not delivered (see `sspr outbox`)");
        Ok(())
    }
}
