//! `sspr-logon`: the logon agent's dialogue in a terminal (a kiosk, a greeter's "Forgot
//! password?" button), plus the administrator's checks of an agent's configuration.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sspr_agent::config::DEFAULT_PATH;
use sspr_agent::dialogue::{self, Dialogue, Kind, Outcome};
use sspr_agent::screen::{Screen, ScreenSetting};
use sspr_agent::{AgentConfig, Cancelled, Conversation, HttpApi, Journal, Lang};

mod pin;

#[derive(Parser)]
#[command(
    name = "sspr-logon",
    version,
    about = "Reset or unlock your account from a terminal (sspr's logon agent)"
)]
struct Cli {
    /// The agent's configuration.
    #[arg(long, global = true, default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// Your user ID; asked for when not given.
    #[arg(long)]
    user: Option<String>,
    /// Unlock the account (you know the password) instead of resetting it.
    #[arg(long)]
    unlock: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Checks the configuration and that the server is reachable and trusted.
    Check,
    /// Prints the pin (`sha256//…`) of the key a server presents, to put in `pin_sha256`.
    Pin {
        /// `https://host[:port]`
        #[arg(long)]
        server: String,
    },
}

/// Exit codes a greeter or script can act on.
const CHANGED: u8 = 0;
const FAILED: u8 = 1;
const CANCELLED: u8 = 2;
const NOT_REGISTERED: u8 = 3;
const USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Pin { server }) = &cli.command {
        return match pin::fetch(server) {
            Ok(p) => {
                println!("{p}");
                eprintln!(
                    "sspr-logon: this is the key the server presented, unverified; compare it with \
                     the pin computed on the server itself before trusting it"
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sspr-logon: {e}");
                ExitCode::from(FAILED)
            }
        };
    }
    let cfg = match AgentConfig::load(&cli.config) {
        Ok(Some(c)) => c,
        Ok(None) => {
            eprintln!(
                "sspr-logon: {} sets no server_url; set it to your sspr server's https:// address",
                cli.config.display()
            );
            return ExitCode::from(USAGE);
        }
        Err(e) => {
            eprintln!("sspr-logon: {e}");
            return ExitCode::from(USAGE);
        }
    };
    let lang = cfg.lang(|k| std::env::var(k).ok());
    let journal: Arc<dyn Journal> = journal(&cfg);
    let mut api = match HttpApi::new(&cfg, lang, journal.clone()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sspr-logon: {e}");
            return ExitCode::from(USAGE);
        }
    };
    if let Some(Command::Check) = cli.command {
        return match api.ready() {
            Ok(()) => {
                println!("ok: {} is reachable, trusted and ready", cfg.server_url);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sspr-logon: {}: {}", cfg.server_url, e.cause());
                ExitCode::from(FAILED)
            }
        };
    }
    let mut conv = Terminal;
    let user = match cli.user {
        Some(u) => u,
        None => match conv.prompt(user_prompt(lang)) {
            Ok(u) if !u.trim().is_empty() => u.trim().to_string(),
            _ => return ExitCode::from(CANCELLED),
        },
    };
    let kind = if cli.unlock {
        Kind::Unlock
    } else {
        Kind::Reset
    };
    let mut d = Dialogue {
        conv: &mut conv,
        api: &mut api,
        journal: journal.as_ref(),
        lang,
        user: &user,
        server: &cfg.server_url,
        // A terminal, unless the config says what really shows it (a kiosk greeter).
        screen: match cfg.screen {
            ScreenSetting::Fixed(s) => s,
            ScreenSetting::Auto => Screen::Terminal,
        },
    };
    ExitCode::from(match dialogue::run(&mut d, kind) {
        Outcome::PasswordChanged(_) | Outcome::Unlocked => CHANGED,
        Outcome::Cancelled => CANCELLED,
        Outcome::RegistrationRequired => NOT_REGISTERED,
        Outcome::Failed => FAILED,
    })
}

fn user_prompt(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "User ID: ",
        Lang::Zh => "用户 ID：",
    }
}

#[cfg(unix)]
fn journal(cfg: &AgentConfig) -> Arc<dyn Journal> {
    Arc::new(sspr_agent::syslog::Syslog::new(
        cfg.syslog_socket.clone(),
        "sspr-logon",
        cfg.verbose,
    ))
}

#[cfg(not(unix))]
fn journal(_: &AgentConfig) -> Arc<dyn Journal> {
    Arc::new(sspr_agent::journal::NoJournal)
}

/// The terminal: prompts on stdout, hidden input from the terminal when there is one, and
/// plain lines from stdin when there is not (a pipe, a test).
struct Terminal;

impl Terminal {
    fn line(&mut self) -> Result<String, Cancelled> {
        let mut s = String::new();
        match std::io::stdin().lock().read_line(&mut s) {
            Ok(0) | Err(_) => Err(Cancelled),
            Ok(_) => Ok(s.trim_end_matches(['\n', '\r']).to_string()),
        }
    }
}

impl Conversation for Terminal {
    fn prompt(&mut self, text: &str) -> Result<String, Cancelled> {
        print!("{text}");
        let _ = std::io::stdout().flush();
        self.line()
    }

    fn secret(&mut self, text: &str) -> Result<String, Cancelled> {
        if std::io::stdin().is_terminal() {
            rpassword::prompt_password(text).map_err(|_| Cancelled)
        } else {
            self.prompt(text)
        }
    }

    fn info(&mut self, text: &str) {
        println!("{text}");
    }

    fn error(&mut self, text: &str) {
        eprintln!("{text}");
    }
}
