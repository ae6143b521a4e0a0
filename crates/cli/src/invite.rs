//! `sspr users invite`: one-time links to set a first password, for one user, several, or a
//! CSV file from HR (`login[,email|sms]` per line; a header line starting with `login` is
//! skipped). Each line is tried on its own and reported; the exit code says whether all went.

use std::process::ExitCode;

use sspr_app::ports::Channel;

use crate::runtime::Runtime;

pub async fn invite(
    rt: &Runtime,
    logins: &[String],
    sms: bool,
    csv: Option<&std::path::Path>,
    ctx: &sspr_app::RequestCtx,
    actor: &str,
) -> anyhow::Result<ExitCode> {
    let default = if sms { Channel::Sms } else { Channel::Email };
    let mut wanted: Vec<(usize, String, Result<Channel, String>)> =
        logins.iter().map(|l| (0, l.clone(), Ok(default))).collect();
    if let Some(file) = csv {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        for (i, line) in text.lines().enumerate() {
            let fields = crate::commands::csv_fields(line);
            let login = fields.first().map(|f| f.trim()).unwrap_or_default();
            if login.is_empty() || (i == 0 && login.eq_ignore_ascii_case("login")) {
                continue;
            }
            let channel = match fields.get(1).map(|f| f.trim()).unwrap_or_default() {
                "" => Ok(default),
                c => Channel::parse(c)
                    .ok_or_else(|| format!("channel {c:?} is not \"email\" or \"sms\"")),
            };
            wanted.push((i + 1, login.to_string(), channel));
        }
    }
    if wanted.is_empty() {
        anyhow::bail!("name the users to invite, or give --csv FILE");
    }
    let mut failed = 0;
    for (line, login, channel) in wanted {
        let at = if line > 0 {
            format!("line {line}: ")
        } else {
            String::new()
        };
        let result = match channel {
            Ok(c) => rt
                .app
                .invite(ctx, actor, &login, c)
                .await
                .map_err(|e| e.message),
            Err(e) => Err(e),
        };
        match result {
            Ok(r) => println!(
                "{at}invited {} by {} to {} (the link works once, for {} h)",
                r.user,
                r.channel,
                r.sent_to,
                r.expires_in / 3600
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{at}{login}: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
